#include "kernels/cuda/activation.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 16;  // the rest is covered by the grid-stride loop

// Flat over all n * hidden outputs, so a single decode row still spreads over the GPU.
template <typename T>
__global__ void SiluMulKernel(const float* __restrict__ gate_up, int64_t gate_up_stride, T* __restrict__ out,
                              int64_t out_stride, int hidden, int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / hidden;
    const int64_t j = i - r * hidden;
    const float* gate = gate_up + r * gate_up_stride;
    float val = gate[j];
    val *= (1.0f / (1.0f + expf(-val)));  // run.c's silu, as the CPU reference
    out[r * out_stride + j] = FromFloat<T>(val * gate[hidden + j]);
  }
}

// gelu_new with the bias added first; the constants and the order of operations are
// the CPU reference's.
template <typename T, bool kBias>
__global__ void GeluBiasKernel(const float* __restrict__ h, int64_t h_stride, const float* __restrict__ bias,
                               T* __restrict__ out, int64_t out_stride, int hidden, int64_t total) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  constexpr float kCubic = 0.044715f;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / hidden;
    const int64_t j = i - r * hidden;
    float v = h[r * h_stride + j];
    if constexpr (kBias) v += bias[j];
    const float g = 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kCubic * v * v * v)));
    out[r * out_stride + j] = FromFloat<T>(g);
  }
}

}  // namespace

Status SiluMul(const MatrixView& gate_up, const MatrixView& out, cudaStream_t stream) {
  constexpr const char* kOp = "SiluMul";
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, out.dtype, -1, -1, kOp, "out"));
  if (out.cols > INT32_MAX / 2) return InvalidArgument("SiluMul: hidden " + std::to_string(out.cols) + " is too large");
  FLOVER_RETURN_IF_ERROR(CheckMatrix(gate_up, DType::kF32, out.rows, 2 * out.cols, kOp, "gate_up"));
  const int64_t total = static_cast<int64_t>(out.rows) * out.cols;
  if (total == 0) return Status::Ok();
  const int64_t blocks = std::min((total + kThreads - 1) / kThreads, kMaxBlocks);
  FLOVER_DISPATCH_DTYPE(out.dtype, [&]<typename T>() {
    SiluMulKernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(gate_up.as<const float>(), gate_up.stride,
                                                                             out.as<T>(), out.stride, out.cols, total);
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status GeluBias(const MatrixView& h, const float* bias, const MatrixView& out, cudaStream_t stream) {
  constexpr const char* kOp = "GeluBias";
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, out.dtype, -1, -1, kOp, "out"));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(h, DType::kF32, out.rows, out.cols, kOp, "h"));
  const int64_t total = static_cast<int64_t>(out.rows) * out.cols;
  if (total == 0) return Status::Ok();
  const int64_t blocks = std::min((total + kThreads - 1) / kThreads, kMaxBlocks);
  FLOVER_DISPATCH_DTYPE(out.dtype, [&]<typename T>() {
    if (bias != nullptr) {
      GeluBiasKernel<T, true><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          h.as<const float>(), h.stride, bias, out.as<T>(), out.stride, out.cols, total);
    } else {
      GeluBiasKernel<T, false><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          h.as<const float>(), h.stride, nullptr, out.as<T>(), out.stride, out.cols, total);
    }
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda
