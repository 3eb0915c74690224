#include "kernels/cpu/activation.h"

#include <cmath>
#include <cstddef>

namespace flover::cpu {

namespace {
// Below this many elements a parallel region costs more than it saves.
constexpr long kMinParallelElements = 1L << 15;
}  // namespace

void SiluMul(const float* gate_up, float* out, int n_rows, int hidden) {
  const long total = static_cast<long>(n_rows) * hidden;
  // Elementwise, so the split between threads cannot change any result.
#pragma omp parallel for schedule(static) if (total >= kMinParallelElements)
  for (int r = 0; r < n_rows; ++r) {
    const float* gate = gate_up + static_cast<size_t>(r) * 2 * hidden;
    const float* up = gate + hidden;
    float* o = out + static_cast<size_t>(r) * hidden;
    for (int j = 0; j < hidden; ++j) {
      float val = gate[j];
      val *= (1.0f / (1.0f + expf(-val)));  // run.c's silu
      o[j] = val * up[j];
    }
  }
}

void GeluTanh(const float* in, float* out, int n_rows, int n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  const long total = static_cast<long>(n_rows) * n;
#pragma omp parallel for schedule(static) if (total >= kMinParallelElements)
  for (int r = 0; r < n_rows; ++r) {
    const float* i_row = in + static_cast<size_t>(r) * n;
    float* o_row = out + static_cast<size_t>(r) * n;
    for (int j = 0; j < n; ++j) {
      const float v = i_row[j];
      o_row[j] = 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
    }
  }
}

}  // namespace flover::cpu
