// DeviceKvCache: the paged key/value memory of one model (or one tensor-parallel shard)
// on a CUDA device, the device twin of KvCache (worker/engine/kv_cache.h).
//
// One cudaMalloc holds, for every layer, a K pool and a V pool of n_blocks blocks of
// block_size token slots, stored in the backend's dtype, in the layout
// kernels/cuda/attention.h reads:
//   layer l: k, v [n_blocks, n_kv_heads (of this shard), block_size, head_dim]
// The pool is sized from a byte budget exactly like KvCache (n_blocks = budget /
// bytes_per_block, capped by max_blocks), with bytes_per_block counted at the dtype's
// size, so an fp16 cache holds twice the blocks of an fp32 one for the same budget.
// The memory is zeroed once at creation: the attention kernels never use an unwritten
// slot, but zeros keep a masked-out read from ever meeting a NaN bit pattern.
// Which blocks a sequence uses is decided outside (block tables); blocks never move.
//
// Thread-safety: written by the forward pass of one step at a time (on one stream).
#pragma once

#include <cstdint>
#include <memory>

#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device.h"

namespace flover {

struct DeviceKvCacheConfig {
  DType dtype = DType::kF16;
  int block_size = 16;                       // tokens per block
  int64_t memory_bytes = int64_t{1} << 30;   // budget for K+V of all layers (this rank)
  int max_blocks = 0;                        // if > 0, at most this many blocks
};

class DeviceKvCache {
 public:
  // Sizes the pool as above and allocates it on the current device. InvalidArgument if
  // the budget holds no block, block_size < 1, max_blocks < 0, or `tensor_parallel`
  // does not divide n_kv_heads; ResourceExhausted when the device cannot hold it.
  static Result<std::unique_ptr<DeviceKvCache>> Create(const ModelSpec& spec, const DeviceKvCacheConfig& config,
                                                       int tensor_parallel = 1);

  // The sizing alone (no device): n_blocks for this spec, config and group size, or the
  // InvalidArgument Create would return.
  static Result<int> BlocksFor(const ModelSpec& spec, const DeviceKvCacheConfig& config, int tensor_parallel = 1);

  int n_layers() const { return n_layers_; }
  int n_blocks() const { return n_blocks_; }
  int block_size() const { return block_size_; }
  int n_kv_heads() const { return n_kv_heads_; }
  DType dtype() const { return dtype_; }
  int64_t bytes() const { return static_cast<int64_t>(n_blocks_) * bytes_per_block_; }
  int64_t bytes_per_block() const { return bytes_per_block_; }

  // Device view of layer `layer`'s K and V pools. REQUIRES: 0 <= layer < n_layers.
  cuda::PagedKvView layer(int layer) const;

 private:
  DeviceKvCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks, DType dtype,
                cuda::DeviceBuffer memory);

  // Constant after construction.
  int n_layers_;
  int n_kv_heads_;  // of this shard
  int head_dim_;
  int block_size_;
  int n_blocks_;
  DType dtype_;
  int64_t bytes_per_block_;        // K+V of all layers
  int64_t elements_per_pool_;      // one of K or V for one layer
  cuda::DeviceBuffer memory_;      // [n_layers][K|V][n_blocks, n_kv_heads, block_size, head_dim]
};

}  // namespace flover
