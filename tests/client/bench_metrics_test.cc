// Tests the metrics of `flover bench` (client/bench_metrics.h) on small timelines whose
// every number is computed by hand in the comments.
#include "client/bench/bench_metrics.h"

#include <gtest/gtest.h>

namespace flover {
namespace {

constexpr double kEps = 1e-9;

RequestTimeline Completed(int index, double submit, std::vector<double> token_times) {
  RequestTimeline r;
  r.index = index;
  r.submit_s = submit;
  r.accepted_s = submit + 0.001;
  for (double t : token_times) r.tokens.push_back({t, 1});
  r.done_s = token_times.back();
  r.output_tokens = static_cast<int>(token_times.size());
  r.finish_reason = "length";
  return r;
}

TEST(BenchMetricsTest, PercentilesInterpolateLinearly) {
  const std::vector<double> v = {5, 1, 4, 2, 3};  // unsorted on purpose
  EXPECT_NEAR(Percentile(v, 0), 1, kEps);
  EXPECT_NEAR(Percentile(v, 25), 2, kEps);
  EXPECT_NEAR(Percentile(v, 50), 3, kEps);
  EXPECT_NEAR(Percentile(v, 90), 4.6, kEps);  // rank 3.6: 4 + 0.6 * (5 - 4)
  EXPECT_NEAR(Percentile(v, 99), 4.96, kEps);
  EXPECT_NEAR(Percentile(v, 100), 5, kEps);
  EXPECT_EQ(Percentile({}, 50), 0);
  EXPECT_EQ(Percentile({7}, 99), 7);

  const LatencyStats s = Summarize({0.4, 0.5});
  EXPECT_EQ(s.n, 2u);
  EXPECT_NEAR(s.mean, 0.45, kEps);
  EXPECT_NEAR(s.p50, 0.45, kEps);
  EXPECT_NEAR(s.p90, 0.49, kEps);
  EXPECT_NEAR(s.p99, 0.499, kEps);
  EXPECT_EQ(Summarize({}).n, 0u);
}

TEST(BenchMetricsTest, HandComputedTimeline) {
  // A: submit 0.0, tokens at 0.1 0.2 0.4, done 0.4: e2e 0.4, TTFT 0.1, TPOT (0.4-0.1)/2 = 0.15,
  //    ITL 0.1 0.2.
  // B: submit 0.5, tokens at 0.8 1.0, done 1.0: e2e 0.5, TTFT 0.3, TPOT 0.2/1 = 0.2, ITL 0.2.
  // C: submit 0.2, Error at 0.6: failed, in no statistic.
  std::vector<RequestTimeline> runs = {Completed(0, 0.0, {0.1, 0.2, 0.4}), Completed(1, 0.5, {0.8, 1.0})};
  RequestTimeline failed;
  failed.index = 2;
  failed.submit_s = 0.2;
  failed.done_s = 0.6;
  failed.error = "Unavailable: replica 0 is unhealthy";
  failed.finish_reason = "error";
  runs.push_back(failed);

  const BenchMetrics m = ComputeMetrics(runs, /*single_latency_s=*/0.3, {10, 12, 1.0, 0.25}, {20, 42, 1.5, 0.27});
  EXPECT_EQ(m.n_requests, 3);
  EXPECT_EQ(m.n_completed, 2);
  EXPECT_EQ(m.n_failed, 1);
  EXPECT_EQ(m.output_tokens, 5);
  EXPECT_NEAR(m.overall_latency_s, 1.0, kEps);  // first submit 0.0 -> last completion 1.0
  EXPECT_NEAR(m.avg_latency_s, 0.45, kEps);
  EXPECT_NEAR(m.single_latency_s, 0.3, kEps);
  EXPECT_NEAR(m.avg_over_single, 1.5, kEps);  // 0.45 / 0.3
  EXPECT_NEAR(m.request_throughput, 2.0, kEps);
  EXPECT_NEAR(m.output_tokens_per_s, 5.0, kEps);
  EXPECT_NEAR(m.e2e.mean, 0.45, kEps);
  EXPECT_NEAR(m.e2e.p90, 0.49, kEps);
  EXPECT_EQ(m.ttft.n, 2u);
  EXPECT_NEAR(m.ttft.mean, 0.2, kEps);
  EXPECT_NEAR(m.ttft.p50, 0.2, kEps);
  EXPECT_NEAR(m.ttft.p99, 0.298, kEps);  // 0.1 + 0.99 * 0.2
  EXPECT_EQ(m.tpot.n, 2u);
  EXPECT_NEAR(m.tpot.mean, 0.175, kEps);
  EXPECT_EQ(m.itl.n, 3u);                  // every gap: 0.1, 0.2, 0.2
  EXPECT_NEAR(m.itl.mean, 0.5 / 3, kEps);
  EXPECT_NEAR(m.itl.p50, 0.2, kEps);
  EXPECT_NEAR(m.avg_requests_per_step, 3.0, kEps);  // (42 - 12) tokens / (20 - 10) steps
  EXPECT_NEAR(m.avg_step_compute_s, 0.05, kEps);    // (1.5 - 1.0) s / 10 steps
  EXPECT_NEAR(m.avg_step_wait_s, 0.002, kEps);      // (0.27 - 0.25) s / 10 steps
}

TEST(BenchMetricsTest, OneTokenRequestsHaveNoTpotAndAnEventOfSeveralTokensSplitsItsGap) {
  RequestTimeline one = Completed(0, 0.0, {0.25});
  RequestTimeline multi;  // tokens at 0.1 (1 token) and 0.3 (2 tokens): ITL 0.2/2 twice
  multi.index = 1;
  multi.submit_s = 0.0;
  multi.tokens = {{0.1, 1}, {0.3, 2}};
  multi.done_s = 0.3;
  multi.output_tokens = 3;
  const BenchMetrics m = ComputeMetrics({one, multi}, 0.25, {}, {});
  EXPECT_EQ(m.tpot.n, 1u);  // only `multi`: (0.3 - 0.1) / 2
  EXPECT_NEAR(m.tpot.mean, 0.1, kEps);
  EXPECT_EQ(m.itl.n, 2u);
  EXPECT_NEAR(m.itl.mean, 0.1, kEps);
  EXPECT_NEAR(m.ttft.mean, (0.25 + 0.1) / 2, kEps);
  EXPECT_EQ(m.avg_requests_per_step, 0);  // no step ran: unknown, not a division by zero
}

TEST(BenchMetricsTest, OverallLatencyStartsAtTheFirstArrivalEvenIfItFailed) {
  RequestTimeline failed;
  failed.submit_s = 0.5;
  failed.done_s = 0.7;
  failed.error = "ResourceExhausted: queue full";
  const BenchMetrics m = ComputeMetrics({failed, Completed(1, 1.0, {1.5, 2.0})}, 1.0, {}, {});
  EXPECT_NEAR(m.overall_latency_s, 1.5, kEps);  // 0.5 -> 2.0
  EXPECT_NEAR(m.avg_over_single, 1.0, kEps);
}

TEST(BenchMetricsTest, NothingCompletedGivesZerosNotNans) {
  RequestTimeline failed;
  failed.submit_s = 0.1;
  failed.done_s = 0.2;
  failed.error = "Unavailable: x";
  const BenchMetrics m = ComputeMetrics({failed}, 0.5, {}, {});
  EXPECT_EQ(m.n_failed, 1);
  EXPECT_EQ(m.n_completed, 0);
  EXPECT_EQ(m.overall_latency_s, 0);
  EXPECT_EQ(m.request_throughput, 0);
  EXPECT_EQ(m.avg_over_single, 0);
}

TEST(BenchMetricsTest, ThroughputOverTimeCountsTokensPerBin) {
  // Tokens at 0.05, 0.15, 0.16 (+2 in one event at 0.19): bins of 0.1 s -> 10 and 40 tokens/s.
  RequestTimeline r = Completed(0, 0.0, {0.05, 0.15, 0.16});
  r.tokens.push_back({0.19, 2});
  const auto series = ThroughputOverTime({r}, 0.1);
  ASSERT_EQ(series.size(), 2u);
  EXPECT_NEAR(series[0].first, 0.0, kEps);
  EXPECT_NEAR(series[0].second, 10.0, kEps);
  EXPECT_NEAR(series[1].first, 0.1, kEps);
  EXPECT_NEAR(series[1].second, 40.0, kEps);
}

}  // namespace
}  // namespace flover

