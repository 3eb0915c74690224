// Decoder: the one forward pass of every decoder-only model ModelSpec describes (LLaMA
// 2/3, TinyLlama, Mistral, Qwen2, GPT-J), parameterised by the spec: RMSNorm or LayerNorm
// with bias, SwiGLU or GELU feed-forward (with biases), sequential or parallel residual
// (GPT-J: one norm, x += attn(h) + ffn(h)), full or partial rotary with the model's
// frequencies (LLaMA 3 scaling), optional q/k/v and LM head biases.
//
// A step is a list of entries, each a run of consecutive tokens of one sequence at
// positions [start_pos, start_pos + n_tokens): a prefill chunk or a single decode token.
// Entries of different sequences at different positions run in ONE pass: every weight
// GEMM runs once over all tokens of the step, attention runs per entry over its own KV
// blocks. The K/V of every token is written into its slot of the paged cache.
//
// Weight matrices stay in the format they were loaded in (weight_tensor.h: fp32, fp16,
// bf16, Q8_0, Q4_0, Q4_K); every weight GEMM is cpu::MatmulWeights over them, the
// embedding lookup dequantizes the token's row, and everything else is fp32.
//
// Each row's arithmetic is independent of which other rows share the step (batch-
// invariant GEMM in every format, per-row norms and biases, per-sequence attention), so
// a request's logits are bit-identical whether it runs alone or fused with others.
//
// Tensor parallelism (Megatron): a decoder may hold one rank's shard (shard.h). It then
// computes its heads and its slice of the feed-forward width; the partial outputs of
// the Wo and W2 GEMMs are summed over the group (all-reduce) before they join the
// residual stream (with a parallel residual both partial outputs share one all-reduce;
// the replicated b2 is added once, after it), and each rank's vocabulary slice of the
// logits (with its slice of the LM head bias) is gathered (all-gather), so every rank
// ends the pass with the same residual stream and the same full logits. Every rank of the
// group must run Forward with the same entries.
//
// Thread-safety: Forward is not reentrant (it uses the decoder's scratch buffers); it
// parallelises internally with OpenMP.
#pragma once

#include <initializer_list>
#include <span>
#include <vector>

#include "common/cache_aligned.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/cpu/rope.h"
#include "worker/comm/communicator.h"
#include "worker/engine/kv_cache.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

struct StepEntry {
  const int* tokens = nullptr;  // [n_tokens]
  int n_tokens = 0;
  int start_pos = 0;                 // position of tokens[0]
  const int* block_table = nullptr;  // covers positions [0, start_pos + n_tokens)
  bool want_logits = false;          // logits of the entry's last token
};

class Decoder {
 public:
  // Takes the weights (the full model, or rank shard.rank's shard of it), packs Q|K|V
  // (and their biases) and gate|up into single matrices (one GEMM each; a stack whose
  // parts differ in format, as in mixed GGUF files, keeps one matrix per run of one
  // format) and frees the originals.
  // `comm` is the group's host-memory communicator, not owned; it must outlive the
  // decoder. It may be null when shard.world == 1.
  // REQUIRES: ValidateShard(weights, shard) is OK; when shard.world > 1, comm is not null
  // and has comm->rank() == shard.rank, comm->world_size() == shard.world.
  explicit Decoder(ModelWeights weights, ShardInfo shard = {}, HostCommunicator* comm = nullptr);

  const ModelSpec& spec() const { return spec_; }  // the FULL model's shape
  const ShardInfo& shard() const { return shard_; }
  const ShardDims& local() const { return local_; }  // this rank's sizes

  // Runs one fused pass. logits: [number of entries with want_logits, vocab_size], in
  // entry order, the full vocabulary on every rank. The only errors are the
  // communicator's (Unavailable); the KV slots of the step may then be half written,
  // which is harmless: they are rewritten when the step is run again.
  // REQUIRES: token ids in range; positions < spec().max_seq_len; block tables cover
  // every position written; entries of one sequence do not repeat; kv was created for
  // this shard (KvCache::Create with tensor_parallel = shard().world).
  Status Forward(std::span<const StepEntry> entries, const KvCache& kv, float* logits);

  // The same pass, but only the greedy token of each entry with want_logits (argmax,
  // lowest id among equal maxima: Sampler's greedy choice) is returned, in entry order.
  // With tensor parallelism each rank reduces its vocabulary slice to (max, id) and only
  // those pairs are gathered — 2 values per row instead of vocab_size.
  Status ForwardArgmax(std::span<const StepEntry> entries, const KvCache& kv, int* tokens);

