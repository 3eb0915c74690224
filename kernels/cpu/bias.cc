#include "kernels/cpu/bias.h"

#include <cstddef>

namespace flover::cpu {

void AddBias(float* x, int row_stride, const float* bias, int n_rows, int n) {
  const long total = static_cast<long>(n_rows) * n;
#pragma omp parallel for schedule(static) if (total >= (1L << 16))
  for (int r = 0; r < n_rows; ++r) {
    float* row = x + static_cast<size_t>(r) * row_stride;
    for (int j = 0; j < n; ++j) row[j] += bias[j];
  }
}

}  // namespace flover::cpu
