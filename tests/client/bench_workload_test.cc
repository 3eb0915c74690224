// Tests the workload of `flover bench` (client/bench_workload.h): counts, arrival
// processes, seeded determinism, prompt and output-length bounds, flag parsing.
#include "client/bench/bench_workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace flover {
namespace {

WorkloadSpec Spec() {
  WorkloadSpec s;
  s.n_requests = 10;
  s.interval_ms = 25;
  s.seed = 7;
  s.prompt_min = s.prompt_max = 8;
  s.output_min = s.output_max = 16;
  s.vocab_size = 512;
  return s;
}

std::vector<BenchRequest> Generate(const WorkloadSpec& s) {
  Result<std::vector<BenchRequest>> r = GenerateWorkload(s);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<BenchRequest>();
}

TEST(BenchWorkloadTest, FixedIntervalCountsAndArrivals) {
  const std::vector<BenchRequest> w = Generate(Spec());
  ASSERT_EQ(w.size(), 10u);
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(w[i].index, static_cast<int>(i));
    EXPECT_DOUBLE_EQ(w[i].arrival_s, 0.025 * static_cast<double>(i));
    EXPECT_EQ(w[i].output_len, 16);
    ASSERT_EQ(w[i].prompt_ids.size(), 8u);
    EXPECT_TRUE(w[i].prompt_text.empty());
  }
}

TEST(BenchWorkloadTest, IntervalZeroIsAllAtOnce) {
  WorkloadSpec s = Spec();
  s.interval_ms = 0;
  for (const BenchRequest& r : Generate(s)) EXPECT_EQ(r.arrival_s, 0.0);
}

TEST(BenchWorkloadTest, PromptIdsAreInTheVocabularyAndAvoidSpecialTokens) {
  WorkloadSpec s = Spec();
  s.n_requests = 200;
  s.vocab_size = 10;  // small: every id 3..9 shows up
  std::set<int> seen;
  for (const BenchRequest& r : Generate(s))
    for (int id : r.prompt_ids) {
      EXPECT_GE(id, kFirstRandomToken);
      EXPECT_LT(id, 10);
      seen.insert(id);
    }
  EXPECT_EQ(seen, (std::set<int>{3, 4, 5, 6, 7, 8, 9}));
}

TEST(BenchWorkloadTest, SameSeedSameWorkloadOtherSeedOtherPrompts) {
  WorkloadSpec s = Spec();
  s.arrival = ArrivalProcess::kPoisson;
  s.output_min = 1;
  s.output_max = 100;
  const std::vector<BenchRequest> a = Generate(s), b = Generate(s);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arrival_s, b[i].arrival_s);
    EXPECT_EQ(a[i].prompt_ids, b[i].prompt_ids);
    EXPECT_EQ(a[i].output_len, b[i].output_len);
  }
  s.seed = 8;
  const std::vector<BenchRequest> c = Generate(s);
  EXPECT_NE(a[0].prompt_ids, c[0].prompt_ids);
  EXPECT_NE(a[1].arrival_s, c[1].arrival_s);
}

TEST(BenchWorkloadTest, GoldenValuesDoNotDependOnThePlatform) {
  // SplitMix64 from seed 0: the reference sequence of the algorithm.
  WorkloadRng rng(0);
  EXPECT_EQ(rng.Next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(rng.Next(), 0x6e789e6aa1b965f4ULL);
}

TEST(BenchWorkloadTest, StreamsAreIndependent) {
  // Changing the output range or the arrivals must not change the prompts.
  WorkloadSpec s = Spec();
  const std::vector<BenchRequest> a = Generate(s);
  s.output_min = 3;
  s.output_max = 40;
  s.arrival = ArrivalProcess::kPoisson;
  const std::vector<BenchRequest> b = Generate(s);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].prompt_ids, b[i].prompt_ids);
}

TEST(BenchWorkloadTest, PoissonGapsAreExponentialWithTheMean) {
  WorkloadSpec s = Spec();
  s.arrival = ArrivalProcess::kPoisson;
  s.interval_ms = 10;
  s.n_requests = 20001;
  const std::vector<BenchRequest> w = Generate(s);
  EXPECT_EQ(w.front().arrival_s, 0.0);
  double sum = 0, sum_sq = 0;
  for (size_t i = 1; i < w.size(); ++i) {
    const double gap_ms = (w[i].arrival_s - w[i - 1].arrival_s) * 1000;
    ASSERT_GT(gap_ms, 0.0);
    sum += gap_ms;
    sum_sq += gap_ms * gap_ms;
  }
  const double n = static_cast<double>(w.size() - 1);
  const double mean = sum / n;
  const double stddev = std::sqrt(sum_sq / n - mean * mean);
  // The standard error of the mean is 10 / sqrt(20000) = 0.07 ms: 3% is > 4 sigma.
  EXPECT_NEAR(mean, 10.0, 0.3);
  EXPECT_NEAR(stddev, 10.0, 0.5);  // exponential: stddev == mean (a fixed interval has 0)
}

TEST(BenchWorkloadTest, UniformOutputLengthsCoverTheRangeInclusively) {
  WorkloadSpec s = Spec();
  s.n_requests = 2000;
  s.output_min = 16;
  s.output_max = 20;
  std::map<int, int> counts;
  for (const BenchRequest& r : Generate(s)) ++counts[r.output_len];
  ASSERT_EQ(counts.size(), 5u);
  EXPECT_EQ(counts.begin()->first, 16);
  EXPECT_EQ(counts.rbegin()->first, 20);
  for (const auto& [len, count] : counts) EXPECT_NEAR(count, 400, 80) << len;
}

