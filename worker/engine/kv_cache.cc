#include "worker/engine/kv_cache.h"

#include <algorithm>
#include <new>
#include <string>
#include <string_view>

#include "common/block_allocator.h"

namespace flover {

Result<std::unique_ptr<KvCache>> KvCache::Create(const ModelSpec& spec, const KvCacheConfig& config,
                                                 int tensor_parallel) {
  if (std::string_view(cpu::KvDTypeName(config.dtype)) == "?")
    return InvalidArgument("kv dtype " + std::to_string(static_cast<int>(config.dtype)) + " is not fp32, fp16 or bf16");
  if (config.block_size < 1) return InvalidArgument("kv block_size must be >= 1, got " + std::to_string(config.block_size));
  if (tensor_parallel < 1 || spec.n_kv_heads % tensor_parallel != 0)
    return InvalidArgument("tensor parallel size " + std::to_string(tensor_parallel) + " does not divide n_kv_heads=" +
                           std::to_string(spec.n_kv_heads));
  const int n_kv_heads = spec.n_kv_heads / tensor_parallel;
  const int64_t per_block =
      spec.kv_bytes_per_token(cpu::KvDTypeBytes(config.dtype)) / tensor_parallel * config.block_size;
  int64_t n_blocks = config.memory_bytes / per_block;
  if (config.max_blocks > 0) n_blocks = std::min<int64_t>(n_blocks, config.max_blocks);
  if (n_blocks < 1)
    return InvalidArgument("KV cache budget of " + std::to_string(config.memory_bytes) +
                           " bytes holds no block; one block of " + std::to_string(config.block_size) +
                           " tokens needs " + std::to_string(per_block) + " bytes");
  if (n_blocks > (int64_t{1} << 30)) n_blocks = int64_t{1} << 30;
  try {
    return std::unique_ptr<KvCache>(
        new KvCache(spec.n_layers, n_kv_heads, spec.head_dim(), config.block_size, static_cast<int>(n_blocks),
                    config.dtype));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("cannot allocate a KV cache of " + std::to_string(n_blocks * per_block) + " bytes");
  }
}

KvCache::KvCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks, cpu::KvDType dtype)
    : dtype_(dtype),
      n_layers_(n_layers),
      n_kv_heads_(n_kv_heads),
      head_dim_(head_dim),
      block_size_(block_size),
      n_blocks_(n_blocks),
      bytes_per_block_(int64_t{2} * n_layers * n_kv_heads * head_dim * cpu::KvDTypeBytes(dtype) * block_size),
      bytes_per_pool_(static_cast<int64_t>(n_blocks) * n_kv_heads * block_size * head_dim * cpu::KvDTypeBytes(dtype)),
      // Not zeroed: a slot is always written before it is read, and untouched pages cost nothing.
      memory_(AllocateCacheAligned(static_cast<size_t>(bytes_per_pool_) * 2 * n_layers)) {}

cpu::PagedKvLayer KvCache::layer(int layer) const {
  FLOVER_CHECK(layer >= 0 && layer < n_layers_) << "layer " << layer;
  std::byte* base = memory_.get() + static_cast<size_t>(bytes_per_pool_) * 2 * layer;
  return cpu::PagedKvLayer{base, base + bytes_per_pool_, n_blocks_, block_size_, n_kv_heads_, head_dim_, dtype_};
}

}  // namespace flover
