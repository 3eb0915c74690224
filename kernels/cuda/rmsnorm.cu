#include "kernels/cuda/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda {
namespace {

constexpr int kWarp = 32;

// The sum of `v` over the block, returned to every thread.
// REQUIRES: blockDim.x is a multiple of 32 and at most 1024; called once per kernel.
__device__ float BlockSum(float v) {
  __shared__ float warp_sums[kWarp];
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % kWarp;
  if (lane == 0) warp_sums[threadIdx.x / kWarp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / kWarp) ? warp_sums[lane] : 0.0f;
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One block per row. With kAdd, x[r] += delta[r] first (each thread re-reads only the
// elements it wrote, so the second pass needs no barrier for them). x and out are not
// __restrict__: fp32 out may alias x.
template <typename T, bool kAdd>
__global__ void __launch_bounds__(1024)
    RmsNormKernel(float* x, int64_t x_stride, const float* __restrict__ delta, int64_t delta_stride,
                  const float* __restrict__ weight, T* out, int64_t out_stride, int dim, float eps) {
  const int64_t row = blockIdx.x;
  float* xr = x + row * x_stride;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    float v = xr[j];
    if constexpr (kAdd) {
      v += delta[row * delta_stride + j];
      xr[j] = v;
    }
    ss += v * v;
  }
  ss = BlockSum(ss);
  // The CPU reference's order: / dim, + eps, 1 / sqrt (IEEE division and square root,
  // not rsqrtf's approximation).
  ss /= static_cast<float>(dim);
  ss += eps;
  const float inv = 1.0f / sqrtf(ss);
  T* o = out + row * out_stride;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) o[j] = FromFloat<T>(weight[j] * (inv * xr[j]));
}

// About four elements per thread, whole warps, at most 1024 threads.
int ThreadsFor(int dim) { return std::clamp((dim / 4 + kWarp - 1) / kWarp * kWarp, kWarp, 1024); }

Status CheckEps(float eps, const char* op) {
  if (!(eps >= 0.0f) || std::isinf(eps))
    return InvalidArgument(std::string(op) + ": eps is " + std::to_string(eps) + ", expected a finite value >= 0");
  return Status::Ok();
}

template <bool kAdd>
Status Launch(const MatrixView& x, const MatrixView* delta, const float* weight, const MatrixView& out, float eps,
              cudaStream_t stream) {
  const int threads = ThreadsFor(x.cols);
  FLOVER_DISPATCH_DTYPE(out.dtype, [&]<typename T>() {
    RmsNormKernel<T, kAdd><<<x.rows, threads, 0, stream>>>(
        x.as<float>(), x.stride, delta ? delta->as<const float>() : nullptr, delta ? delta->stride : 0, weight,
        out.as<T>(), out.stride, x.cols, eps);
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace

Status RmsNorm(const MatrixView& x, const float* weight, const MatrixView& out, float eps, cudaStream_t stream) {
  constexpr const char* kOp = "RmsNorm";
  FLOVER_RETURN_IF_ERROR(CheckMatrix(x, DType::kF32, -1, -1, kOp, "x"));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, out.dtype, x.rows, x.cols, kOp, "out"));
  FLOVER_RETURN_IF_ERROR(CheckEps(eps, kOp));
  if (x.rows == 0 || x.cols == 0) return Status::Ok();
  if (weight == nullptr) return InvalidArgument("RmsNorm: weight is null");
  if (out.data == x.data && (out.dtype != DType::kF32 || out.stride != x.stride))
    return InvalidArgument("RmsNorm: out aliases x with a different dtype or stride");
  return Launch<false>(x, nullptr, weight, out, eps, stream);
}

Status AddRmsNorm(const MatrixView& x, const MatrixView& delta, const float* weight, const MatrixView& out, float eps,
                  cudaStream_t stream) {
  constexpr const char* kOp = "AddRmsNorm";
  FLOVER_RETURN_IF_ERROR(CheckMatrix(x, DType::kF32, -1, -1, kOp, "x"));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(delta, DType::kF32, x.rows, x.cols, kOp, "delta"));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, out.dtype, x.rows, x.cols, kOp, "out"));
  FLOVER_RETURN_IF_ERROR(CheckEps(eps, kOp));
  if (x.rows == 0 || x.cols == 0) return Status::Ok();
  if (weight == nullptr) return InvalidArgument("AddRmsNorm: weight is null");
  if (delta.data == x.data || delta.data == out.data) return InvalidArgument("AddRmsNorm: delta aliases x or out");
  if (out.data == x.data && (out.dtype != DType::kF32 || out.stride != x.stride))
    return InvalidArgument("AddRmsNorm: out aliases x with a different dtype or stride");
  return Launch<true>(x, &delta, weight, out, eps, stream);
}

}  // namespace flover::cuda
