#include "kernels/cuda/rmsnorm.h"

#include "kernels/cuda/norm_kernel.cuh"

namespace flover::cuda {

Status RmsNorm(const MatrixView& x, const float* weight, const MatrixView& out, float eps, cudaStream_t stream) {
  bool empty = false;
  FLOVER_RETURN_IF_ERROR(norm_kernel::CheckOperands("RmsNorm", x, nullptr, weight, false, nullptr, out, eps, &empty));
  if (empty) return Status::Ok();
  return norm_kernel::Launch<false>(x, nullptr, weight, nullptr, out, eps, stream);
}

Status AddRmsNorm(const MatrixView& x, const MatrixView& delta, const float* weight, const MatrixView& out, float eps,
                  cudaStream_t stream) {
  bool empty = false;
  FLOVER_RETURN_IF_ERROR(
      norm_kernel::CheckOperands("AddRmsNorm", x, &delta, weight, false, nullptr, out, eps, &empty));
  if (empty) return Status::Ok();
  return norm_kernel::Launch<false>(x, &delta, weight, nullptr, out, eps, stream);
}

}  // namespace flover::cuda
