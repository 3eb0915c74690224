// Sampler: turns one request's logits into its next token.
//
// Order: repetition penalty (CTRL-style: a logit of a token already in the prompt or
// output is divided by the penalty if positive, multiplied if negative); then greedy
// argmax (lowest id on ties) when temperature is 0; otherwise logits / temperature,
// softmax, top-k, top-p (the smallest set of most likely tokens whose mass reaches p),
// and one draw from what is left.
//
// Randomness is counter-based: draw i of a request is a pure function of (seed, i), so
// a request's samples do not depend on what else shares its steps, on thread timing, or
// on whether it was preempted and recomputed. Candidates are ordered by (probability
// descending, id ascending), so results are deterministic.
//
// Thread-safety: a Sampler holds scratch buffers; use one per thread.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/request_params.h"

namespace flover {

// Uniform float in [0, 1) for draw `index` of the stream `seed` (SplitMix64 finaliser,
// 24 random bits). Exposed for tests and for the CUDA sampler to match.
float UniformDraw(uint64_t seed, uint64_t index);

class Sampler {
 public:
  // logits: [vocab], modified in place. history: prompt + generated tokens so far
  // (for the repetition penalty). draw_index: how many tokens this request generated.
  int Sample(std::span<float> logits, const SamplingParams& params, std::span<const int> history,
             uint64_t draw_index);

 private:
  void ApplyRepetitionPenalty(std::span<float> logits, float penalty, std::span<const int> history);

  std::vector<std::pair<float, int>> candidates_;  // (probability, id)
  std::vector<uint8_t> seen_;                      // [vocab], all zero between calls
};

}  // namespace flover
