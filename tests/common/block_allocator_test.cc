#include "common/block_allocator.h"

#include <gtest/gtest.h>

#include <set>

namespace flover {
namespace {

TEST(BlockAllocatorTest, AllocatesAllOrNothing) {
  BlockAllocator a(5);
  auto first = a.Allocate(3);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(a.n_free(), 2);
  EXPECT_FALSE(a.Allocate(3).has_value()) << "does not fit is a value";
  EXPECT_EQ(a.n_free(), 2) << "a failed allocation changes nothing";
  auto second = a.Allocate(2);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(a.n_free(), 0);
  EXPECT_TRUE(a.Allocate(0).has_value());
}

TEST(BlockAllocatorTest, FreedBlocksAreReusedAndNeverDuplicated) {
  BlockAllocator a(8);
  auto x = *a.Allocate(4);
  auto y = *a.Allocate(4);
  a.Free(x);
  EXPECT_EQ(a.n_used(), 4);
  auto z = *a.Allocate(4);
  std::set<int> all(y.begin(), y.end());
  all.insert(z.begin(), z.end());
  EXPECT_EQ(all.size(), 8u);
}

TEST(BlockAllocatorTest, BlocksFor) {
  EXPECT_EQ(BlockAllocator::BlocksFor(0, 16), 0);
  EXPECT_EQ(BlockAllocator::BlocksFor(1, 16), 1);
  EXPECT_EQ(BlockAllocator::BlocksFor(16, 16), 1);
  EXPECT_EQ(BlockAllocator::BlocksFor(17, 16), 2);
}

TEST(BlockAllocatorDeathTest, DoubleFreeAborts) {
  BlockAllocator a(2);
  auto x = *a.Allocate(1);
  a.Free(x);
  EXPECT_DEATH(a.Free(x), "double free of block");
}

}  // namespace
}  // namespace flover
