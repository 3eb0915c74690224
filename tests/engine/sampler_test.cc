#include "worker/engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace flover {
namespace {

std::vector<float> Logits(std::vector<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

int SampleOnce(std::vector<float> logits, const SamplingParams& p, uint64_t index, std::vector<int> history = {}) {
  Sampler s;
  return s.Sample(logits, p, history, index);
}

TEST(SamplerTest, GreedyPicksLowestIdAmongMaxima) {
  SamplingParams p;
  EXPECT_EQ(SampleOnce({0.1f, 3.0f, -1.0f, 3.0f}, p, 0), 1);
  EXPECT_EQ(SampleOnce({-5.0f, -4.0f}, p, 7), 1);
}

TEST(SamplerTest, UniformDrawIsDeterministicAndUniform) {
  EXPECT_EQ(UniformDraw(42, 7), UniformDraw(42, 7));
  EXPECT_NE(UniformDraw(42, 7), UniformDraw(43, 7));
  EXPECT_NE(UniformDraw(42, 7), UniformDraw(42, 8));
  double sum = 0;
  int buckets[10] = {};
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const float u = UniformDraw(3, i);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    ++buckets[static_cast<int>(u * 10)];
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);
  for (int b : buckets) EXPECT_NEAR(b, n / 10, n / 100);
}

TEST(SamplerTest, TemperatureSamplingFollowsTheDistribution) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 9;
  const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  std::vector<int> counts(4);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[SampleOnce(Logits(probs), p, i)];
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(counts[k] / double(n), probs[k], 0.015) << k;
}

TEST(SamplerTest, TopKAndTopPRestrictTheSupport) {
  const std::vector<double> probs = {0.1, 0.4, 0.3, 0.2};
  SamplingParams k2;
  k2.temperature = 1.0f;
  k2.top_k = 2;
  SamplingParams p05;
  p05.temperature = 1.0f;
  p05.top_p = 0.6f;  // {0.4, 0.3} reach 0.7 >= 0.6
  std::vector<int> seen_k(4), seen_p(4);
  for (int i = 0; i < 5000; ++i) {
    ++seen_k[SampleOnce(Logits(probs), k2, i)];
    ++seen_p[SampleOnce(Logits(probs), p05, i)];
  }
  EXPECT_EQ(seen_k[0] + seen_k[3], 0);
  EXPECT_GT(seen_k[1], seen_k[2]);
  EXPECT_GT(seen_k[2], 0);
  EXPECT_EQ(seen_p[0] + seen_p[3], 0);
  EXPECT_NEAR(seen_p[1] / 5000.0, 0.4 / 0.7, 0.03);

  SamplingParams tiny_p;
  tiny_p.temperature = 1.0f;
  tiny_p.top_p = 1e-6f;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(SampleOnce(Logits(probs), tiny_p, i), 1);
}

TEST(SamplerTest, TopPBelowEveryProbabilityKeepsTheMostLikelyToken) {
  // A flat distribution over 1000 tokens with p < 1/1000: the cutoff (1-p)/(V-1) lies
  // above every probability, and the nucleus is the single top token (lowest id).
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 1e-4f;
  std::vector<float> flat(1000, 0.5f);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(SampleOnce(flat, p, i), 0);
  flat[417] = 0.5001f;
  EXPECT_EQ(SampleOnce(flat, p, 0), 417);
}

TEST(SamplerTest, LowTemperatureApproachesGreedy) {
  SamplingParams p;
  p.temperature = 1e-3f;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(SampleOnce({1.0f, 1.5f, 1.4f}, p, i), 1);
}

