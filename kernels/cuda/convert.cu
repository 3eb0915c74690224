#include "kernels/cuda/convert.h"

#include <algorithm>
#include <string>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 16;  // the rest is covered by the grid-stride loop

// worker/model/dummy_model.cc's SplitMix64, on host and device.
__host__ __device__ __forceinline__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__device__ __forceinline__ int64_t FirstIndex() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t GridStride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

template <typename T>
__global__ void ConvertKernel(const float* src, T* dst, int64_t n) {
  for (int64_t i = FirstIndex(); i < n; i += GridStride()) dst[i] = FromFloat<T>(src[i]);
}

template <typename T>
__global__ void FillUniformKernel(T* __restrict__ dst, int64_t n, uint64_t key, float scale) {
  constexpr float kInv2p24 = 1.0f / 16777216.0f;
  for (int64_t i = FirstIndex(); i < n; i += GridStride()) {
    const uint64_t r = SplitMix64(key + static_cast<uint64_t>(i));
    // 24 random bits -> [0, 1) exactly, then to [-1, 1). The _rn intrinsics keep the
    // CPU's two roundings (no FMA contraction), so the fp32 values are bit-identical.
    const float u = __fmul_rn(static_cast<float>(static_cast<uint32_t>(r >> 40)), kInv2p24);
    dst[i] = FromFloat<T>(__fmul_rn(__fsub_rn(__fmul_rn(2.0f, u), 1.0f), scale));
  }
}

unsigned BlocksFor(int64_t n) { return static_cast<unsigned>(std::min((n + kThreads - 1) / kThreads, kMaxBlocks)); }

}  // namespace

Status ConvertFromF32(const float* src, void* dst, DType dtype, int64_t n, cudaStream_t stream) {
  if (n < 0) return InvalidArgument("ConvertFromF32: n is " + std::to_string(n) + ", expected >= 0");
  if (n == 0) return Status::Ok();
  if (src == nullptr || dst == nullptr) return InvalidArgument("ConvertFromF32: src or dst is null");
  if (static_cast<const void*>(src) == dst && dtype != DType::kF32)
    return InvalidArgument(std::string("ConvertFromF32: in place to ") + DTypeName(dtype) +
                           " is not supported (src and dst must not overlap)");
  FLOVER_DISPATCH_DTYPE(dtype, [&]<typename T>() {
    ConvertKernel<T><<<BlocksFor(n), kThreads, 0, stream>>>(src, static_cast<T*>(dst), n);
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status FillUniform(void* dst, DType dtype, int64_t n, uint64_t seed, uint64_t tensor_id, float scale,
                   cudaStream_t stream) {
  if (n < 0) return InvalidArgument("FillUniform: n is " + std::to_string(n) + ", expected >= 0");
  if (n == 0) return Status::Ok();
  if (dst == nullptr) return InvalidArgument("FillUniform: dst is null");
  // dummy_model.cc's key for tensor `tensor_id`.
  const uint64_t key = SplitMix64(SplitMix64(seed) ^ (tensor_id * 0xD1B54A32D192ED03ull));
  FLOVER_DISPATCH_DTYPE(dtype, [&]<typename T>() {
    FillUniformKernel<T><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<T*>(dst), n, key, scale);
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda
