// Sampler: turns one request's logits into its next token.
//
// Order: repetition penalty (CTRL-style: a logit of a token already in the prompt or
// output is divided by the penalty if positive, multiplied if negative); presence and
// frequency penalties (OpenAI's, over the generated tokens only: logit[t] -=
// frequency_penalty * count(t) + presence_penalty, for each t generated count(t) > 0
// times); then greedy
// argmax (lowest id on ties) when temperature is 0; otherwise logits / temperature,
// softmax, top-k, top-p (the smallest set of most likely tokens whose mass reaches p),
// and one draw from what is left.
//
// Randomness is counter-based: draw i of a request is a pure function of (seed, i), so
// a request's samples do not depend on what else shares its steps, on thread timing, or
// on whether it was preempted and recomputed. Candidates are ordered by (probability
// descending, id ascending), so results are deterministic.
//
// Log-probabilities (params.logprobs) are of the model's own distribution, log_softmax
// of the RAW logits (before every penalty, the temperature, top-k and top-p): the
// chosen token's, and the top_logprobs most likely tokens by (logprob descending, id
// ascending). Asking for them changes no token.
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
  // (for the repetition penalty). draw_index: how many tokens this request generated;
  // they are the last draw_index tokens of history (presence/frequency penalties).
  // logprobs: with params.logprobs, gets the chosen token's log-probability and the
  // params.top_logprobs (at most vocab) most likely tokens; otherwise untouched; may be
  // null when params.logprobs is false.
  // REQUIRES: draw_index <= history.size() when params.penalises_generated().
  int Sample(std::span<float> logits, const SamplingParams& params, std::span<const int> history,
             uint64_t draw_index, TokenLogprobs* logprobs = nullptr);

 private:
  int Choose(std::span<float> logits, const SamplingParams& params, std::span<const int> history,
             uint64_t draw_index);
  void ApplyRepetitionPenalty(std::span<float> logits, float penalty, std::span<const int> history);
  void ApplyGeneratedPenalties(std::span<float> logits, const SamplingParams& params, std::span<const int> generated);
  // From raw_: its log-sum-exp, and the `k` most likely tokens into *top.
  void TopLogprobs(int k, double log_sum, std::vector<TokenLogprob>* top);

  std::vector<std::pair<float, int>> candidates_;  // (probability, id)
  std::vector<uint8_t> seen_;                      // [vocab], all zero between calls
  std::vector<int> counts_;                        // [vocab], all zero between calls
  std::vector<float> raw_;                         // [vocab] raw logits (log-probabilities)
};

// log(sum(exp(logits))), computed in double around the maximum. REQUIRES: non-empty.
double LogSumExp(std::span<const float> logits);

}  // namespace flover
