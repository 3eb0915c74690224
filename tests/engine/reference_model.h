// A plain-loop LLaMA forward pass for tests: one token at a time over a contiguous KV
// cache, written the way llama2.c's run.c computes it (sequential float dot products,
// no batching, no paging). The engine is checked against it.
#pragma once

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
  const ModelWeights& w_;
  std::vector<float> key_cache_, value_cache_;  // [layer, seq, kv_dim]
  std::vector<float> x_, xb_, xb2_, hb_, hb2_, q_, k_, v_, att_, logits_;
};

}  // namespace flover::testing
