// Inputs shared by the row-norm parity tests (rmsnorm_test.cc, layernorm_test.cc): the
// shapes, rows of different magnitudes and offsets, and norm weights.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace flover::cuda::testing {

struct NormShape {
  int n;
  int dim;
  int pad;  // extra elements per row (stride = dim + pad)
};
inline constexpr NormShape kNormShapes[] = {{1, 288, 0},  {37, 288, 0}, {1, 4096, 0},
                                            {37, 4096, 0}, {5, 7, 3},    {37, 288, 5}};

inline std::string Describe(DType dtype, const NormShape& s) {
  return std::string(DTypeName(dtype)) + " n=" + std::to_string(s.n) + " dim=" + std::to_string(s.dim) +
         " pad=" + std::to_string(s.pad);
}

// Rows of different magnitudes (1e-2 .. 1e2), one of them (row 1) all zeros, so the
// per-row scale and the eps path are both exercised; `offset` shifts each row by
// offset * its magnitude (a mean that LayerNorm must take out).
inline std::vector<float> RandomRows(int n, int dim, uint32_t seed, float offset = 0.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n) * dim);
  for (int r = 0; r < n; ++r) {
    const float scale = r == 1 ? 0.0f : std::pow(10.0f, static_cast<float>(r % 5) - 2.0f);
    for (int j = 0; j < dim; ++j) v[static_cast<size_t>(r) * dim + j] = (u(rng) + offset) * scale;
  }
  return v;
}

// Uniform in [lo, hi): norm weights around 1, biases around 0.
inline std::vector<float> RandomVector(int dim, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> w(dim);
  for (float& x : w) x = u(rng);
  return w;
}

inline int64_t CountDifferent(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  int64_t different = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) different += got[i] != want[i];
  return different;
}

}  // namespace flover::cuda::testing
