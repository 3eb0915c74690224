#include "kernels/cpu/bias.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <vector>

#include "tests/kernels/random_values.h"

namespace flover::cpu {
namespace {

using testing::Random;

TEST(AddBiasTest, AddsTheBiasToTheFirstValuesOfEveryRow) {
  for (int n_rows : {1, 3, 40}) {  // 40 rows of 2048 are enough to run on several threads
    constexpr int kN = 2048, kStride = kN + 5;
    const auto x = Random(static_cast<size_t>(n_rows) * kStride, n_rows, -4.0f, 4.0f);
    const auto bias = Random(kN, 100 + n_rows);
    std::vector<float> got = x;
    AddBias(got.data(), kStride, bias.data(), n_rows, kN);
    for (int r = 0; r < n_rows; ++r)
      for (int j = 0; j < kStride; ++j) {
        const size_t i = static_cast<size_t>(r) * kStride + j;
        ASSERT_EQ(got[i], j < kN ? x[i] + bias[j] : x[i]) << "n_rows=" << n_rows << " r=" << r << " j=" << j;
      }
  }
}

TEST(AddBiasTest, SameBitsOnOneOrManyThreads) {
  constexpr int kRows = 33, kN = 4096;
  const auto x = Random(static_cast<size_t>(kRows) * kN, 8);
  const auto bias = Random(kN, 9);
  std::vector<float> one = x, two = x;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  AddBias(one.data(), kN, bias.data(), kRows, kN);
  omp_set_num_threads(2);
  AddBias(two.data(), kN, bias.data(), kRows, kN);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
  EXPECT_NE(one, x);
}

}  // namespace
}  // namespace flover::cpu
