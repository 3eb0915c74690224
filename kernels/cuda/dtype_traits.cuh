// Device-side element types for DType, and fp32 conversions. Kernels are templated on
// the storage type T (float, __half, __nv_bfloat16) and always compute in float.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace flover::cuda {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

}  // namespace flover::cuda

// Calls F.template operator()<T>() with T the storage type of `dtype`:
//   FLOVER_DISPATCH_DTYPE(out.dtype, [&]<typename T>() { Kernel<T><<<...>>>(...); });
#define FLOVER_DISPATCH_DTYPE(dtype, ...)                                              \
  do {                                                                                 \
    auto flover_dispatch_fn_ = __VA_ARGS__;                                            \
    switch (dtype) {                                                                   \
      case ::flover::DType::kF32: flover_dispatch_fn_.template operator()<float>(); break;          \
      case ::flover::DType::kF16: flover_dispatch_fn_.template operator()<__half>(); break;         \
      case ::flover::DType::kBF16: flover_dispatch_fn_.template operator()<__nv_bfloat16>(); break; \
    }                                                                                  \
  } while (0)