TEST(SamplerTest, RepetitionPenaltyScalesEachSeenTokenOnce) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  // Token 0 (logit 3) was seen twice: 3 / 2 = 1.5 < 2 (token 1), so greedy moves to 1.
  EXPECT_EQ(SampleOnce({3.0f, 2.0f, -1.0f}, p, 0, {0, 0}), 1);
  // Negative logits are multiplied: token 2 goes from -1 to -2, still below the others.
  Sampler s;
  std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  s.Sample(logits, p, std::vector<int>{0, 2, 0, 2}, 0);
  EXPECT_FLOAT_EQ(logits[0], 1.5f);
  EXPECT_FLOAT_EQ(logits[1], 2.0f);
  EXPECT_FLOAT_EQ(logits[2], -2.0f);
  // The scratch marks are cleared between calls.
  logits = {3.0f, 2.0f, -1.0f};
  s.Sample(logits, p, std::vector<int>{1}, 0);
  EXPECT_FLOAT_EQ(logits[0], 3.0f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f);
}

TEST(SamplerTest, SameSeedAndIndexGiveSameTokenWhateverTheHistoryOfCalls) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 77;
  const std::vector<double> probs = {0.25, 0.25, 0.25, 0.25};
  Sampler shared;
  std::vector<int> a, b;
  for (int i = 0; i < 50; ++i) {
    std::vector<float> l1 = Logits(probs), l2 = Logits(probs);
    a.push_back(shared.Sample(l1, p, {}, i));
    SamplingParams other = p;
    other.seed = 5;
    shared.Sample(l2, other, {}, i);  // interleaved foreign request
  }
  for (int i = 0; i < 50; ++i) b.push_back(SampleOnce(Logits(probs), p, i));
  EXPECT_EQ(a, b);
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesCountOnlyGeneratedTokens) {
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s;
  std::vector<float> logits = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
  // Prompt {4, 4, 3}, then generated {0, 1, 1, 7 (outside the vocabulary: ignored)}.
  const std::vector<int> history = {4, 4, 3, 0, 1, 1, 7};
  s.Sample(logits, p, history, /*draw_index=*/4);
  EXPECT_FLOAT_EQ(logits[0], 1.0f - (0.25f * 1 + 0.5f));
  EXPECT_FLOAT_EQ(logits[1], 2.0f - (0.25f * 2 + 0.5f));
  EXPECT_FLOAT_EQ(logits[2], 3.0f);
  EXPECT_FLOAT_EQ(logits[3], 4.0f) << "prompt tokens are not penalised";
  EXPECT_FLOAT_EQ(logits[4], 5.0f) << "prompt tokens are not penalised";
  // Negative penalties favour what was generated; the counts are cleared between calls.
  p.presence_penalty = -1.0f;
  p.frequency_penalty = 0.0f;
  logits = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
  s.Sample(logits, p, history, 1);  // only the last token (7) counts: outside, nothing changes
  EXPECT_EQ(logits, (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f, 5.0f}));
  s.Sample(logits, p, history, 3);  // generated {1, 1, 7}
  EXPECT_FLOAT_EQ(logits[1], 3.0f);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
}

TEST(SamplerTest, PenaltiesComeAfterTheRepetitionPenaltyAndMoveTheGreedyToken) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  Sampler s;
  std::vector<float> logits = {4.0f, 3.5f, 0.0f};
  // Token 0 was generated twice: 4 / 2 - 1 * 2 = 0 < 3.5.
  EXPECT_EQ(s.Sample(logits, p, std::vector<int>{2, 0, 0}, 2), 1);
  EXPECT_FLOAT_EQ(logits[0], 0.0f);
  // Without the penalties the same logits give token 0.
  EXPECT_EQ(SampleOnce({4.0f, 3.5f, 0.0f}, SamplingParams{}, 2, {2, 0, 0}), 0);
}

// The reference: log_softmax in long double, and the alternatives sorted by (logprob
// descending, id ascending).
std::vector<long double> ReferenceLogSoftmax(const std::vector<float>& logits) {
  long double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<long double>(v));
  std::vector<long double> out;
  for (float v : logits) out.push_back(static_cast<long double>(v) - std::log(sum));
  return out;
}

std::vector<int> ReferenceOrder(const std::vector<float>& logits) {
  std::vector<int> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  return ids;
}

std::vector<float> RandomLogits(std::mt19937& rng, int vocab) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(vocab);
  for (float& v : logits) v = normal(rng);
  return logits;
}

