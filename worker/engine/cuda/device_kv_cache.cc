#include "worker/engine/cuda/device_kv_cache.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>
#include <utility>

#include "common/check.h"
#include "kernels/cuda/cuda_status.h"

namespace flover {

Result<int> DeviceKvCache::BlocksFor(const ModelSpec& spec, const DeviceKvCacheConfig& config, int tensor_parallel) {
  if (config.block_size < 1)
    return InvalidArgument("kv block_size must be >= 1, got " + std::to_string(config.block_size));
  if (config.max_blocks < 0)
    return InvalidArgument("kv max_blocks must be >= 0 (0 = no cap), got " + std::to_string(config.max_blocks));
  if (tensor_parallel < 1 || spec.n_kv_heads % tensor_parallel != 0)
    return InvalidArgument("tensor parallel size " + std::to_string(tensor_parallel) + " does not divide n_kv_heads=" +
                           std::to_string(spec.n_kv_heads));
  const int64_t per_block = spec.kv_bytes_per_token(static_cast<int>(DTypeSize(config.dtype))) / tensor_parallel *
                            config.block_size;
  int64_t n_blocks = config.memory_bytes / per_block;
  if (config.max_blocks > 0) n_blocks = std::min<int64_t>(n_blocks, config.max_blocks);
  if (n_blocks < 1)
    return InvalidArgument("KV cache budget of " + std::to_string(config.memory_bytes) +
                           " bytes holds no block; one " + DTypeName(config.dtype) + " block of " +
                           std::to_string(config.block_size) + " tokens needs " + std::to_string(per_block) +
                           " bytes");
  return static_cast<int>(std::min<int64_t>(n_blocks, int64_t{1} << 30));
}

Result<std::unique_ptr<DeviceKvCache>> DeviceKvCache::Create(const ModelSpec& spec, const DeviceKvCacheConfig& config,
                                                             int tensor_parallel) {
  FLOVER_ASSIGN_OR_RETURN(const int n_blocks, BlocksFor(spec, config, tensor_parallel));
  const int n_kv_heads = spec.n_kv_heads / tensor_parallel;
  const size_t bytes = size_t{2} * spec.n_layers * static_cast<size_t>(n_blocks) * n_kv_heads * config.block_size *
                       spec.head_dim() * DTypeSize(config.dtype);
  size_t free_bytes = 0, total_bytes = 0;
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (bytes > free_bytes)
    return ResourceExhausted("a KV cache of " + std::to_string(n_blocks) + " blocks needs " + std::to_string(bytes) +
                             " bytes; the device has " + std::to_string(free_bytes) +
                             " free: lower the KV memory budget (or max_blocks)");
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer memory, cuda::DeviceBuffer::Allocate(bytes));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemset(memory.data(), 0, bytes));
  // The backend's streams are non-blocking (not ordered after the legacy stream's memset).
  FLOVER_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return std::unique_ptr<DeviceKvCache>(new DeviceKvCache(spec.n_layers, n_kv_heads, spec.head_dim(),
                                                          config.block_size, n_blocks, config.dtype,
                                                          std::move(memory)));
}

DeviceKvCache::DeviceKvCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks, DType dtype,
                             cuda::DeviceBuffer memory)
    : n_layers_(n_layers),
      n_kv_heads_(n_kv_heads),
      head_dim_(head_dim),
      block_size_(block_size),
      n_blocks_(n_blocks),
      dtype_(dtype),
      bytes_per_block_(int64_t{2} * n_layers * n_kv_heads * head_dim * static_cast<int64_t>(DTypeSize(dtype)) *
                       block_size),
      elements_per_pool_(static_cast<int64_t>(n_blocks) * n_kv_heads * block_size * head_dim),
      memory_(std::move(memory)) {}

cuda::PagedKvView DeviceKvCache::layer(int layer) const {
  FLOVER_CHECK(layer >= 0 && layer < n_layers_) << "layer " << layer << " of " << n_layers_;
  const size_t pool_bytes = static_cast<size_t>(elements_per_pool_) * DTypeSize(dtype_);
  char* base = memory_.as<char>() + pool_bytes * 2 * static_cast<size_t>(layer);
  return cuda::PagedKvView{base, base + pool_bytes, dtype_, n_blocks_, block_size_, n_kv_heads_, head_dim_};
}

}  // namespace flover
