#include "worker/engine/kv_cache.h"

#include <gtest/gtest.h>

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

TEST(KvCacheTest, RejectsBudgetsWithoutABlock) {
  auto kv = KvCache::Create(Spec(), KvCacheConfig{16, 1000, 0});
  ASSERT_FALSE(kv.ok());
  EXPECT_NE(kv.status().message().find("holds no block"), std::string::npos);
  EXPECT_FALSE(KvCache::Create(Spec(), KvCacheConfig{0, 1 << 20, 0}).ok());
}

TEST(KvCacheTest, LayerViewsAreDisjointAndShaped) {
  auto kv = KvCache::Create(Spec(), KvCacheConfig{4, 1 << 20, 3});
  ASSERT_TRUE(kv.ok());
  const size_t pool = 3 * 4 * 4 * 8;  // blocks * kv heads * block size * head dim
  float* prev_end = nullptr;
  for (int l = 0; l < 5; ++l) {
    cpu::PagedKvLayer layer = (*kv)->layer(l);
    EXPECT_EQ(layer.n_blocks, 3);
    EXPECT_EQ(layer.block_size, 4);
    EXPECT_EQ(layer.n_kv_heads, 4);
    EXPECT_EQ(layer.head_dim, 8);
    EXPECT_EQ(layer.v, layer.k + pool);
    if (prev_end) {
      EXPECT_EQ(layer.k, prev_end);
    }
    prev_end = layer.v + pool;
    // Every slot is writable (ASan/valgrind would flag an out-of-bounds view).
    layer.k[0] = 1.0f;
    layer.v[pool - 1] = 2.0f;
  }
}

}  // namespace
}  // namespace flover
