#include "kernels/cpu/rmsnorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/kernels/random_values.h"

namespace flover::cpu {
namespace {

using testing::Random;

// llama2.c run.c's rmsnorm, verbatim but for the eps parameter.
void RunCRmsNorm(float* o, const float* x, const float* weight, int size, float eps) {
  float ss = 0.0f;
  for (int j = 0; j < size; j++) ss += x[j] * x[j];
  ss /= size;
  ss += eps;
  ss = 1.0f / sqrtf(ss);
  for (int j = 0; j < size; j++) o[j] = weight[j] * (ss * x[j]);
}

// 5 rows run on the calling thread, 37 spread over the threads: each row as run.c.
TEST(RmsNormTest, MatchesRunCBitForBit) {
  for (int dim : {1, 7, 64, 288, 768}) {
    for (int rows : {5, 37}) {
      const auto x = Random(static_cast<size_t>(rows) * dim, dim, -2.0f, 2.0f);
      const auto weight = Random(dim, dim + 1, 0.5f, 1.5f);
      std::vector<float> out(x.size()), expected(x.size());
      RmsNorm(x.data(), weight.data(), out.data(), rows, dim, 1e-5f);
      for (int r = 0; r < rows; ++r) {
        RunCRmsNorm(&expected[static_cast<size_t>(r) * dim], &x[static_cast<size_t>(r) * dim], weight.data(), dim,
                    1e-5f);
      }
      ASSERT_EQ(out, expected) << "dim=" << dim << " rows=" << rows;
    }
  }
}

TEST(RmsNormTest, NormalisesEachRowByItsRootMeanSquare) {
  constexpr int kRows = 3, kDim = 64;
  constexpr float kEps = 1e-5f;
  auto x = Random(static_cast<size_t>(kRows) * kDim, 1, -2.0f, 2.0f);
  for (int j = 0; j < kDim; ++j) x[2 * kDim + j] *= 1000.0f;  // rows are normalised independently
  const auto weight = Random(kDim, 2, 0.5f, 1.5f);
  std::vector<float> out(x.size());
  RmsNorm(x.data(), weight.data(), out.data(), kRows, kDim, kEps);
  for (int r = 0; r < kRows; ++r) {
    double ss = 0.0;
    for (int j = 0; j < kDim; ++j) ss += static_cast<double>(x[r * kDim + j]) * x[r * kDim + j];
    const double inv_rms = 1.0 / std::sqrt(ss / kDim + kEps);
    for (int j = 0; j < kDim; ++j) {
      const double ref = x[r * kDim + j] * inv_rms * weight[j];
      EXPECT_NEAR(out[r * kDim + j], ref, 1e-5 * (1.0 + std::fabs(ref))) << "r=" << r << " j=" << j;
    }
  }
}

TEST(RmsNormTest, InPlaceEqualsOutOfPlace) {
  constexpr int kRows = 40, kDim = 288;
  auto x = Random(static_cast<size_t>(kRows) * kDim, 3, -2.0f, 2.0f);
  const auto weight = Random(kDim, 4, -2.0f, 2.0f);
  std::vector<float> out(x.size());
  RmsNorm(x.data(), weight.data(), out.data(), kRows, kDim, 1e-5f);
  RmsNorm(x.data(), weight.data(), x.data(), kRows, kDim, 1e-5f);
  EXPECT_EQ(x, out);
}

TEST(RmsNormTest, ZeroRowGivesZerosThroughEps) {
  const std::vector<float> x(16, 0.0f), weight(16, 1.0f);
  std::vector<float> out(16, 7.0f);
  RmsNorm(x.data(), weight.data(), out.data(), 1, 16, 1e-5f);
  EXPECT_EQ(out, std::vector<float>(16, 0.0f));
}

}  // namespace
}  // namespace flover::cpu
