#include "kernels/cpu/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/kernels/random_values.h"
#include "tests/kernels/rope_frequencies.h"

namespace flover::cpu {
namespace {

using testing::Random;

// llama2.c run.c's RoPE for one vector of `dim` values (all heads), verbatim but for
// theta.
void RunCRope(float* vec, int dim, int head_size, int pos, float theta) {
  for (int i = 0; i < dim; i += 2) {
    int head_dim = i % head_size;
    float freq = 1.0f / powf(theta, head_dim / (float)head_size);
    float val = pos * freq;
    float fcr = cosf(val);
    float fci = sinf(val);
    float v0 = vec[i];
    float v1 = vec[i + 1];
    vec[i] = v0 * fcr - v1 * fci;
    vec[i + 1] = v0 * fci + v1 * fcr;
  }
}

TEST(RopeTableTest, HoldsRunCCosSinBitForBit) {
  constexpr int kHeadDim = 64;
  const RopeTable table(testing::PlainRopeFrequencies(kHeadDim, 10000.0f), 1024);
  EXPECT_EQ(table.rotary_dim(), kHeadDim);
  EXPECT_EQ(table.max_positions(), 1024);
  for (int pos : {0, 1, 2, 17, 255, 1023}) {
    for (int i = 0; i < kHeadDim; i += 2) {
      const float freq = 1.0f / powf(10000.0f, i / (float)kHeadDim);
      const float val = pos * freq;
      ASSERT_EQ(table.cos(pos)[i / 2], cosf(val)) << "pos=" << pos << " i=" << i;
      ASSERT_EQ(table.sin(pos)[i / 2], sinf(val)) << "pos=" << pos << " i=" << i;
    }
  }
}

TEST(ApplyRopeTest, MatchesRunCBitForBit) {
  // stories260K (head_dim 8) and stories110M (head_dim 64) shapes; rows carry extra
  // columns after the heads (as the fused qkv rows do) that must stay untouched.
  const int shapes[][2] = {{8, 8}, {12, 64}, {4, 64}};  // {n_heads, head_dim}
  for (const auto& s : shapes) {
    const int n_heads = s[0], head_dim = s[1], dim = n_heads * head_dim, stride = dim + 5;
    const std::vector<int> positions = {0, 1, 5, 100, 511, 3};
    const int n_tokens = static_cast<int>(positions.size());
    const RopeTable table(testing::PlainRopeFrequencies(head_dim, 10000.0f), 512);
    auto x = Random(static_cast<size_t>(n_tokens) * stride, head_dim);
    auto expected = x;
    ApplyRope(x.data(), n_tokens, stride, n_heads, head_dim, positions.data(), table);
    for (int t = 0; t < n_tokens; ++t) {
      RunCRope(&expected[static_cast<size_t>(t) * stride], dim, head_dim, positions[t], 10000.0f);
    }
    ASSERT_EQ(x, expected) << "n_heads=" << n_heads << " head_dim=" << head_dim;
  }
}

TEST(ApplyRopeTest, RotatesPairsByPositionTimesFrequency) {
  // Independent of run.c's float formula: rotation angle pos * theta^(-2i/d) in double.
  constexpr int kHeadDim = 16, kPos = 37;
  constexpr double kTheta = 500000.0;
  const RopeTable table(testing::PlainRopeFrequencies(kHeadDim, static_cast<float>(kTheta)), 64);
  auto x = Random(kHeadDim, 9);
  const auto original = x;
  const int pos = kPos;
  ApplyRope(x.data(), 1, kHeadDim, 1, kHeadDim, &pos, table);
  for (int i = 0; i < kHeadDim / 2; ++i) {
    const double angle = kPos * std::pow(kTheta, -2.0 * i / kHeadDim);
    const double v0 = original[2 * i], v1 = original[2 * i + 1];
    EXPECT_NEAR(x[2 * i], v0 * std::cos(angle) - v1 * std::sin(angle), 1e-4) << i;
    EXPECT_NEAR(x[2 * i + 1], v0 * std::sin(angle) + v1 * std::cos(angle), 1e-4) << i;
  }
}

TEST(ApplyRopeTest, PositionZeroIsTheIdentity) {
  const RopeTable table(testing::PlainRopeFrequencies(8, 10000.0f), 4);
  auto x = Random(2 * 8, 10);
  const auto original = x;
  const int positions[] = {0, 0};
  ApplyRope(x.data(), 2, 8, 1, 8, positions, table);
  EXPECT_EQ(x, original);
}

}  // namespace
}  // namespace flover::cpu
