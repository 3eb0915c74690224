// The plain RoPE schedule for tests that build a cpu::RopeTable by hand:
// freq[i] = 1 / theta^(2i / rotary_dim), in run.c's float arithmetic.
#pragma once

#include <cmath>
#include <vector>

namespace flover::testing {

inline std::vector<float> PlainRopeFrequencies(int rotary_dim, float theta) {
  std::vector<float> freqs(static_cast<size_t>(rotary_dim / 2));
  for (int i = 0; i < rotary_dim; i += 2) freqs[i / 2] = 1.0f / powf(theta, i / static_cast<float>(rotary_dim));
  return freqs;
}

}  // namespace flover::testing
