#include "worker/engine/kv_cache.h"

#include <gtest/gtest.h>

#include <cstddef>

namespace flover {
namespace {

ModelSpec Spec() {
  ModelSpec s;
  s.dim = 64, s.hidden_dim = 172, s.n_layers = 5, s.n_heads = 8, s.n_kv_heads = 4, s.vocab_size = 512,
  s.max_seq_len = 512;
  return s;
}

TEST(KvCacheTest, SizesThePoolFromTheBudget) {
  const ModelSpec s = Spec();
  // K+V, 5 layers, kv_dim 32, fp32: 1280 bytes a token; 16-token blocks: 20480 bytes.
  ASSERT_EQ(s.kv_bytes_per_token(), 1280);
  auto kv = KvCache::Create(s, KvCacheConfig{16, 20480 * 10 + 100, 0});
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  EXPECT_EQ((*kv)->n_blocks(), 10);
  EXPECT_EQ((*kv)->bytes(), 204800);
  auto capped = KvCache::Create(s, KvCacheConfig{16, int64_t{1} << 30, 7});
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ((*capped)->n_blocks(), 7);
}

// Every block of every layer starts on a cache line (the attention kernels load whole
// rows of a head), for each dtype.
TEST(KvCacheTest, BlocksStartOnACacheLine) {
  for (cpu::KvDType dtype : {cpu::KvDType::kF32, cpu::KvDType::kF16, cpu::KvDType::kBF16}) {
    KvCacheConfig config{16, int64_t{8} << 20, 0};
    config.dtype = dtype;
    auto kv = KvCache::Create(Spec(), config);
    ASSERT_TRUE(kv.ok()) << kv.status().ToString();
    for (int l = 0; l < Spec().n_layers; ++l) {
      const cpu::PagedKvLayer layer = (*kv)->layer(l);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(layer.k) % 64, 0u) << "layer " << l;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(layer.v) % 64, 0u) << "layer " << l;
    }
  }
}

TEST(KvCacheTest, RejectsBudgetsWithoutABlock) {
  auto kv = KvCache::Create(Spec(), KvCacheConfig{16, 1000, 0});
  ASSERT_FALSE(kv.ok());
  EXPECT_NE(kv.status().message().find("holds no block"), std::string::npos);
  EXPECT_FALSE(KvCache::Create(Spec(), KvCacheConfig{0, 1 << 20, 0}).ok());
}

TEST(KvCacheTest, LayerViewsAreDisjointAndShaped) {
  for (cpu::KvDType dtype : {cpu::KvDType::kF32, cpu::KvDType::kF16, cpu::KvDType::kBF16}) {
    SCOPED_TRACE(cpu::KvDTypeName(dtype));
    auto kv = KvCache::Create(Spec(), KvCacheConfig{4, 1 << 20, 3, dtype});
    ASSERT_TRUE(kv.ok());
    EXPECT_EQ((*kv)->dtype(), dtype);
    const size_t pool = 3 * 4 * 4 * 8 * cpu::KvDTypeBytes(dtype);  // blocks * kv heads * block size * head dim
    std::byte* prev_end = nullptr;
    for (int l = 0; l < 5; ++l) {
      cpu::PagedKvLayer layer = (*kv)->layer(l);
      EXPECT_EQ(layer.n_blocks, 3);
      EXPECT_EQ(layer.block_size, 4);
      EXPECT_EQ(layer.n_kv_heads, 4);
      EXPECT_EQ(layer.head_dim, 8);
      EXPECT_EQ(layer.dtype, dtype);
      std::byte* k = static_cast<std::byte*>(layer.k);
      std::byte* v = static_cast<std::byte*>(layer.v);
      EXPECT_EQ(v, k + pool);
      if (prev_end) {
        EXPECT_EQ(k, prev_end);
      }
      prev_end = v + pool;
      // Every byte is writable (ASan/valgrind would flag an out-of-bounds view).
      k[0] = std::byte{1};
      v[pool - 1] = std::byte{2};
    }
  }
}

// The budget buys blocks of 2 bytes per value at fp16 and bf16: twice fp32's blocks.
TEST(KvCacheTest, SixteenBitCachesHoldTwiceTheBlocks) {
  const ModelSpec s = Spec();
  for (cpu::KvDType dtype : {cpu::KvDType::kF16, cpu::KvDType::kBF16}) {
    SCOPED_TRACE(cpu::KvDTypeName(dtype));
    for (int64_t budget : {int64_t{20480} * 10 + 100, int64_t{256} << 20}) {
      auto fp32 = KvCache::Create(s, KvCacheConfig{16, budget, 0});
      auto half = KvCache::Create(s, KvCacheConfig{16, budget, 0, dtype});
      ASSERT_TRUE(fp32.ok() && half.ok());
      EXPECT_EQ((*half)->bytes_per_block() * 2, (*fp32)->bytes_per_block());
      EXPECT_EQ((*half)->n_blocks(), 2 * (*fp32)->n_blocks()) << budget;
      EXPECT_LE((*half)->bytes(), budget);
    }
    // 10240 bytes a block: a budget of 1.5 fp32 blocks holds 3.
    auto kv = KvCache::Create(s, KvCacheConfig{16, 20480 + 10240, 0, dtype});
    ASSERT_TRUE(kv.ok()) << kv.status().ToString();
    EXPECT_EQ((*kv)->n_blocks(), 3);
    auto fp32 = KvCache::Create(s, KvCacheConfig{16, 20480 + 10240, 0});
    ASSERT_TRUE(fp32.ok());
    EXPECT_EQ((*fp32)->n_blocks(), 1);
  }
  auto bad = KvCache::Create(s, KvCacheConfig{16, 1 << 20, 0, static_cast<cpu::KvDType>(7)});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("is not fp32, fp16 or bf16"), std::string::npos) << bad.status().ToString();
}

}  // namespace
}  // namespace flover
