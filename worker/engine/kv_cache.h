// KvCache: the paged key/value memory of one model (or one tensor-parallel shard).
//
// One allocation holds, for every layer, a pool of n_blocks blocks of block_size token
// slots (layout per layer in kernels/cpu/attention.h), its values fp32, fp16 or bf16
// (KvCacheConfig::dtype): a 16-bit cache holds twice the tokens of the same budget. Which blocks a sequence uses is
// decided outside (a BlockAllocator and the sequence's block table); this class only
// owns the memory and hands out per-layer views. Blocks are never moved.
//
// Thread-safety: the memory is written by the forward pass of one step at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/cache_aligned.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/cpu/attention.h"

namespace flover {

struct KvCacheConfig {
  int block_size = 16;                   // tokens per block
  int64_t memory_bytes = int64_t{1} << 30;  // budget for K+V of all layers
  int max_blocks = 0;                    // if > 0, at most this many blocks (saves memory)
  cpu::KvDType dtype = cpu::KvDType::kF32;  // element type of K and V
};

class KvCache {
 public:
  // Sizes the pool from the budget: n_blocks = memory_bytes / bytes_per_block (capped by
  // max_blocks), bytes_per_block counting KvDTypeBytes(dtype) per value. With tensor_parallel = T > 1 the cache holds one rank's kv heads
  // (spec.n_kv_heads / T) and the budget is this rank's, so every rank of a group gets
  // the same number of blocks. InvalidArgument if the budget holds no block, if
  // block_size < 1, or if T does not divide n_kv_heads.
  static Result<std::unique_ptr<KvCache>> Create(const ModelSpec& spec, const KvCacheConfig& config,
                                                 int tensor_parallel = 1);

  int n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  int64_t bytes() const { return static_cast<int64_t>(n_blocks_) * bytes_per_block_; }
  int64_t bytes_per_block() const { return bytes_per_block_; }
  cpu::KvDType dtype() const { return dtype_; }

  // View of layer `layer`'s K and V pools. REQUIRES: 0 <= layer < n_layers.
  cpu::PagedKvLayer layer(int layer) const;

 private:
  KvCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks, cpu::KvDType dtype);

  cpu::KvDType dtype_;
  int n_layers_;
  int n_kv_heads_;                    // of this shard
  int head_dim_;
  int block_size_;
  int n_blocks_;
  int64_t bytes_per_block_;   // K+V of all layers
  int64_t bytes_per_pool_;    // one of K or V for one layer
  CacheAlignedBytes memory_;  // [n_layers][K|V][n_blocks, n_kv_heads, block_size, head_dim] of dtype_
};

}  // namespace flover
