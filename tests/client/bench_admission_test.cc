// Tests the client-side admission of `flover bench` (client/bench/bench_admission.h):
// arrivals on time, at most --max-concurrency in flight, waiting ones in arrival order.
#include "client/bench/bench_admission.h"

#include <gtest/gtest.h>

namespace flover {
namespace {

using Indices = std::vector<size_t>;

TEST(ArrivalQueueTest, WithoutALimitRequestsGoAtTheirArrivalTimes) {
  ArrivalQueue q({0.0, 0.0, 0.5, 1.0}, /*max_concurrency=*/0);
  EXPECT_EQ(q.TakeDue(0.0, 0), (Indices{0, 1}));
  EXPECT_EQ(q.NextArrivalIn(0.0), 0.5);
  EXPECT_EQ(q.TakeDue(0.4, 2), Indices{});
  EXPECT_EQ(q.TakeDue(0.7, 100), (Indices{2}));
  EXPECT_EQ(q.TakeDue(1.0, 100), (Indices{3}));
  EXPECT_TRUE(q.all_sent());
  EXPECT_FALSE(q.NextArrivalIn(1.0).has_value());
}

TEST(ArrivalQueueTest, TheLimitHoldsArrivalsBackInOrder) {
  ArrivalQueue q({0.0, 0.0, 0.0, 0.0, 0.0, 2.0}, /*max_concurrency=*/2);
  EXPECT_EQ(q.TakeDue(0.0, 0), (Indices{0, 1}));
  EXPECT_EQ(q.waiting(0.0), 3u);
  EXPECT_FALSE(q.NextArrivalIn(0.0).has_value() && *q.NextArrivalIn(0.0) == 0) << "the next is in the future";
  EXPECT_EQ(q.NextArrivalIn(0.0), 2.0);
  EXPECT_EQ(q.TakeDue(0.1, 2), Indices{}) << "two in flight: none more";
  EXPECT_EQ(q.TakeDue(0.2, 1), (Indices{2})) << "one ended: the first waiting one";
  EXPECT_EQ(q.TakeDue(0.3, 0), (Indices{3, 4}));
  EXPECT_EQ(q.waiting(0.3), 0u);
  EXPECT_EQ(q.TakeDue(1.0, 0), Indices{}) << "not arrived yet";
  EXPECT_EQ(q.TakeDue(2.5, 1), (Indices{5}));
  EXPECT_TRUE(q.all_sent());
}

TEST(ArrivalQueueTest, TakeRestGivesUpOnEverythingUnsent) {
  ArrivalQueue q({0.0, 1.0, 2.0}, 1);
  EXPECT_EQ(q.TakeDue(5.0, 0), (Indices{0}));
  EXPECT_EQ(q.TakeRest(), (Indices{1, 2}));
  EXPECT_EQ(q.sent(), 3u);
  EXPECT_TRUE(q.TakeDue(9.0, 0).empty());
}

}  // namespace
}  // namespace flover
