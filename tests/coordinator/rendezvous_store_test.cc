#include "coordinator/rendezvous_store.h"

#include <gtest/gtest.h>

namespace flover {
namespace {

using Clock = RendezvousStore::Clock;
using std::chrono::milliseconds;

TEST(RendezvousStoreTest, GetOfAnExistingKeyAnswersAtOnce) {
  RendezvousStore store;
  const Clock::time_point t0 = Clock::now();
  EXPECT_TRUE(store.Set(0, "rank0", "addr").empty());
  std::optional<proto::StoreValue> v = store.Get(0, "w1", "rank0", t0, t0 + milliseconds(100));
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->found());
  EXPECT_EQ(v->key(), "rank0");
  EXPECT_EQ(v->value(), "addr");
  EXPECT_EQ(store.n_waiting(), 0);
}

TEST(RendezvousStoreTest, WaitingGetIsAnsweredByTheSet) {
  RendezvousStore store;
  const Clock::time_point t0 = Clock::now();
  EXPECT_FALSE(store.Get(0, "w1", "k", t0, t0 + milliseconds(100)).has_value());
  EXPECT_FALSE(store.Get(0, "w2", "k", t0, t0 + milliseconds(100)).has_value());
  EXPECT_EQ(store.n_waiting(), 2);
  EXPECT_EQ(store.next_deadline(), t0 + milliseconds(100));
  std::vector<RendezvousStore::Reply> replies = store.Set(0, "k", std::string("v\0x", 3));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].identity, "w1");
  EXPECT_EQ(replies[1].identity, "w2");
  EXPECT_TRUE(replies[0].value.found());
  EXPECT_EQ(replies[0].value.value(), std::string("v\0x", 3));  // bytes, not C strings
  EXPECT_EQ(store.n_waiting(), 0);
  EXPECT_FALSE(store.next_deadline().has_value());
}

TEST(RendezvousStoreTest, WaitingGetExpiresWithFoundFalse) {
  RendezvousStore store;
  const Clock::time_point t0 = Clock::now();
  EXPECT_FALSE(store.Get(0, "w1", "k", t0, t0 + milliseconds(50)).has_value());
  EXPECT_FALSE(store.Get(0, "w2", "k", t0, t0 + milliseconds(500)).has_value());
  EXPECT_TRUE(store.Expire(t0 + milliseconds(49)).empty());
  std::vector<RendezvousStore::Reply> replies = store.Expire(t0 + milliseconds(50));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].identity, "w1");
  EXPECT_FALSE(replies[0].value.found());
  EXPECT_EQ(replies[0].value.key(), "k");
  EXPECT_EQ(store.n_waiting(), 1);
}

TEST(RendezvousStoreTest, ZeroTimeoutAnswersNotFoundAtOnce) {
  RendezvousStore store;
  const Clock::time_point t0 = Clock::now();
  std::optional<proto::StoreValue> v = store.Get(0, "w1", "k", t0, t0);
  ASSERT_TRUE(v.has_value());
  EXPECT_FALSE(v->found());
  EXPECT_EQ(store.n_waiting(), 0);
}

TEST(RendezvousStoreTest, KeysAreNamespacedPerReplica) {
  RendezvousStore store;
  const Clock::time_point t0 = Clock::now();
  EXPECT_TRUE(store.Set(0, "k", "zero").empty());
  EXPECT_FALSE(store.Get(1, "w", "k", t0, t0 + milliseconds(10)).has_value());
  std::vector<RendezvousStore::Reply> replies = store.Set(1, "k", "one");
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].value.value(), "one");
  EXPECT_EQ(store.Get(0, "w", "k", t0, t0)->value(), "zero");
}

TEST(RendezvousStoreTest, SetReplacesAndClearForgetsOneReplica) {
  RendezvousStore store;
  const Clock::time_point t0 = Clock::now();
  EXPECT_TRUE(store.Set(0, "k", "a").empty());
  EXPECT_TRUE(store.Set(0, "k", "b").empty());
  EXPECT_TRUE(store.Set(1, "k", "c").empty());
  EXPECT_EQ(store.Get(0, "w", "k", t0, t0)->value(), "b");
  EXPECT_FALSE(store.Get(0, "w", "other", t0, t0 + milliseconds(10)).has_value());
  store.Clear(0);
  EXPECT_EQ(store.n_keys(0), 0);
  EXPECT_EQ(store.n_keys(1), 1);
  EXPECT_EQ(store.n_waiting(), 0);
  EXPECT_FALSE(store.Get(0, "w", "k", t0, t0)->found());
}

}  // namespace
}  // namespace flover
