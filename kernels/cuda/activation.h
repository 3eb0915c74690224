// The feed-forward activations on the CUDA backend, computed in float as
// kernels/cpu/activation.h does (the device expf/tanhf differ from the host's by a few
// ulp, so parity is by tolerance); the output is the storage dtype that the down GEMM
// reads.
//   SwiGLU: out[r, j] = T(silu(gate[r, j]) * up[r, j]), silu(v) = v * (1 / (1 + exp(-v))),
//           from the fused gate/up GEMM's fp32 rows [gate (hidden) | up (hidden)];
//   GELU:   out[r, j] = T(gelu(h[r, j] + bias[j])), GPT-J's "gelu_new" tanh approximation
//           gelu(v) = 0.5 * v * (1 + tanh(sqrt(2 / pi) * (v + 0.044715 * v^3))),
//           from the fc_in GEMM's fp32 rows, its bias added first (cpu::AddBias, then
//           cpu::GeluTanh, in one pass).
// Thread-safety: the launcher is reentrant; it only enqueues work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

// gate_up: fp32 [n, 2 * hidden]; out: fp32/fp16/bf16 [n, hidden] (must not overlap
// gate_up). Returns InvalidArgument, before touching the device, for a wrong dtype,
// shape or stride, or a null operand.
Status SiluMul(const MatrixView& gate_up, const MatrixView& out, cudaStream_t stream);

// h: fp32 [n, hidden]; bias: device fp32 [hidden], or null for none; out: fp32/fp16/bf16
// [n, hidden] (must not overlap h). Returns InvalidArgument, before touching the device,
// for a wrong dtype, shape or stride, or a null operand.
Status GeluBias(const MatrixView& h, const float* bias, const MatrixView& out, cudaStream_t stream);

}  // namespace flover::cuda
