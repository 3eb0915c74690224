#include "kernels/cpu/rope.h"

#include <cmath>
#include <cstddef>

namespace flover::cpu {

RopeTable::RopeTable(int head_dim, int max_positions, float theta)
    : head_dim_(head_dim),
      max_positions_(max_positions),
      cos_(static_cast<size_t>(max_positions) * (head_dim / 2)),
      sin_(static_cast<size_t>(max_positions) * (head_dim / 2)) {
  const int half = head_dim / 2;
  for (int pos = 0; pos < max_positions; ++pos) {
    for (int i = 0; i < head_dim; i += 2) {
      // run.c: head_dim_index = i % head_size; freq = 1 / theta^(index / head_size).
      const float freq = 1.0f / powf(theta, static_cast<float>(i) / static_cast<float>(head_dim));
      const float val = static_cast<float>(pos) * freq;
      cos_[static_cast<size_t>(pos) * half + i / 2] = cosf(val);
      sin_[static_cast<size_t>(pos) * half + i / 2] = sinf(val);
    }
  }
}

void ApplyRope(float* x, int n_tokens, int row_stride, int n_heads, int head_dim, const int* positions,
               const RopeTable& table) {
  const int half = head_dim / 2;
  for (int t = 0; t < n_tokens; ++t) {
    const float* fcr = table.cos(positions[t]);
    const float* fci = table.sin(positions[t]);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + static_cast<size_t>(t) * row_stride + static_cast<size_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float v0 = v[2 * i], v1 = v[2 * i + 1];
        v[2 * i] = v0 * fcr[i] - v1 * fci[i];
        v[2 * i + 1] = v0 * fci[i] + v1 * fcr[i];
      }
    }
  }
}

}  // namespace flover::cpu
