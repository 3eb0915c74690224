// Storage that starts on a 64-byte cache line: CacheAlignedVector (a std::vector) and
// AllocateCacheAligned (uninitialized bytes).
//
// The CPU kernels load 32 or 64 bytes at a time from weights, activations and the KV
// cache; a load that straddles two cache lines costs two. glibc starts large blocks 16
// bytes past a page, so from a plain std::vector every 64-byte load of fp32 rows and
// every other 32-byte load of fp16 rows would straddle. The weights (WeightTensor), the
// engine's activation buffers and the KV cache use this instead.
//
//   CacheAlignedVector<float> x(n * dim);
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <vector>

namespace flover {

inline constexpr std::size_t kCacheLineBytes = 64;

template <class T>
struct CacheLineAllocator {
  using value_type = T;

  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>& /*other*/) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{kCacheLineBytes}));
  }
  // Unsized: clang (the sanitizer builds) has no sized deallocation by default.
  void deallocate(T* p, std::size_t /*n*/) noexcept { ::operator delete(p, std::align_val_t{kCacheLineBytes}); }

  friend bool operator==(const CacheLineAllocator& /*a*/, const CacheLineAllocator& /*b*/) { return true; }
};

template <class T>
using CacheAlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Uninitialized bytes starting on a cache line (untouched pages cost no memory).
struct CacheLineDelete {
  void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{kCacheLineBytes}); }
};
using CacheAlignedBytes = std::unique_ptr<std::byte[], CacheLineDelete>;
// Throws std::bad_alloc as new does.
inline CacheAlignedBytes AllocateCacheAligned(std::size_t n) {
  return CacheAlignedBytes(static_cast<std::byte*>(::operator new[](n, std::align_val_t{kCacheLineBytes})));
}

// The same elements as a plain vector (found by argument-dependent lookup; either order).
template <class T>
bool operator==(const CacheAlignedVector<T>& a, const std::vector<T>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

}  // namespace flover
