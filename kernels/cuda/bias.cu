#include "kernels/cuda/bias.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace flover::cuda {
namespace {

constexpr int kBiasThreads = 256;
constexpr int64_t kMaxBiasBlocks = int64_t{1} << 16;  // the rest is covered by the grid-stride loop

// Flat over all n * cols elements, so a single decode row still spreads over the GPU.
__global__ void AddBiasKernel(float* __restrict__ y, int64_t y_stride, const float* __restrict__ bias, int cols,
                              int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t j = i - r * cols;
    y[r * y_stride + j] += bias[j];
  }
}

}  // namespace

Status AddBias(const MatrixView& y, const float* bias, cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(CheckMatrix(y, DType::kF32, -1, -1, "AddBias", "y"));
  const int64_t total = static_cast<int64_t>(y.rows) * y.cols;
  if (total == 0) return Status::Ok();
  if (bias == nullptr) return InvalidArgument("AddBias: bias is null");
  const int64_t blocks = std::min((total + kBiasThreads - 1) / kBiasThreads, kMaxBiasBlocks);
  AddBiasKernel<<<static_cast<unsigned>(blocks), kBiasThreads, 0, stream>>>(y.as<float>(), y.stride, bias, y.cols,
                                                                            total);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda
