// CudaDecoder: the forward pass of Decoder (worker/engine/decoder.h) on a CUDA device,
// with sampling on the device: the step engine of the CUDA backend (cuda_backend.h).
//
// Same semantics as Decoder::Forward + CpuBackend's sampling: a step is a list of
// entries (prefill chunks and decode tokens of different requests) run in ONE fused
// pass (or, with separate_passes, one pass per entry in order); the K/V of every token
// is written to its slot of the paged DeviceKvCache; each entry with want_logits gets
// one sampled token. The architecture is the spec's (model_spec.h): RMSNorm or
// LayerNorm, SwiGLU or GELU MLP, sequential or parallel residual, full or partial
// rotary, optional biases. Data flow per pass of n rows (T = the storage dtype):
//
//   x fp32 [n, dim] = embedding[tokens]                              (residual stream)
//   per layer:  xb T = Norm(x)  ->  qkv fp32 = xb·Wqkvᵀ (+ bqkv)  ->  RoPE(q, k)
//               -> WriteKv(k, v) -> att T = PagedAttention(q)
//     sequential: x += att·Woᵀ                 (TP: partial, all-reduce, AddNorm)
//                 -> xb T = Norm(x) -> hidden T = MLP(xb)
//                 -> x += hidden·W2ᵀ (+ b2)    (TP: partial, all-reduce, + b2, AddNorm)
//     parallel:   hidden T = MLP(xb)  (the attention's input)
//                 -> x += att·Woᵀ + hidden·W2ᵀ (+ b2)   (TP: both products into one
//                    partial, ONE all-reduce, + b2, AddNorm)
//     MLP: SwiGLU  gate_up fp32 = xb·W13ᵀ -> hidden = SiLU(gate)·up
//          GELU    h fp32 = xb·W1ᵀ -> hidden = gelu(h + b1)
//   LM head:    the last row of each want_logits entry, gathered, final Norm,
//               logits fp32 [rows, vocab] = h·headᵀ (+ bias) (TP: vocabulary slice and
//               its bias, all-gather)
//   SampleTokens over the logits rows -> the tokens, the only device-to-host copy.
// Norm is RmsNorm or LayerNorm (with its bias); the biases of linear layers are fp32,
// added to the fp32 products (AddBias) or in the activation (GeluBias).
//
// Memory: every buffer (weights, scratch for max_step_tokens rows and max_rows logits
// rows, attention and sampling workspaces, the step descriptor) is allocated at
// Create; a step allocates nothing. Each step packs its host-side descriptor (token
// ids, positions, the AttentionBatch arrays, the block tables, the sampling rows and
// the penalty histories) into one pinned host buffer and copies it with ONE
// cudaMemcpyAsync; it synchronises once, to read the sampled tokens.
//
// With config.cuda_graphs, decode steps (fused, every entry one token that wants logits) run padded to a bucket
// of rows (1, 2, 4, 8, then multiples of 16, up to min(max_rows, max_step_tokens)):
// padding rows read token 0 at position 0, write no KV (row_entry -1), attend to
// nothing and sample greedily into tokens nobody reads; attention is sized for the
// model's max_seq_len (splits past a row's context exit at once). So the launches of a
// decode step depend only on its bucket, and (world 1, capture_graphs) the whole step (forward and sampling, everything between the descriptor upload and the
// token download) is captured once per bucket, on first use, and replayed. Eager
// launches of the same padded step give the same bits (tests/cuda/backend_test.cc);
// prefill, mixed and separate-pass steps always run eagerly and unpadded.
//
// Numerics: fp32 accumulation everywhere; with dtype fp32 the pass matches the CPU
// Decoder to rounding (cuBLAS and the block reductions sum in other orders), with
// fp16/bf16 the weights, the normed GEMM inputs, the attention output and the KV cache
// are rounded to the dtype. Unlike the CPU Decoder the pass is NOT batch-invariant: cuBLAS
// chooses its algorithm from the number of rows, so a row's logits may differ in the
// last bits with the step's composition (deterministic for a given composition).
//
// Tensor parallelism (shard.world > 1): this rank's heads, feed-forward slice and
// vocabulary slice (shard.h); the DeviceCommunicator's collectives take device pointers
// and are enqueued on the decoder's stream (the communicator's stream),
// and the logits are all-gathered before sampling, so every rank samples the same
// tokens. Every rank must run the same steps.
//
// Thread-safety: not thread-safe; one thread drives a decoder.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/matrix.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sampling.h"
#include "worker/comm/device_communicator.h"
#include "worker/engine/cuda/device_kv_cache.h"
#include "worker/engine/cuda/device_weights.h"
#include "worker/engine/decoder.h"
#include "worker/engine/forward_backend.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

struct CudaDecoderConfig {
  int max_step_tokens = 512;  // rows of one step (all entries' tokens together)
  int max_rows = 64;          // entries with want_logits in one step (sampled tokens)
  // CudaBackendConfig's fast decode path (cuda_backend.h), off by default.
  bool cuda_graphs = false;     // pad decode steps to buckets; replay them as graphs (world 1)
  bool capture_graphs = true;   // with cuda_graphs: false = launch the padded steps eagerly
  bool small_step_gemv = false; // Gemv / GemvSiluMul for steps of <= 8 rows (fp16/bf16)
};

