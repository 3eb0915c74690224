#include "kernels/cpu/layernorm.h"

#include <cmath>
#include <cstddef>

namespace flover::cpu {

void LayerNorm(const float* x, const float* weight, const float* bias, float* out, int n_rows, int dim, float eps) {
  for (int r = 0; r < n_rows; ++r) {
    const float* xr = x + static_cast<size_t>(r) * dim;
    float* outr = out + static_cast<size_t>(r) * dim;
    float mean = 0.0f;
    for (int j = 0; j < dim; ++j) mean += xr[j];
    mean /= static_cast<float>(dim);
    float var = 0.0f;
    for (int j = 0; j < dim; ++j) {
      const float d = xr[j] - mean;
      var += d * d;
    }
    var /= static_cast<float>(dim);
    const float inv_std = 1.0f / sqrtf(var + eps);
    for (int j = 0; j < dim; ++j) outr[j] = (xr[j] - mean) * inv_std * weight[j] + bias[j];
  }
}

}  // namespace flover::cpu