 private:
  // The pass up to the final norm; then LmHead (logits) or LmHeadArgmax (tokens).
  Status Run(std::span<const StepEntry> entries, const KvCache& kv, float* logits, int* tokens);
  // Matrices applied to one input whose outputs are concatenated: [rows, cols] made of
  // the rows of each part in order. Consecutive parts of one format are stacked into one
  // matrix, so parts.size() is 1 unless the formats differ.
  struct RowStack {
    struct Part {
      WeightTensor w;  // [rows, cols]
      int rows = 0;
    };
    std::vector<Part> parts;
    int rows = 0;
    int cols = 0;
  };
  // Sizes below are local (ShardDims): q_dim, kv_dim, hidden_dim of this rank. Tensors
  // the spec does not have are empty.
  struct Layer {
    std::vector<float> attn_norm;       // [dim]
    std::vector<float> attn_norm_bias;  // [dim]                    LayerNorm
    RowStack wqkv;                      // [q_dim + 2 * kv_dim, dim]
    std::vector<float> bqkv;            // [q_dim + 2 * kv_dim]     qkv_bias
    WeightTensor wo;                    // [dim, q_dim]
    std::vector<float> ffn_norm;        // [dim]                    not parallel_residual
    std::vector<float> ffn_norm_bias;   // [dim]                    LayerNorm, not parallel_residual
    // SwiGLU: [2 * hidden_dim, dim], gate (w1) rows then up (w3) rows; GELU: w1 [hidden_dim, dim].
    RowStack w13;
    std::vector<float> b1;  // [hidden_dim]             ffn_bias
    WeightTensor w2;        // [dim, hidden_dim]
    std::vector<float> b2;  // [dim] (whole on every rank)  ffn_bias
  };
  // One partial output of a row-split matrix w ([dim, in_dim]) applied to `in` [n, in_dim].
  struct Projection {
    const float* in;
    const WeightTensor* w;
    int in_dim;
  };

  // Stacks the parts' rows ([rows_i, cols] each, freed), a matrix per run of one format.
  static RowStack StackRows(std::initializer_list<std::pair<WeightTensor*, int>> parts, int cols);
  // y[n, s.rows] = x[n, s.cols] · sᵀ: one MatmulWeights per part, a part's output copied
  // into its columns of y when there are several.
  void MatmulStack(const float* x, const RowStack& s, float* y, int n);

  void EnsureScratch(int n_tokens, int n_logits);
  // out = norm(x) over n rows, RMSNorm or LayerNorm (with `bias`) as the spec says.
  void Norm(const float* x, const std::vector<float>& weight, const std::vector<float>& bias, float* out, int n) const;
  // RoPE on the q and k rows of qkv_ and the k and v rows stored in the cache.
  void RotateAndStoreKv(std::span<const StepEntry> entries, const cpu::PagedKvLayer& kv, int n);
  void Attention(std::span<const StepEntry> entries, const cpu::PagedKvLayer& kv);
  // hidden_ = the feed-forward activation of xb_ (before W2).
  void FeedForwardHidden(const Layer& layer, int n);
  // x += Σ in · wᵀ over `parts`, then + bias (if not empty). One rank: straight into x_;
  // several: the partial sums into proj_, summed over the group in ONE all-reduce, then
  // added to x_, and the (replicated) bias added once after.
  Status AddProjections(std::initializer_list<Projection> parts, const std::vector<float>& bias, int n);
  // logits_part_ = this rank's slice of the logits (with its slice of the LM head bias).
  void LocalLogits(int n_logits);
  // logits = final_ · headᵀ (+ bias) over the full vocabulary (gathered from every rank's slice).
  Status LmHead(int n_logits, float* logits);
  Status LmHeadArgmax(int n_logits, int* tokens);

  // Constant after construction.
  ModelSpec spec_;
  ShardInfo shard_;
  ShardDims local_;
  HostCommunicator* comm_;        // null when shard_.world == 1
  WeightTensor token_embedding_;  // [vocab, dim]
  // One rank: [vocab, dim], empty when shared with the embedding. Several ranks: this
  // rank's rows [vocab_per_rank, dim] (shard.h).
  WeightTensor classifier_;
  std::vector<float> classifier_bias_;  // [vocab] or this rank's [vocab_per_rank]; empty without one
  std::vector<float> final_norm_;       // [dim]
  std::vector<float> final_norm_bias_;  // [dim], LayerNorm only
  std::vector<Layer> layers_;
  cpu::RopeTable rope_;

  // Scratch, grown on demand and reused across steps (no steady-state allocation).
  std::vector<int> tokens_;        // [n]
  std::vector<int> positions_;     // [n]
  std::vector<int> row_entry_;     // [n]: the entry each row belongs to
  std::vector<int> entry_offset_;  // [n_entries + 1]: first row of each entry
  // The matrices' inputs and outputs start on a cache line (as the weights do).
  CacheAlignedVector<float> x_;         // [n, dim] residual stream
  CacheAlignedVector<float> xb_;        // [n, dim] normed input
  CacheAlignedVector<float> qkv_;       // [n, q_dim + 2 * kv_dim]
  CacheAlignedVector<float> att_;       // [n, q_dim]
  CacheAlignedVector<float> gate_up_;   // [n, 2 * hidden_dim], SwiGLU only
  CacheAlignedVector<float> hidden_;    // [n, hidden_dim]
  CacheAlignedVector<float> part_out_;  // [n, rows of a RowStack part], stacks of mixed formats only
  CacheAlignedVector<float> final_;     // [n_logits, dim]
  // Tensor parallel only.
  CacheAlignedVector<float> proj_;  // [n, dim] partial Wo / W2 output(s) of this rank
  std::vector<float> logits_part_;  // [n_logits, vocab_per_rank]
  std::vector<float> logits_all_;   // [world, n_logits, vocab_per_rank]
  std::vector<float> best_;         // [n_logits, 2]: (max, id bits) of this rank's slice
  std::vector<float> best_all_;     // [world, n_logits, 2]
};

}  // namespace flover
