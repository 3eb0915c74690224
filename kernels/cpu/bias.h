// Bias add over rows: x[r, j] += bias[j] for the first n values of each row (the bias of
// a linear layer, after its GEMM: Qwen2's q/k/v, GPT-J's MLP and LM head).
// Thread-safety: reentrant. Large inputs are split over OpenMP threads by rows; the op is
// elementwise, so results depend neither on the thread count nor on the other rows.
#pragma once

namespace flover::cpu {

// x: [n_rows, row_stride] (the first n values of each row change); bias: [n].
// REQUIRES: n <= row_stride.
void AddBias(float* x, int row_stride, const float* bias, int n_rows, int n);

}  // namespace flover::cpu
