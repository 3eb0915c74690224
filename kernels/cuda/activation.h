// SwiGLU on the CUDA backend: out[r, j] = T(silu(gate[r, j]) * up[r, j]) with
// silu(v) = v * (1 / (1 + exp(-v))), computed in float as kernels/cpu/activation.h does
// (the device expf differs from the host's by at most 2 ulp, so parity is by tolerance).
// The fused gate/up GEMM writes fp32 rows [gate (hidden) | up (hidden)]; the output is
// the storage dtype that the down GEMM reads.
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

}  // namespace flover::cuda
