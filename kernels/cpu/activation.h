// SwiGLU activation: out[r, j] = silu(gate[r, j]) * up[r, j], silu(v) = v / (1 + exp(-v)),
// computed as run.c does. The fused gate/up GEMM writes rows [gate (hidden) | up (hidden)].
// Thread-safety: reentrant. Large inputs are split over OpenMP threads by rows; the op
// is elementwise, so results do not depend on the thread count.
#pragma once

namespace flover::cpu {

// gate_up: [n_rows, 2 * hidden]; out: [n_rows, hidden].
void SiluMul(const float* gate_up, float* out, int n_rows, int hidden);

}  // namespace flover::cpu
