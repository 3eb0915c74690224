#include "coordinator/latency_window.h"

#include <gtest/gtest.h>

namespace flover {
namespace {

using namespace std::chrono_literals;
using Clock = LatencyWindow::Clock;

LatencyWindow::Sample At(Clock::time_point done, double total_s, std::optional<double> per_token_s = 0.01) {
  return LatencyWindow::Sample{.done = done,
                               .queue_s = total_s / 10,
                               .first_token_s = total_s / 2,
                               .per_token_s = per_token_s,
                               .total_s = total_s};
}

TEST(LatencyWindowTest, SummarizesTheRequestsOfTheWindow) {
  LatencyWindow window(60s);
  const Clock::time_point t0 = Clock::now();
  for (int i = 1; i <= 5; ++i) window.Add(At(t0 + std::chrono::seconds(i), i));
  const LatencyWindow::Summary s = window.Summarize(t0 + 5s);
  EXPECT_EQ(s.requests, 5u);
  EXPECT_DOUBLE_EQ(s.total.mean, 3);
  EXPECT_DOUBLE_EQ(s.total.p50, 3);
  EXPECT_DOUBLE_EQ(s.total.p90, 4.6);  // rank 3.6 of 1..5
  EXPECT_DOUBLE_EQ(s.first_token.p50, 1.5);
  EXPECT_DOUBLE_EQ(s.queue.p50, 0.3);
  EXPECT_EQ(s.per_token.n, 5u);
}

TEST(LatencyWindowTest, RequestsOlderThanTheWindowDropOut) {
  LatencyWindow window(10s);
  const Clock::time_point t0 = Clock::now();
  window.Add(At(t0, 100));
  window.Add(At(t0 + 5s, 1));
  EXPECT_EQ(window.Summarize(t0 + 9s).requests, 2u);
  const LatencyWindow::Summary s = window.Summarize(t0 + 12s);
  EXPECT_EQ(s.requests, 1u);
  EXPECT_DOUBLE_EQ(s.total.p99, 1);
  EXPECT_EQ(window.Summarize(t0 + 20s).requests, 0u);
  EXPECT_EQ(window.Summarize(t0 + 20s).total.p50, 0);
}

TEST(LatencyWindowTest, OneTokenRequestsHaveNoPerTokenTimeAndTheSamplesAreCapped) {
  LatencyWindow window(60s, /*max_samples=*/3);
  const Clock::time_point t0 = Clock::now();
  window.Add(At(t0, 50));
  window.Add(At(t0, 1, std::nullopt));
  window.Add(At(t0, 2));
  window.Add(At(t0, 3));
  const LatencyWindow::Summary s = window.Summarize(t0);
  EXPECT_EQ(s.requests, 3u) << "the oldest sample went";
  EXPECT_LE(s.total.p99, 3.0) << "the 50 s sample went";
  EXPECT_EQ(s.per_token.n, 2u);
}

}  // namespace
}  // namespace flover
