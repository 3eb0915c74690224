#include "common/log_limiter.h"

#include <gtest/gtest.h>

namespace flover {
namespace {

using std::chrono::milliseconds;

TEST(LogLimiterTest, LetsThroughUpToTheLimitPerPeriodAndCountsTheRest) {
  LogLimiter limiter(2, milliseconds(1000));
  const LogLimiter::Clock::time_point t0{milliseconds(5000)};
  EXPECT_EQ(limiter.Allow(t0), 0u);
  EXPECT_EQ(limiter.Allow(t0 + milliseconds(1)), 0u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limiter.Allow(t0 + milliseconds(2 + i)).has_value());
  EXPECT_EQ(limiter.suppressed(), 5u);
  // The next period: the first line reports what was held back.
  EXPECT_EQ(limiter.Allow(t0 + milliseconds(1000)), 5u);
  EXPECT_EQ(limiter.suppressed(), 0u);
  EXPECT_EQ(limiter.Allow(t0 + milliseconds(1001)), 0u);
  EXPECT_FALSE(limiter.Allow(t0 + milliseconds(1002)).has_value());
}

TEST(LogLimiterTest, AFloodCostsOneLinePerPeriodAfterTheBurst) {
  LogLimiter limiter(10, milliseconds(1000));
  int logged = 0;
  // 100,000 events over 10 s.
  for (int i = 0; i < 100000; ++i)
    if (limiter.Allow(LogLimiter::Clock::time_point{milliseconds(i / 10)})) ++logged;
  EXPECT_EQ(logged, 100);
}

TEST(LogLimiterTest, SuppressedSuffix) {
  EXPECT_EQ(SuppressedSuffix(0), "");
  EXPECT_EQ(SuppressedSuffix(3), " (3 more like this suppressed)");
}

}  // namespace
}  // namespace flover
