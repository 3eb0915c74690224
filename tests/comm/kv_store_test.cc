#include "worker/comm/kv_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace flover {
namespace {

using std::chrono::milliseconds;

std::vector<char> Bytes(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

TEST(InMemoryKvStoreTest, GetReturnsWhatWasSet) {
  InMemoryKvStore store;
  ASSERT_TRUE(store.Set("a", Bytes("hello")).ok());
  ASSERT_TRUE(store.Set("b", {}).ok());
  Result<std::vector<char>> a = store.Get("a", milliseconds(0));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, Bytes("hello"));
  Result<std::vector<char>> b = store.Get("b", milliseconds(0));
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->empty());
}

TEST(InMemoryKvStoreTest, MissingKeyTimesOutWithUnavailable) {
  InMemoryKvStore store;
  const auto start = std::chrono::steady_clock::now();
  Result<std::vector<char>> v = store.Get("missing", milliseconds(50));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(v.status().message().find("'missing'"), std::string::npos) << v.status().ToString();
}

TEST(InMemoryKvStoreTest, GetWaitsForALaterSet) {
  InMemoryKvStore store;
  std::thread writer([&] {
    std::this_thread::sleep_for(milliseconds(30));
    ASSERT_TRUE(store.Set("late", Bytes("x")).ok());
  });
  Result<std::vector<char>> v = store.Get("late", milliseconds(10000));
  writer.join();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, Bytes("x"));
}

}  // namespace
}  // namespace flover
