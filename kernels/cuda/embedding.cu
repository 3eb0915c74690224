#include "kernels/cuda/embedding.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda {
namespace {

// One block per token; the threads stride over the row.
template <typename T>
__global__ void EmbeddingGatherKernel(const T* __restrict__ table, int64_t table_stride, int vocab,
                                      const int* __restrict__ ids, float* __restrict__ out, int64_t out_stride,
                                      int dim) {
  const int64_t t = blockIdx.x;
  const int id = ids[t];
  float* o = out + t * out_stride;
  if (id < 0 || id >= vocab) {
    for (int j = threadIdx.x; j < dim; j += blockDim.x) o[j] = 0.0f;
    return;
  }
  const T* row = table + static_cast<int64_t>(id) * table_stride;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) o[j] = ToFloat(row[j]);
}

}  // namespace

Status EmbeddingGather(const MatrixView& table, const int* ids, const MatrixView& out, cudaStream_t stream) {
  constexpr const char* kOp = "EmbeddingGather";
  FLOVER_RETURN_IF_ERROR(CheckMatrix(table, table.dtype, -1, -1, kOp, "table"));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, DType::kF32, -1, table.cols, kOp, "out"));
  if (out.rows == 0 || out.cols == 0) return Status::Ok();
  if (ids == nullptr) return InvalidArgument("EmbeddingGather: ids is null");
  const int threads = std::clamp((out.cols + 31) / 32 * 32, 32, 256);
  FLOVER_DISPATCH_DTYPE(table.dtype, [&]<typename T>() {
    EmbeddingGatherKernel<T><<<out.rows, threads, 0, stream>>>(table.as<const T>(), table.stride, table.rows, ids,
                                                               out.as<float>(), out.stride, out.cols);
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda
