#include "kernels/cpu/rmsnorm.h"

#include <cmath>
#include <cstddef>

namespace flover::cpu {
namespace {
constexpr int kMinParallelRows = 8;
}  // namespace

void RmsNorm(const float* x, const float* weight, float* out, int n_rows, int dim, float eps) {
  // Rows are independent: spread over the threads from a few rows on (a fused step's
  // rows), each computed exactly as alone.
#pragma omp parallel for schedule(static) if (n_rows >= kMinParallelRows)
  for (int r = 0; r < n_rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    float* outr = out + static_cast<size_t>(r) * dim;
    // run.c's order: a sequential sum (rows are short, so this is not worth vectorising
    // at the price of differing from the reference).
    float ss = 0.0f;
    for (int j = 0; j < dim; ++j) ss += xr[j] * xr[j];
    ss /= static_cast<float>(dim);
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < dim; ++j) outr[j] = weight[j] * (ss * xr[j]);
  }
}

}  // namespace flover::cpu
