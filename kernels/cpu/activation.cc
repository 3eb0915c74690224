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

}  // namespace flover::cpu
