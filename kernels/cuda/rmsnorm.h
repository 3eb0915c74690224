// RMSNorm on the CUDA backend (LayerNorm: layernorm.h), reading the fp32 residual
// stream and writing the storage dtype that the following GEMM reads:
//   out[r, j] = T(weight[j] * (x[r, j] * 1 / sqrt(sum_j x[r, j]^2 / dim + eps)))
// with kernels/cpu/rmsnorm.h's arithmetic (sum of squares in float, divide by dim, add
// eps, 1/sqrt, weight * (inv * x)); only the order of the sum differs (a block
// reduction), so it matches the CPU reference to rounding, not bit for bit.
//
// AddRmsNorm fuses the residual add that follows a tensor-parallel all-reduce: x += delta,
// then out = RmsNorm(x), in one pass over x.
// Thread-safety: the launchers are reentrant; they only enqueue work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

// x: fp32 [n, dim]; weight: device fp32 [dim]; out: fp32/fp16/bf16 [n, dim].
// out may alias x only when out is fp32 with x's stride. REQUIRES: eps >= 0.
// Returns InvalidArgument, before touching the device, for a wrong dtype, shape or
// stride, a null operand or a negative/NaN eps.
Status RmsNorm(const MatrixView& x, const float* weight, const MatrixView& out, float eps, cudaStream_t stream);

// x: fp32 [n, dim], updated in place to x + delta; delta: fp32 [n, dim] (must not alias
// x or out); weight, out, eps: as RmsNorm, out = RmsNorm(x + delta).
Status AddRmsNorm(const MatrixView& x, const MatrixView& delta, const float* weight, const MatrixView& out,
                  float eps, cudaStream_t stream);

}  // namespace flover::cuda
