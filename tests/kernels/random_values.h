// Reproducible uniform random inputs for the kernel tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace flover::testing {

// `size` values uniform in [lo, hi), drawn from `rng`.
inline std::vector<float> Random(size_t size, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size);
  for (float& f : v) f = dist(rng);
  return v;
}

// The same from a generator seeded with `seed`.
inline std::vector<float> Random(size_t size, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  return Random(size, rng, lo, hi);
}

}  // namespace flover::testing
