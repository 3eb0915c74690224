// The row-norm kernel shared by RmsNorm and LayerNorm (rmsnorm.h, layernorm.h), with
// the operand checks and the launch of their launchers. Internal to kernels/cuda.
//
// One block per row of the fp32 residual stream x, optionally x += delta first; then
//   RMSNorm:   out = T(weight * (x * inv)),           inv = 1 / sqrt(sum x² / dim + eps)
//   LayerNorm: out = T(weight * ((x - mean) * inv) + bias),
//              mean = sum x / dim, inv = 1 / sqrt(sum (x - mean)² / dim + eps)
// in float with IEEE division and square root (the CPU references' order of operations;
// only the order of the sums differs: block reductions).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"
#include "kernels/cuda/matrix.h"

namespace flover::cuda::norm_kernel {

inline constexpr int kWarp = 32;

// The sum of `v` over the block, returned to every thread. May be called several times
// in one kernel (it ends with a barrier before its shared memory is reused).
// REQUIRES: blockDim.x is a multiple of 32 and at most 1024; every thread calls it.
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float warp_sums[kWarp];
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % kWarp;
  if (lane == 0) warp_sums[threadIdx.x / kWarp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / kWarp) ? warp_sums[lane] : 0.0f;
  __syncthreads();
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// With kAdd, x[r] += delta[r] first (each thread re-reads only the elements it wrote,
// so the later passes need no barrier for them). x and out are not __restrict__: fp32
// out may alias x. bias is read only with kLayer.
template <typename T, bool kAdd, bool kLayer>
__global__ void __launch_bounds__(1024)
    NormKernel(float* x, int64_t x_stride, const float* __restrict__ delta, int64_t delta_stride,
               const float* __restrict__ weight, const float* __restrict__ bias, T* out, int64_t out_stride, int dim,
               float eps) {
  const int64_t row = blockIdx.x;
  float* xr = x + row * x_stride;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    float v = xr[j];
    if constexpr (kAdd) {
      v += delta[row * delta_stride + j];
      xr[j] = v;
    }
    sum += kLayer ? v : v * v;
  }
  sum = BlockSum(sum);
  float mean = 0.0f;
  if constexpr (kLayer) {
    mean = sum / static_cast<float>(dim);
    float ss = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
      const float c = xr[j] - mean;
      ss += c * c;
    }
    sum = BlockSum(ss);
  }
  // The CPU references' order: / dim, + eps, 1 / sqrt (IEEE division and square root,
  // not rsqrtf's approximation).
  sum /= static_cast<float>(dim);
  sum += eps;
  const float inv = 1.0f / sqrtf(sum);
  T* o = out + row * out_stride;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    if constexpr (kLayer) {
      o[j] = FromFloat<T>(weight[j] * ((xr[j] - mean) * inv) + bias[j]);
    } else {
      o[j] = FromFloat<T>(weight[j] * (inv * xr[j]));
    }
  }
}

// About four elements per thread, whole warps, at most 1024 threads.
inline int ThreadsFor(int dim) { return std::clamp((dim / 4 + kWarp - 1) / kWarp * kWarp, kWarp, 1024); }

// InvalidArgument naming `op` unless: x is fp32, delta (when given) fp32 of x's shape
// not aliasing x or out, out of x's shape, eps finite and >= 0, weight (and, with
// `needs_bias`, bias) not null when there are rows, and out aliases x only as fp32 with
// x's stride. *empty is set when there is nothing to do.
inline Status CheckOperands(const char* op, const MatrixView& x, const MatrixView* delta, const float* weight,
                            bool needs_bias, const float* bias, const MatrixView& out, float eps, bool* empty) {
  FLOVER_RETURN_IF_ERROR(CheckMatrix(x, DType::kF32, -1, -1, op, "x"));
  if (delta) FLOVER_RETURN_IF_ERROR(CheckMatrix(*delta, DType::kF32, x.rows, x.cols, op, "delta"));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, out.dtype, x.rows, x.cols, op, "out"));
  if (!(eps >= 0.0f) || std::isinf(eps))
    return InvalidArgument(std::string(op) + ": eps is " + std::to_string(eps) + ", expected a finite value >= 0");
  *empty = x.rows == 0 || x.cols == 0;
  if (*empty) return Status::Ok();
  if (weight == nullptr) return InvalidArgument(std::string(op) + ": weight is null");
  if (needs_bias && bias == nullptr) return InvalidArgument(std::string(op) + ": bias is null");
  if (delta && (delta->data == x.data || delta->data == out.data))
    return InvalidArgument(std::string(op) + ": delta aliases x or out");
  if (out.data == x.data && (out.dtype != DType::kF32 || out.stride != x.stride))
    return InvalidArgument(std::string(op) + ": out aliases x with a different dtype or stride");
  return Status::Ok();
}

// Launches NormKernel over x's rows. REQUIRES: CheckOperands passed with rows to do.
template <bool kLayer>
Status Launch(const MatrixView& x, const MatrixView* delta, const float* weight, const float* bias,
              const MatrixView& out, float eps, cudaStream_t stream) {
  const int threads = ThreadsFor(x.cols);
  FLOVER_DISPATCH_DTYPE(out.dtype, [&]<typename T>() {
    if (delta) {
      NormKernel<T, true, kLayer><<<x.rows, threads, 0, stream>>>(x.as<float>(), x.stride, delta->as<const float>(),
                                                                  delta->stride, weight, bias, out.as<T>(),
                                                                  out.stride, x.cols, eps);
    } else {
      NormKernel<T, false, kLayer><<<x.rows, threads, 0, stream>>>(x.as<float>(), x.stride, nullptr, 0, weight, bias,
                                                                   out.as<T>(), out.stride, x.cols, eps);
    }
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda::norm_kernel
