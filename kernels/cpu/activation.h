// Feed-forward activations (ModelSpec::ffn):
//   SwiGLU: out[r, j] = silu(gate[r, j]) * up[r, j], silu(v) = v / (1 + exp(-v)), computed
//           as run.c does. The fused gate/up GEMM writes rows [gate (hidden) | up (hidden)].
//   GELU, tanh approximation (GPT-J's "gelu_new"):
//           gelu(v) = 0.5 v (1 + tanh(sqrt(2 / pi) (v + 0.044715 v^3))).
// Thread-safety: reentrant. Large inputs are split over OpenMP threads by rows; the op
// is elementwise, so results do not depend on the thread count.
#pragma once

namespace flover::cpu {

// gate_up: [n_rows, 2 * hidden]; out: [n_rows, hidden].
void SiluMul(const float* gate_up, float* out, int n_rows, int hidden);

// in, out: [n_rows, n] (may alias).
void GeluTanh(const float* in, float* out, int n_rows, int n);

}  // namespace flover::cpu
