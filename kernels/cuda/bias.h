// Bias add on the CUDA backend: y[r, j] += bias[j] over the rows of an fp32 matrix (a
// GEMM's fp32 output: the QKV rows of a model with qkv_bias, the residual stream after
// the W2 product of a GELU MLP, the logits of an LM head with a bias). One IEEE addition
// per element, as kernels/cpu/bias.h's AddBias, so results equal the CPU reference's bit
// for bit.
// Biases that feed an activation are added by that activation's kernel instead
// (GeluBias, activation.h).
// Thread-safety: the launcher is reentrant; it only enqueues work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

// y: fp32 [n, cols], updated in place; bias: device fp32 [cols] (must not overlap y).
// Returns InvalidArgument, before touching the device, for a wrong dtype or stride, or
// a null operand.
Status AddBias(const MatrixView& y, const float* bias, cudaStream_t stream);

}  // namespace flover::cuda
