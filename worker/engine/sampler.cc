#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace flover {

float UniformDraw(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) / 16777216.0f;  // 24 bits -> [0, 1)
}

void Sampler::ApplyRepetitionPenalty(std::span<float> logits, float penalty, std::span<const int> history) {
  if (seen_.size() < logits.size()) seen_.resize(logits.size(), 0);
  for (int id : history) {
    if (id < 0 || id >= static_cast<int>(logits.size()) || seen_[id]) continue;
    seen_[id] = 1;
    logits[id] = logits[id] > 0.0f ? logits[id] / penalty : logits[id] * penalty;
  }
  for (int id : history) {
    if (id >= 0 && id < static_cast<int>(logits.size())) seen_[id] = 0;
  }
}

void Sampler::ApplyGeneratedPenalties(std::span<float> logits, const SamplingParams& params,
                                      std::span<const int> generated) {
  const int vocab = static_cast<int>(logits.size());
  if (counts_.size() < logits.size()) counts_.resize(logits.size(), 0);
  for (int id : generated)
    if (id >= 0 && id < vocab) ++counts_[id];
  for (int id : generated) {
    if (id < 0 || id >= vocab || counts_[id] == 0) continue;  // outside, or done already
    logits[id] -= params.frequency_penalty * static_cast<float>(counts_[id]) + params.presence_penalty;
    counts_[id] = 0;
  }
}

double LogSumExp(std::span<const float> logits) {
  FLOVER_CHECK(!logits.empty());
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max_logit);
  return max_logit + std::log(sum);
}

void Sampler::TopLogprobs(int k, double log_sum, std::vector<TokenLogprob>* top) {
  top->clear();
  const int vocab = static_cast<int>(raw_.size());
  k = std::min(k, vocab);
  if (k <= 0) return;
  candidates_.clear();
  for (int id = 0; id < vocab; ++id) candidates_.emplace_back(raw_[id], id);
  auto more_likely = [](const std::pair<float, int>& a, const std::pair<float, int>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(), more_likely);
  for (int i = 0; i < k; ++i)
    top->push_back(TokenLogprob{candidates_[i].second, static_cast<float>(candidates_[i].first - log_sum)});
}

int Sampler::Sample(std::span<float> logits, const SamplingParams& params, std::span<const int> history,
                    uint64_t draw_index, TokenLogprobs* logprobs) {
  if (!params.logprobs) return Choose(logits, params, history, draw_index);
  FLOVER_CHECK(logprobs != nullptr);
  raw_.assign(logits.begin(), logits.end());
  const int token = Choose(logits, params, history, draw_index);
  const double log_sum = LogSumExp(raw_);
  logprobs->logprob = static_cast<float>(raw_[token] - log_sum);
  TopLogprobs(params.top_logprobs, log_sum, &logprobs->top);
  return token;
}

int Sampler::Choose(std::span<float> logits, const SamplingParams& params, std::span<const int> history,
                    uint64_t draw_index) {
  const int vocab = static_cast<int>(logits.size());
  FLOVER_CHECK(vocab > 0);
  if (params.repetition_penalty != 1.0f) ApplyRepetitionPenalty(logits, params.repetition_penalty, history);
  if (params.penalises_generated()) {
    FLOVER_CHECK(draw_index <= history.size()) << "draw_index " << draw_index << ", history " << history.size();
    ApplyGeneratedPenalties(logits, params, history.last(static_cast<size_t>(draw_index)));
  }

  if (params.greedy()) {
    return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  // Softmax at temperature T.
  const float inv_t = 1.0f / params.temperature;
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float& v : logits) {
    v = std::exp((v - max_logit) * inv_t);
    sum += v;
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (float& v : logits) v *= inv_sum;

  // Candidates: all tokens, or (top-p alone) only those that can be inside the nucleus:
  // a token with probability < (1 - p) / (vocab - 1) cannot be, since the tokens above
  // it already reach p.
  candidates_.clear();
  const bool use_top_p = params.top_p < 1.0f;
  const bool use_cutoff = use_top_p && params.top_k == 0 && vocab > 1;
  const float cutoff = use_cutoff ? (1.0f - params.top_p) / static_cast<float>(vocab - 1) : 0.0f;
  for (int id = 0; id < vocab; ++id) {
    if (logits[id] >= cutoff) candidates_.emplace_back(logits[id], id);
  }
  if (candidates_.empty()) {
    // p below every probability (e.g. p < 1/vocab on a flat distribution): the nucleus
    // is the single most likely token.
    const int best = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    return best;
  }
  auto more_likely = [](const std::pair<float, int>& a, const std::pair<float, int>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  size_t keep = candidates_.size();
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < keep) {
    keep = params.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), more_likely);
    candidates_.resize(keep);
  } else if (use_top_p) {
    std::sort(candidates_.begin(), candidates_.end(), more_likely);
  }
  if (use_top_p) {
    double total = 0.0;
    for (const auto& c : candidates_) total += c.first;
    double mass = 0.0;
    size_t n = 0;
    while (n < candidates_.size()) {
      mass += candidates_[n++].first;
      if (mass >= params.top_p * total) break;
    }
    candidates_.resize(n);
  }

  double total = 0.0;
  for (const auto& c : candidates_) total += c.first;
  const double target = static_cast<double>(UniformDraw(params.seed, draw_index)) * total;
  double cumulative = 0.0;
  for (const auto& c : candidates_) {
    cumulative += c.first;
    if (target < cumulative) return c.second;
  }
  return candidates_.back().second;  // rounding: the mass fell just short of target
}

}  // namespace flover