namespace flover {
namespace {

TEST(BenchMetricsTest, GoodputCountsRequestsWithinBothSlosOverAllRequests) {
  // TTFT / TPOT by hand: a 0.1 / 0.1; b 0.3 / 0.1; c 0.1 / 0.4; d one token (no TPOT)
  // with TTFT 0.2; e failed.
  RequestTimeline a = Completed(0, 0.0, {0.1, 0.2, 0.3});
  RequestTimeline b = Completed(1, 0.0, {0.3, 0.4, 0.5});
  RequestTimeline c = Completed(2, 0.0, {0.1, 0.5, 0.9});
  RequestTimeline d = Completed(3, 0.0, {0.2});
  RequestTimeline e;
  e.index = 4;
  e.done_s = 0.5;
  e.error = "Unavailable: gone";
  e.finish_reason = "error";
  const std::vector<RequestTimeline> all = {a, b, c, d, e};

  Slo both;
  both.ttft_s = 0.25;
  both.tpot_s = 0.2;
  const BenchMetrics m = ComputeMetrics(all, 0.3, {}, {}, both);
  ASSERT_TRUE(m.goodput.has_value());
  EXPECT_EQ(m.goodput->n_good, 2);  // a and d
  EXPECT_NEAR(m.goodput->share, 2.0 / 5, kEps);
  EXPECT_NEAR(m.overall_latency_s, 0.9, kEps);
  EXPECT_NEAR(m.goodput->rate, 2 / 0.9, kEps);

  Slo ttft_only;
  ttft_only.ttft_s = 0.25;
  EXPECT_EQ(ComputeGoodput(all, ttft_only, 0.9).n_good, 3);  // a, c, d
  Slo tpot_only;
  tpot_only.tpot_s = 0.1 + kEps;
  EXPECT_EQ(ComputeGoodput(all, tpot_only, 0.9).n_good, 3);  // a, b, d
  EXPECT_EQ(ComputeGoodput({}, both, 0).share, 0) << "no requests: 0, not a division by zero";
  EXPECT_FALSE(ComputeMetrics(all, 0.3, {}, {}).goodput.has_value()) << "no SLO, no goodput";
}

}  // namespace
}  // namespace flover
