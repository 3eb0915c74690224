#include "kernels/cpu/rope.h"

#include <cmath>
#include <cstddef>
#include <utility>

namespace flover::cpu {

RopeTable::RopeTable(std::vector<float> freqs, int max_positions)
    : freqs_(std::move(freqs)),
      max_positions_(max_positions),
      cos_(static_cast<size_t>(max_positions) * freqs_.size()),
      sin_(static_cast<size_t>(max_positions) * freqs_.size()) {
  const size_t half = freqs_.size();
  for (int pos = 0; pos < max_positions; ++pos) {
    for (size_t i = 0; i < half; ++i) {
      const float val = static_cast<float>(pos) * freqs_[i];
      cos_[static_cast<size_t>(pos) * half + i] = cosf(val);
      sin_[static_cast<size_t>(pos) * half + i] = sinf(val);
    }
  }
}

void ApplyRope(float* x, int n_tokens, int row_stride, int n_heads, int head_dim, const int* positions,
               const RopeTable& table) {
  const int half = table.rotary_dim() / 2;
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