TEST(BenchWorkloadTest, TextPromptNeedsNoVocabulary) {
  WorkloadSpec s = Spec();
  s.prompt_text = "Once upon a time";
  s.vocab_size = 0;
  for (const BenchRequest& r : Generate(s)) {
    EXPECT_EQ(r.prompt_text, "Once upon a time");
    EXPECT_TRUE(r.prompt_ids.empty());
  }
}

TEST(BenchWorkloadTest, BadSpecsAreClearErrors) {
  auto error = [](void (*edit)(WorkloadSpec&)) {
    WorkloadSpec s = Spec();
    edit(s);
    Result<std::vector<BenchRequest>> r = GenerateWorkload(s);
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(error([](WorkloadSpec& s) { s.n_requests = 0; }).find("--requests"), std::string::npos);
  EXPECT_NE(error([](WorkloadSpec& s) { s.interval_ms = -1; }).find("--interval-ms"), std::string::npos);
  EXPECT_NE(error([](WorkloadSpec& s) {
              s.arrival = ArrivalProcess::kPoisson;
              s.interval_ms = 0;
            }).find("--rate"),
            std::string::npos);
  EXPECT_NE(error([](WorkloadSpec& s) { s.prompt_min = 0; }).find("--prompt-len"), std::string::npos);
  EXPECT_NE(error([](WorkloadSpec& s) { s.output_min = 0; }).find("--output-len"), std::string::npos);
  EXPECT_NE(error([](WorkloadSpec& s) { s.vocab_size = 3; }).find("vocabulary"), std::string::npos);
  EXPECT_NE(error([](WorkloadSpec& s) { s.vocab_size = 0; }).find("vocabulary"), std::string::npos);
  // vocab_size 0 is "not known yet" for validation alone.
  WorkloadSpec unknown = Spec();
  unknown.vocab_size = 0;
  EXPECT_TRUE(ValidateWorkload(unknown).ok());
}

TEST(BenchWorkloadTest, ParseOutputLen) {
  int lo = 0, hi = 0;
  ASSERT_TRUE(ParseOutputLen("8", &lo, &hi).ok());
  EXPECT_EQ(lo, 8);
  EXPECT_EQ(hi, 8);
  ASSERT_TRUE(ParseOutputLen("16:64", &lo, &hi).ok());
  EXPECT_EQ(lo, 16);
  EXPECT_EQ(hi, 64);
  const Status reversed = ParseOutputLen("5:2", &lo, &hi);
  EXPECT_EQ(reversed.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(reversed.message().find("--output-len 5:2"), std::string::npos) << reversed.message();
  EXPECT_NE(reversed.message().find("empty"), std::string::npos) << reversed.message();
  for (const char* bad : {"", "0", "x", "3:", ":4", "-1", "1:0", "2:3:4", "1.5", "99999999999"})
    EXPECT_FALSE(ParseOutputLen(bad, &lo, &hi).ok()) << bad;
  EXPECT_EQ(lo, 16);  // untouched on error
}

}  // namespace
}  // namespace flover

namespace flover {
namespace {

TEST(BenchWorkloadTest, PromptLengthRangesAreUniformSeededAndLeaveTheOtherStreamsAlone) {
  WorkloadSpec s = Spec();
  s.n_requests = 400;
  s.prompt_min = 3;
  s.prompt_max = 6;
  const std::vector<BenchRequest> a = Generate(s);
  std::map<size_t, int> counts;
  for (const BenchRequest& r : a) ++counts[r.prompt_ids.size()];
  ASSERT_EQ(counts.size(), 4u) << "every length of [3, 6] occurs, no other";
  EXPECT_EQ(counts.begin()->first, 3u);
  EXPECT_EQ(counts.rbegin()->first, 6u);
  for (const auto& [len, n] : counts) EXPECT_GT(n, 60) << len;  // ~100 each
  // Same seed, same prompts; the arrivals and output lengths do not depend on the range.
  const std::vector<BenchRequest> again = Generate(s);
  WorkloadSpec fixed = s;
  fixed.prompt_min = fixed.prompt_max = 8;
  const std::vector<BenchRequest> f = Generate(fixed);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt_ids, again[i].prompt_ids);
    EXPECT_EQ(a[i].output_len, f[i].output_len);
    EXPECT_EQ(a[i].arrival_s, f[i].arrival_s);
  }
}

TEST(BenchWorkloadTest, ParseLengthRangeNamesItsFlag) {
  int lo = 0, hi = 0;
  ASSERT_TRUE(ParseLengthRange("--prompt-len", "32:256", &lo, &hi).ok());
  EXPECT_EQ(lo, 32);
  EXPECT_EQ(hi, 256);
  const Status reversed = ParseLengthRange("--prompt-len", "256:32", &lo, &hi);
  EXPECT_NE(reversed.message().find("--prompt-len 256:32"), std::string::npos) << reversed.message();
  WorkloadSpec s = Spec();
  s.prompt_min = 9;
  s.prompt_max = 4;
  EXPECT_NE(ValidateWorkload(s).message().find("--prompt-len"), std::string::npos);
}

}  // namespace
}  // namespace flover
