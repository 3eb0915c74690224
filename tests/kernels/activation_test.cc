#include "kernels/cpu/activation.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/kernels/random_values.h"

namespace flover::cpu {
namespace {

using testing::Random;

// run.c's SwiGLU on one row (hb = gate, hb2 = up).
std::vector<float> RunCSiluMul(const float* hb, const float* hb2, int hidden_dim) {
  std::vector<float> out(hidden_dim);
  for (int i = 0; i < hidden_dim; i++) {
    float val = hb[i];
    val *= (1.0f / (1.0f + expf(-val)));
    val *= hb2[i];
    out[i] = val;
  }
  return out;
}

TEST(SiluMulTest, MatchesRunCBitForBit) {
  for (int hidden : {1, 172, 2048}) {
    for (int n_rows : {1, 3, 40}) {  // 40 x 2048 is large enough to run on several threads
      const auto gate_up = Random(static_cast<size_t>(n_rows) * 2 * hidden, hidden + n_rows, -8.0f, 8.0f);
      std::vector<float> out(static_cast<size_t>(n_rows) * hidden);
      SiluMul(gate_up.data(), out.data(), n_rows, hidden);
      for (int r = 0; r < n_rows; ++r) {
        const float* row = &gate_up[static_cast<size_t>(r) * 2 * hidden];
        const auto expected = RunCSiluMul(row, row + hidden, hidden);
        ASSERT_EQ(std::vector<float>(out.begin() + static_cast<long>(r) * hidden,
                                     out.begin() + static_cast<long>(r + 1) * hidden),
                  expected)
            << "hidden=" << hidden << " row=" << r;
      }
    }
  }
}

TEST(SiluMulTest, IsGateTimesSigmoidOfGateTimesUp) {
  constexpr int kHidden = 64;
  const auto gate_up = Random(2 * kHidden, 5, -8.0f, 8.0f);
  std::vector<float> out(kHidden);
  SiluMul(gate_up.data(), out.data(), 1, kHidden);
  for (int j = 0; j < kHidden; ++j) {
    const double g = gate_up[j], u = gate_up[kHidden + j];
    const double ref = g / (1.0 + std::exp(-g)) * u;
    EXPECT_NEAR(out[j], ref, 1e-5 * (1.0 + std::fabs(ref))) << j;
  }
}

TEST(SiluMulTest, SameBitsOnOneOrManyThreads) {
  constexpr int kRows = 33, kHidden = 2048;
  const auto gate_up = Random(static_cast<size_t>(kRows) * 2 * kHidden, 6, -8.0f, 8.0f);
  std::vector<float> one(static_cast<size_t>(kRows) * kHidden), two(one.size());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  SiluMul(gate_up.data(), one.data(), kRows, kHidden);
  omp_set_num_threads(2);
  SiluMul(gate_up.data(), two.data(), kRows, kHidden);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
}

// GPT-J's gelu_new on one value, written out plainly.
float ScalarGeluTanh(float x) { return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }

TEST(GeluTanhTest, MatchesScalarReferenceBitForBit) {
  for (int n : {1, 96, 4096}) {
    for (int n_rows : {1, 3, 17}) {  // 17 x 4096 is large enough to run on several threads
      const auto in = Random(static_cast<size_t>(n_rows) * n, n + n_rows, -10.0f, 10.0f);
      std::vector<float> out(in.size());
      GeluTanh(in.data(), out.data(), n_rows, n);
      for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], ScalarGeluTanh(in[i])) << "n=" << n << " i=" << i;
    }
  }
}

TEST(GeluTanhTest, IsTheTanhApproximationOfGelu) {
  const auto in = Random(256, 10, -6.0f, 6.0f);
  std::vector<float> out(in.size());
  GeluTanh(in.data(), out.data(), 1, static_cast<int>(in.size()));
  for (size_t i = 0; i < in.size(); ++i) {
    const double x = in[i];
    const double ref = 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(out[i], ref, 1e-6 * (1.0 + std::fabs(ref))) << x;
    // Within 1e-3 of the exact GELU, x * Phi(x).
    EXPECT_NEAR(out[i], 0.5 * x * std::erfc(-x / std::sqrt(2.0)), 1e-3) << x;
  }
  const float fixed[] = {0.0f, 1.0f, -1.0f};
  float fixed_out[3];
  GeluTanh(fixed, fixed_out, 1, 3);
  EXPECT_EQ(fixed_out[0], 0.0f);
  EXPECT_NEAR(fixed_out[1], 0.841192, 1e-6);
  EXPECT_NEAR(fixed_out[2], -0.158808, 1e-6);
}

TEST(GeluTanhTest, InPlaceEqualsOutOfPlace) {
  auto x = Random(3 * 64, 11, -5.0f, 5.0f);
  std::vector<float> out(x.size());
  GeluTanh(x.data(), out.data(), 3, 64);
  GeluTanh(x.data(), x.data(), 3, 64);
  EXPECT_EQ(x, out);
}

}  // namespace
}  // namespace flover::cpu
