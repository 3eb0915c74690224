// A plain-loop forward pass for tests: one token at a time over a contiguous KV cache,
// written the way llama2.c's run.c computes it (sequential float dot products, no
// batching, no packing, no sharding), for every architecture ModelSpec describes: RMSNorm
// or LayerNorm, SwiGLU or GELU, sequential or parallel residual, partial rotary, LLaMA 3
// rope scaling, q/k/v, MLP and LM head biases. It is a second implementation, sharing no
// code with the engine (it computes its own rotary frequencies), which is checked
// against it. For LLaMA models its arithmetic is run.c's.
#pragma once

#include <span>
#include <vector>

#include "worker/model/model_weights.h"

namespace flover::testing {

class ReferenceModel {
 public:
  explicit ReferenceModel(const ModelWeights& weights);

  // Logits [vocab] for `token` at position `pos`. REQUIRES: positions 0..pos-1 were
  // forwarded before, in order (each sequence needs its own ReferenceModel or Reset()).
  const std::vector<float>& Forward(int token, int pos);
  void Reset() {}

  // Greedy continuation in run.c's way: `steps` positions in all (BOS included), stop
  // early when BOS or EOS is produced. Returns generated ids.
  std::vector<int> Greedy(const std::vector<int>& prompt, int steps);

 private:
  // o = norm(x) with this block's weight (and bias, LayerNorm). o may be x.
  void Norm(float* o, const float* x, std::span<const float> weight, std::span<const float> bias) const;
  // out [dim] = the feed-forward block of xb_ (biases included).
  void FeedForward(const LayerWeights& L, float* out);

  const ModelWeights& w_;
  std::vector<float> freqs_;                    // [rotary_dims / 2]
  std::vector<float> key_cache_, value_cache_;  // [layer, seq, kv_dim]
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, k_, v_, att_, att_out_, ffn_out_, logits_;
};

}  // namespace flover::testing
