// Decoder: the one forward pass of a LLaMA-family model, parameterised by ModelSpec.
//
// A step is a list of entries, each a run of consecutive tokens of one sequence at
// positions [start_pos, start_pos + n_tokens): a prefill chunk or a single decode token.
// Entries of different sequences at different positions run in ONE pass: every weight
// GEMM runs once over all tokens of the step, attention runs per entry over its own KV
// blocks. The K/V of every token is written into its slot of the paged cache.
//
// Each row's arithmetic is independent of which other rows share the step (batch-
// invariant GEMM, per-row norms, per-sequence attention), so a request's logits are
// bit-identical whether it runs alone or fused with others.
//
// Thread-safety: Forward is not reentrant (it uses the decoder's scratch buffers); it
// parallelises internally with OpenMP.
#pragma once

#include <span>
#include <vector>

#include "common/model_spec.h"
#include "kernels/cpu/rope.h"
#include "worker/engine/kv_cache.h"
#include "worker/model/model_weights.h"

namespace flover {

struct StepEntry {
  const int* tokens = nullptr;      // [n_tokens]
  int n_tokens = 0;
  int start_pos = 0;                // position of tokens[0]
  const int* block_table = nullptr; // covers positions [0, start_pos + n_tokens)
  bool want_logits = false;         // logits of the entry's last token
};

class Decoder {
 public:
  // Takes the weights, packs Q|K|V and gate|up into single matrices (one GEMM each) and
  // frees the originals. REQUIRES: weights.Validate() is OK.
  explicit Decoder(ModelWeights weights);

  const ModelSpec& spec() const { return spec_; }

  // Runs one fused pass. logits: [number of entries with want_logits, vocab_size], in
  // entry order. REQUIRES: token ids in range; positions < spec().max_seq_len; block
  // tables cover every position written; entries of one sequence do not repeat.
  void Forward(std::span<const StepEntry> entries, const KvCache& kv, float* logits);

 private:
  struct Layer {
    std::vector<float> attn_norm;  // [dim]
    std::vector<float> wqkv;       // [q_dim + 2 * kv_dim, dim]
    std::vector<float> wo;         // [dim, q_dim]
    std::vector<float> ffn_norm;   // [dim]
    std::vector<float> w13;        // [2 * hidden_dim, dim]: gate rows, then up rows
    std::vector<float> w2;         // [dim, hidden_dim]
  };

  void EnsureScratch(int n_tokens, int n_logits);
  void Attention(std::span<const StepEntry> entries, const cpu::PagedKvLayer& kv);

  // Constant after construction.
  ModelSpec spec_;
  std::vector<float> token_embedding_;  // [vocab, dim]
  std::vector<float> classifier_;       // [vocab, dim]; empty when shared with the embedding
  std::vector<float> final_norm_;       // [dim]
  std::vector<Layer> layers_;
  cpu::RopeTable rope_;

  // Scratch, grown on demand and reused across steps (no steady-state allocation).
  std::vector<int> tokens_;       // [n]
  std::vector<int> positions_;    // [n]
  std::vector<int> entry_offset_; // [n_entries + 1]: first row of each entry
  std::vector<float> x_;          // [n, dim] residual stream
  std::vector<float> xb_;         // [n, dim] normed input
  std::vector<float> qkv_;        // [n, q_dim + 2 * kv_dim]
  std::vector<float> att_;        // [n, q_dim]
  std::vector<float> gate_up_;    // [n, 2 * hidden_dim]
  std::vector<float> hidden_;     // [n, hidden_dim]
  std::vector<float> final_;      // [n_logits, dim]
};

}  // namespace flover