TEST(SamplerTest, LogprobsAreTheLogSoftmaxOfTheRawLogits) {
  std::mt19937 rng(11);
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 10;
  p.top_p = 0.9f;
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = -0.3f;
  p.logprobs = true;
  p.top_logprobs = 5;
  p.seed = 4;
  Sampler s;
  for (int trial = 0; trial < 50; ++trial) {
    const std::vector<float> raw = RandomLogits(rng, 300);
    const std::vector<long double> want = ReferenceLogSoftmax(raw);
    const std::vector<int> order = ReferenceOrder(raw);
    std::vector<float> logits = raw;
    TokenLogprobs got;
    const int token = s.Sample(logits, p, std::vector<int>{5, order[0], order[1], order[0]}, 3, &got);
    EXPECT_NEAR(got.logprob, want[token], 1e-5) << trial;
    ASSERT_EQ(got.top.size(), 5u);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(got.top[i].token, order[i]) << trial << " rank " << i;
      EXPECT_NEAR(got.top[i].logprob, want[order[i]], 1e-5) << trial << " rank " << i;
    }
  }
}

TEST(SamplerTest, TopLogprobsBreakTiesByLowerIdAndStopAtTheVocabulary) {
  SamplingParams p;
  p.logprobs = true;
  p.top_logprobs = 20;
  TokenLogprobs got;
  std::vector<float> logits = {1.0f, 3.0f, 3.0f, 0.0f, 3.0f};
  Sampler s;
  EXPECT_EQ(s.Sample(logits, p, {}, 0, &got), 1);
  ASSERT_EQ(got.top.size(), 5u) << "at most the vocabulary";
  const std::vector<int> ids = {1, 2, 4, 0, 3};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got.top[i].token, ids[i]);
  EXPECT_EQ(got.top[0].logprob, got.top[1].logprob);
  EXPECT_EQ(got.top[1].logprob, got.top[2].logprob);
  EXPECT_GT(got.top[2].logprob, got.top[3].logprob);
  // logprobs without alternatives: the chosen token's only.
  p.top_logprobs = 0;
  logits = {1.0f, 3.0f, 3.0f, 0.0f, 3.0f};
  s.Sample(logits, p, {}, 0, &got);
  EXPECT_TRUE(got.top.empty());
  EXPECT_NEAR(got.logprob, ReferenceLogSoftmax({1.0f, 3.0f, 3.0f, 0.0f, 3.0f})[1], 1e-6);
}

TEST(SamplerTest, GreedyChoiceIsTheTopAlternative) {
  std::mt19937 rng(5);
  SamplingParams p;
  p.logprobs = true;
  p.top_logprobs = 3;
  Sampler s;
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> logits = RandomLogits(rng, 64);
    TokenLogprobs got;
    const int token = s.Sample(logits, p, {}, 0, &got);
    ASSERT_EQ(got.top.size(), 3u);
    EXPECT_EQ(token, got.top[0].token);
    EXPECT_EQ(got.logprob, got.top[0].logprob);
    EXPECT_LE(got.top[1].logprob, got.top[0].logprob);
  }
}

TEST(SamplerTest, AskingForLogprobsChangesNoToken) {
  std::mt19937 rng(8);
  SamplingParams plain;
  plain.temperature = 0.9f;
  plain.top_p = 0.8f;
  plain.presence_penalty = 0.4f;
  plain.seed = 21;
  SamplingParams asking = plain;
  asking.logprobs = true;
  asking.top_logprobs = 4;
  Sampler s;
  const std::vector<int> history = {1, 9, 9, 3};
  for (int i = 0; i < 200; ++i) {
    const std::vector<float> raw = RandomLogits(rng, 40);
    std::vector<float> a = raw, b = raw;
    TokenLogprobs got;
    EXPECT_EQ(s.Sample(a, plain, history, 2), s.Sample(b, asking, history, 2, &got)) << i;
    EXPECT_EQ(a, b) << "the same logits come out";
  }
}

}  // namespace
}  // namespace flover