class CudaDecoder {
 public:
  // Allocates the scratch of `config` on the current device (which holds `weights` and
  // `kv`). `kv` must outlive the decoder and hold this shard's kv heads. `comm`: the
  // group's communicator when weights.shard.world > 1 (not owned; its stream must be
  // `stream`), else ignored. `stream` must outlive the decoder. InvalidArgument for a
  // bad config or a communicator that does not match the shard or the stream;
  // ResourceExhausted without the memory.
  static Result<std::unique_ptr<CudaDecoder>> Create(DeviceWeights weights, const DeviceKvCache* kv,
                                                     DeviceCommunicator* comm, cudaStream_t stream,
                                                     const CudaDecoderConfig& config);
  ~CudaDecoder();
  CudaDecoder(const CudaDecoder&) = delete;
  CudaDecoder& operator=(const CudaDecoder&) = delete;

  const ModelSpec& spec() const { return weights_.spec; }
  const ShardInfo& shard() const { return weights_.shard; }
  DType dtype() const { return weights_.dtype; }
  const CudaDecoderConfig& config() const { return config_; }

  // ForwardBackend::Step's contract. Validates the step before enqueueing anything:
  // InvalidArgument when it does not fit the preallocated sizes (more than
  // max_step_tokens tokens, more than max_rows sampled rows), when rows/tokens do not
  // match the entries with want_logits, or for a token id outside the vocabulary, a
  // position beyond max_seq_len, a block id outside the pool or a null pointer.
  // Device and communicator errors are Statuses (the KV slots of the step may then be
  // half written, harmless).
  Status Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
              std::span<int> tokens);

  // The logits rows of the last step that sampled (fp32 [rows, vocab], the full
  // vocabulary), copied to the host; synchronous, for tests and tools. As SampleTokens
  // leaves them: greedy rows without repetition penalty hold the raw logits.
  Status CopyLastLogits(std::vector<float>* logits) const;
  // Row `row` of the same into `out` (fp32 [vocab]); synchronous. The CUDA backend
  // samples rows with log-probabilities or presence/frequency penalties from it.
  // REQUIRES: 0 <= row < the last step's sampled rows, out.size() == vocab.
  Status CopyLogitsRow(int row, std::span<float> out) const;

  // Host-to-device bytes the last step copied (its descriptor).
  size_t last_step_upload_bytes() const { return last_upload_bytes_; }
  // Decode-step graphs captured so far (one per bucket used; 0 without cuda_graphs).
  int decode_graphs() const { return static_cast<int>(graphs_.size()); }
  // The padded row count of a decode step of n entries. REQUIRES: 1 <= n <= decode_cap().
  int DecodeBucket(int n) const;
  int decode_cap() const { return decode_cap_; }

 private:
  // One forward pass: rows [row_begin, row_begin + n_rows) of the step's descriptor,
  // entries [entry_begin, +n_entries), logits rows [logit_begin, +n_logits).
  struct Pass {
    int row_begin = 0, n_rows = 0;
    int entry_begin = 0, n_entries = 0;
    int logit_begin = 0, n_logits = 0;
    int max_context = 0;
  };
  // Device addresses of the step's descriptor arrays (inside desc_device_). For a decode
  // step they depend only on its bucket (the layout puts the variable-length tables and
  // histories last, in one region), which is what lets a captured graph be replayed.
  struct Descriptor {
    bool operator==(const Descriptor&) const = default;
    const int* tokens = nullptr;           // [n]
    const int* row_pos = nullptr;          // [n]
    const int* row_entry = nullptr;        // [n] entry index inside the row's pass
    const int* entry_first_row = nullptr;  // [E] first row inside the entry's pass
    const int* entry_n_rows = nullptr;     // [E]
    const int* entry_table = nullptr;      // [E] offset into block_tables
    const int* last_rows = nullptr;        // [R] last row (inside its pass) of each logits row's entry
    const int* block_tables = nullptr;     // concatenated tables, then the histories
    const int* history = nullptr;          // == block_tables; rows index past the tables
    const cuda::SamplingRow* sampling = nullptr;  // [R]
  };

  CudaDecoder(DeviceWeights weights, const DeviceKvCache* kv, DeviceCommunicator* comm, cudaStream_t stream,
              const CudaDecoderConfig& config);
  Status Allocate();
  Status Validate(std::span<const StepEntry> entries, std::span<const SampleRow> rows, std::span<int> tokens,
                  int64_t* n_table, int64_t* n_history) const;
  // Packs the descriptor into the pinned buffer and fills passes_ and desc_; returns its
  // bytes. bucket > 0: a decode step padded to `bucket` rows (one pass).
  Result<size_t> Pack(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
                      int64_t n_table, int64_t n_history, int bucket);
  // True when the step is fused and every entry is one token that wants logits.
  static bool IsDecodeStep(std::span<const StepEntry> entries, bool separate_passes);
  // Enqueues the passes_ and the sampling of n_logits rows (the step between the
  // descriptor upload and the token download).
  Status Enqueue(int n_logits);
  // Replays (capturing first, if new) the graph of this decode bucket.
  Status LaunchDecodeGraph(int bucket);
  Status Forward(const Pass& pass);
  // A norm's device weights; bias is null for RMSNorm.
  struct NormWeights {
    const float* weight = nullptr;
    const float* bias = nullptr;
  };
  NormWeights AttnNorm(int layer) const;
  NormWeights FfnNorm(int layer) const;
  NormWeights FinalNorm() const;
  // out = Norm(x): RmsNorm or LayerNorm, as the spec says.
  Status Norm(const cuda::MatrixView& x, const NormWeights& norm, const cuda::MatrixView& out);
  // hidden_ = the MLP's activation of xb_'s first n rows (the input of the W2 product).
  Status FeedForward(const DeviceLayerWeights& layer, int n);
  // One product in·wᵀ added to the residual stream.
  struct Product {
    cuda::MatrixView in;
    cuda::MatrixView w;
  };
  // x += Σ in·wᵀ (+ bias); then, if `next`, out = Norm(x) with it. TP: the products are
  // summed into proj_ and all-reduced once, the (replicated) bias added after, then
  // AddNorm (`next` REQUIRED).
  Status Residual(std::span<const Product> products, const float* bias, const std::optional<NormWeights>& next,
                  const cuda::MatrixView& out);
  Status LmHead(const Pass& pass);
  Status Wait();

  // Constant after construction.
  DeviceWeights weights_;
  ShardDims local_;
  const DeviceKvCache* kv_;
  DeviceCommunicator* comm_;  // null when world == 1
  cudaStream_t stream_;
  CudaDecoderConfig config_;
  int device_ = 0;
  size_t table_capacity_ = 0;    // block ids the descriptor holds
  size_t history_capacity_ = 0;  // history tokens the descriptor holds
  size_t desc_bytes_ = 0;
  size_t attn_ws_bytes_ = 0;
  size_t sampling_ws_bytes_ = 0;
  int decode_cap_ = 0;       // largest decode bucket: min(max_rows, max_step_tokens)
  bool use_graphs_ = false;  // config.cuda_graphs and world 1

  // Device resources, allocated at Create.
  cuda::Gemm gemm_;
  cuda::DeviceRopeTable rope_;
  cuda::DeviceBuffer x_;         // fp32 [N, dim] residual stream
  cuda::DeviceBuffer xb_;        // T [N, dim] normed input of the next GEMM
  cuda::DeviceBuffer qkv_;       // fp32 [N, q_dim + 2 * kv_dim]
  cuda::DeviceBuffer att_;       // T [N, q_dim]
  cuda::DeviceBuffer gate_up_;   // fp32 [N, 2 * hidden_dim] (GELU: the first hidden_dim columns)
  cuda::DeviceBuffer hidden_;    // T [N, hidden_dim]
  cuda::DeviceBuffer proj_;      // TP: fp32 [N, dim] partial Wo / W2 output
  cuda::DeviceBuffer normed_;    // TP: fp32 [N, dim] final norm of every row
  cuda::DeviceBuffer gathered_;  // fp32 [R, dim] last rows of the logits entries
  cuda::DeviceBuffer head_in_;   // T [R, dim] their final norm (LM head input)
  cuda::DeviceBuffer logits_;    // fp32 [R, vocab]
  cuda::DeviceBuffer logits_part_;  // TP: fp32 [R, vocab_per_rank]
  cuda::DeviceBuffer logits_all_;   // TP: fp32 [world, R, vocab_per_rank]
  cuda::DeviceBuffer attn_ws_;
  cuda::DeviceBuffer sampling_ws_;
  cuda::DeviceBuffer desc_device_;  // the step descriptor
  cuda::DeviceBuffer tokens_device_;  // int [R] sampled tokens
  struct PinnedDeleter {
    void operator()(unsigned char* p) const;
  };
  std::unique_ptr<unsigned char, PinnedDeleter> desc_host_;    // pinned [desc_bytes_]
  std::unique_ptr<unsigned char, PinnedDeleter> tokens_host_;  // pinned int [R]
  cudaEvent_t desc_copied_ = nullptr;  // the last descriptor upload finished
  struct GraphExecDeleter {
    void operator()(cudaGraphExec_t g) const;
  };
  struct DecodeGraph {
    int bucket = 0;
    Descriptor desc;  // the addresses it was captured with
    std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, GraphExecDeleter> exec;
  };
  std::vector<DecodeGraph> graphs_;  // captured decode steps, by bucket

  // Per-step state (host scratch reused across steps).
  std::vector<Pass> passes_;
  std::vector<int> entry_offset_;  // [E + 1]
  Descriptor desc_;
  int last_n_logits_ = 0;
  size_t last_upload_bytes_ = 0;
};

}  // namespace flover
