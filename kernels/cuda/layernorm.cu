#include "kernels/cuda/layernorm.h"

#include "kernels/cuda/norm_kernel.cuh"

namespace flover::cuda {

Status LayerNorm(const MatrixView& x, const float* weight, const float* bias, const MatrixView& out, float eps,
                 cudaStream_t stream) {
  bool empty = false;
  FLOVER_RETURN_IF_ERROR(norm_kernel::CheckOperands("LayerNorm", x, nullptr, weight, true, bias, out, eps, &empty));
  if (empty) return Status::Ok();
  return norm_kernel::Launch<true>(x, nullptr, weight, bias, out, eps, stream);
}

Status AddLayerNorm(const MatrixView& x, const MatrixView& delta, const float* weight, const float* bias,
                    const MatrixView& out, float eps, cudaStream_t stream) {
  bool empty = false;
  FLOVER_RETURN_IF_ERROR(
      norm_kernel::CheckOperands("AddLayerNorm", x, &delta, weight, true, bias, out, eps, &empty));
  if (empty) return Status::Ok();
  return norm_kernel::Launch<true>(x, &delta, weight, bias, out, eps, stream);
}

}  // namespace flover::cuda
