#include "kernels/cpu/layernorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/random_values.h"

namespace flover::cpu {
namespace {

using testing::Random;

// One row, written out plainly: mean, biased variance, normalise, scale, shift.
void ScalarLayerNorm(float* o, const float* x, const float* weight, const float* bias, int size, float eps) {
  float sum = 0.0f;
  for (int j = 0; j < size; j++) sum += x[j];
  const float mean = sum / size;
  float sq = 0.0f;
  for (int j = 0; j < size; j++) sq += (x[j] - mean) * (x[j] - mean);
  const float var = sq / size;
  const float inv_std = 1.0f / sqrtf(var + eps);
  for (int j = 0; j < size; j++) o[j] = (x[j] - mean) * inv_std * weight[j] + bias[j];
}

TEST(LayerNormTest, MatchesScalarReferenceBitForBit) {
  for (int dim : {1, 7, 64, 896, 4096}) {
    constexpr int kRows = 5;
    const auto x = Random(static_cast<size_t>(kRows) * dim, dim, -2.0f, 3.0f);  // a non-zero mean
    const auto weight = Random(dim, dim + 1, 0.5f, 1.5f);
    const auto bias = Random(dim, dim + 2, -0.5f, 0.5f);
    std::vector<float> out(x.size()), expected(x.size());
    LayerNorm(x.data(), weight.data(), bias.data(), out.data(), kRows, dim, 1e-5f);
    for (int r = 0; r < kRows; ++r)
      ScalarLayerNorm(&expected[static_cast<size_t>(r) * dim], &x[static_cast<size_t>(r) * dim], weight.data(),
                      bias.data(), dim, 1e-5f);
    ASSERT_EQ(out, expected) << "dim=" << dim;
  }
}

// The definition in double precision: each row gets mean 0 and variance 1 before the
// affine map, independently of the other rows.
TEST(LayerNormTest, GivesEachRowZeroMeanAndUnitVarianceThenWeightAndBias) {
  constexpr int kRows = 3, kDim = 64;
  constexpr float kEps = 1e-5f;
  auto x = Random(static_cast<size_t>(kRows) * kDim, 1, -2.0f, 2.0f);
  for (int j = 0; j < kDim; ++j) x[2 * kDim + j] = x[2 * kDim + j] * 100.0f + 50.0f;
  const auto weight = Random(kDim, 2, 0.5f, 1.5f);
  const auto bias = Random(kDim, 3, -1.0f, 1.0f);
  std::vector<float> out(x.size());
  LayerNorm(x.data(), weight.data(), bias.data(), out.data(), kRows, kDim, kEps);
  for (int r = 0; r < kRows; ++r) {
    double mean = 0.0, var = 0.0;
    for (int j = 0; j < kDim; ++j) mean += x[r * kDim + j];
    mean /= kDim;
    for (int j = 0; j < kDim; ++j) var += (x[r * kDim + j] - mean) * (x[r * kDim + j] - mean);
    var /= kDim;
    for (int j = 0; j < kDim; ++j) {
      const double ref = (x[r * kDim + j] - mean) / std::sqrt(var + kEps) * weight[j] + bias[j];
      EXPECT_NEAR(out[r * kDim + j], ref, 1e-5 * (1.0 + std::fabs(ref))) << "r=" << r << " j=" << j;
    }
  }
}

TEST(LayerNormTest, InPlaceEqualsOutOfPlace) {
  constexpr int kRows = 4, kDim = 288;
  auto x = Random(static_cast<size_t>(kRows) * kDim, 4, -2.0f, 2.0f);
  const auto weight = Random(kDim, 5, -2.0f, 2.0f);
  const auto bias = Random(kDim, 6, -2.0f, 2.0f);
  std::vector<float> out(x.size());
  LayerNorm(x.data(), weight.data(), bias.data(), out.data(), kRows, kDim, 1e-5f);
  LayerNorm(x.data(), weight.data(), bias.data(), x.data(), kRows, kDim, 1e-5f);
  EXPECT_EQ(x, out);
}

TEST(LayerNormTest, ConstantRowGivesTheBias) {
  const std::vector<float> x(16, 3.5f), weight(16, 2.0f);
  const auto bias = Random(16, 7);
  std::vector<float> out(16);
  LayerNorm(x.data(), weight.data(), bias.data(), out.data(), 1, 16, 1e-5f);
  EXPECT_EQ(out, bias);
}

}  // namespace
}  // namespace flover::cpu
