// LayerNorm with bias on the CUDA backend (GPT-J's norm, ModelSpec NormKind::kLayer),
// reading the fp32 residual stream and writing the storage dtype that the following
// GEMM reads:
//   out[r, j] = T(weight[j] * ((x[r, j] - mean) * inv) + bias[j]),
//   mean = sum_j x[r, j] / dim,  inv = 1 / sqrt(sum_j (x[r, j] - mean)^2 / dim + eps)
// with kernels/cpu/layernorm.h's arithmetic (two passes in float, IEEE division and
// square root); only the order of the sums differs (block reductions), so it matches
// the CPU reference to rounding, not bit for bit.
//
// AddLayerNorm fuses the residual add that follows a tensor-parallel all-reduce: x +=
// delta, then out = LayerNorm(x), in one pass over x (as AddRmsNorm, rmsnorm.h).
// Thread-safety: the launchers are reentrant; they only enqueue work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

// x: fp32 [n, dim]; weight, bias: device fp32 [dim]; out: fp32/fp16/bf16 [n, dim].
// out may alias x only when out is fp32 with x's stride. REQUIRES: eps >= 0.
// Returns InvalidArgument, before touching the device, for a wrong dtype, shape or
// stride, a null operand or a negative/NaN eps.
Status LayerNorm(const MatrixView& x, const float* weight, const float* bias, const MatrixView& out, float eps,
                 cudaStream_t stream);

// x: fp32 [n, dim], updated in place to x + delta; delta: fp32 [n, dim] (must not alias
// x or out); the rest as LayerNorm, out = LayerNorm(x + delta).
Status AddLayerNorm(const MatrixView& x, const MatrixView& delta, const float* weight, const float* bias,
                    const MatrixView& out, float eps, cudaStream_t stream);

}  // namespace flover::cuda
