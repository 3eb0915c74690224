// ApplyRope (kernels/cuda/rope.h) against cpu::ApplyRope, full and partial rotary (GPT-J
// rotates the first rotary_dim dims of each head), plain and LLaMA 3 scaled frequencies.
// RoPE works in place on the fp32 QKV rows whatever the storage dtype, so there is no
// dtype to vary; the tables are the CPU's, uploaded, so fp32 results agree to within
// 1e-6 (bit for bit unless the host compiler fused the reference's multiply-adds). Plus
// the launcher's operand checks (which run without a GPU).
#include "kernels/cuda/rope.h"

#include <gtest/gtest.h>

#include "tests/kernels/rope_frequencies.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <random>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/device.h"
#include "tests/cuda/gpu_test.h"

namespace flover::cuda {
namespace {

using testing::ExpectInvalid;
using testing::Upload;

using testing::NormalisedError;

constexpr double kFp32Tolerance = 1e-6;

struct Case {
  int n_tokens;
  int n_heads;  // rotated heads from the row start (q heads + k heads of a QKV row)
  int head_dim;
  int row_stride;
  int max_positions;
  float theta;
  int rotary_dim = 0;   // 0: head_dim
  bool llama3 = false;  // LLaMA 3.1 frequency scaling (factor 8, original context 2048)

  int rotated() const { return rotary_dim > 0 ? rotary_dim : head_dim; }
};
const Case kCases[] = {
    {1, 6, 48, 288, 1024, 10000.0f},                  // stories15m q
    {37, 12, 48, 3 * 288, 1024, 10000.0f},            // stories15m QKV: q and k rotated, v not
    {1, 32, 128, 4096, 4096, 10000.0f},               // llama-7b q
    {37, 40, 128, 4096 + 2 * 1024, 4096, 10000.0f},   // GQA QKV: 32 q + 8 k heads, 8 v heads untouched
    {37, 8, 64, 3 * 512, 8192, 500000.0f},            // llama-3 theta
    {37, 40, 128, 4096 + 2 * 1024, 8192, 500000.0f, 0, true},  // llama-3.1 scaled frequencies
    {5, 1, 2, 3, 16, 10000.0f},                       // smallest head, odd stride
    {37, 32, 256, 3 * 4096, 2048, 10000.0f, 64},      // GPT-J QKV: 64 of 256 dims of each head rotate
    {5, 3, 10, 3 * 10 + 7, 16, 10000.0f, 4},          // partial rotary, head_dim not a power of two
    {3, 2, 6, 12, 16, 10000.0f, 2},                   // one rotated pair per head
};

std::string Describe(const Case& c) {
  return "n_tokens=" + std::to_string(c.n_tokens) + " n_heads=" + std::to_string(c.n_heads) +
         " head_dim=" + std::to_string(c.head_dim) + " rotary_dim=" + std::to_string(c.rotated()) +
         " row_stride=" + std::to_string(c.row_stride) + " theta=" + std::to_string(c.theta) +
         (c.llama3 ? " llama3" : "");
}

// The case's frequencies, as the model computes them (ModelSpec::RopeFrequencies).
std::vector<float> Frequencies(const Case& c) {
  if (!c.llama3) return flover::testing::PlainRopeFrequencies(c.rotated(), c.theta);
  ModelSpec spec;
  spec.n_heads = 1;
  spec.dim = c.head_dim;
  spec.rotary_dim = c.rotary_dim;
  spec.rope_theta = c.theta;
  spec.rope_scaling = RopeScaling{RopeScaling::Kind::kLlama3, 8.0f, 1.0f, 4.0f, 2048};
  return spec.RopeFrequencies();
}

std::vector<float> RandomRows(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(c.n_tokens) * c.row_stride);
  for (float& v : x) v = u(rng);
  return x;
}

// Changed elements that RoPE must not touch: dims [rotary_dim, head_dim) of each head and
// [n_heads * head_dim, row_stride) of each row.
int64_t UnrotatedDifferences(const std::vector<float>& got, const std::vector<float>& original, const Case& c) {
  int64_t different = 0;
  for (int t = 0; t < c.n_tokens; ++t) {
    const size_t row = static_cast<size_t>(t) * c.row_stride;
    for (int j = 0; j < c.row_stride; ++j) {
      const bool rotated = j < c.n_heads * c.head_dim && j % c.head_dim < c.rotated();
      if (!rotated) different += got[row + j] != original[row + j];
    }
  }
  return different;
}

TEST(CudaRope, MatchesCpuReference) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  for (const Case& c : kCases) {
    SCOPED_TRACE(Describe(c));
    const cpu::RopeTable table(Frequencies(c), c.max_positions);
    Result<DeviceRopeTable> d_table = UploadRopeTable(table, stream->get());
    FLOVER_ASSERT_OK(d_table);
    EXPECT_EQ(d_table->rotary_dim, c.rotated());
    EXPECT_EQ(d_table->max_positions, c.max_positions);

    const std::vector<float> x = RandomRows(c, 7 + c.n_tokens + c.row_stride);
    std::mt19937 rng(8 + c.head_dim);
    std::uniform_int_distribution<int> pick(0, c.max_positions - 1);
    std::vector<int> positions(c.n_tokens);
    for (int& p : positions) p = pick(rng);
    positions[0] = c.n_tokens > 1 ? 0 : c.max_positions - 1;
    positions.back() = c.max_positions - 1;
    std::vector<float> want = x;
    cpu::ApplyRope(want.data(), c.n_tokens, c.row_stride, c.n_heads, c.head_dim, positions.data(), table);

    Result<DeviceBuffer> d_x = Upload(x.data(), x.size() * sizeof(float), stream->get());
    FLOVER_ASSERT_OK(d_x);
    Result<DeviceBuffer> d_pos = Upload(positions.data(), positions.size() * sizeof(int), stream->get());
    FLOVER_ASSERT_OK(d_pos);
    FLOVER_ASSERT_OK(ApplyRope(d_x->as<float>(), c.n_tokens, c.row_stride, c.n_heads, c.head_dim,
                               d_pos->as<const int>(), *d_table, stream->get()));
    FLOVER_ASSERT_OK(stream->Synchronize());
    std::vector<float> got(x.size());
    FLOVER_ASSERT_OK(CopyToHost(got.data(), d_x->data(), got.size() * sizeof(float), stream->get()));

    EXPECT_LE(NormalisedError(got, want), kFp32Tolerance);
    int64_t nan = 0;
    for (float v : got) nan += std::isnan(v);
    EXPECT_EQ(nan, 0);  // NormalisedError does not see NaNs
    EXPECT_EQ(UnrotatedDifferences(got, x, c), 0);
  }
}

TEST(CudaRope, OutOfRangePositionsLeaveTheRowUnrotated) {
  // The raw-pointer launcher with max_positions 8 over a table of 16 positions: tokens at
  // 8 and beyond must be left alone even though the table would have them.
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const Case c{7, 4, 16, 4 * 16 + 6, 8, 10000.0f};
  const cpu::RopeTable table(flover::testing::PlainRopeFrequencies(c.head_dim, c.theta), 16);
  Result<DeviceRopeTable> d_table = UploadRopeTable(table, stream->get());
  FLOVER_ASSERT_OK(d_table);
  const std::vector<int> positions = {-1, 8, 15, 2147483647, -2147483647 - 1, 3, 7};
  const std::vector<bool> rotated = {false, false, false, false, false, true, true};
  const std::vector<float> x = RandomRows(c, 99);
  std::vector<float> want = x;
  for (int t = 0; t < c.n_tokens; ++t) {
    if (rotated[t])
      cpu::ApplyRope(want.data() + static_cast<size_t>(t) * c.row_stride, 1, c.row_stride, c.n_heads, c.head_dim,
                     &positions[t], table);
  }
  Result<DeviceBuffer> d_x = Upload(x.data(), x.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_x);
  Result<DeviceBuffer> d_pos = Upload(positions.data(), positions.size() * sizeof(int), stream->get());
  FLOVER_ASSERT_OK(d_pos);
  FLOVER_ASSERT_OK(ApplyRope(d_x->as<float>(), c.n_tokens, c.row_stride, c.n_heads, c.head_dim, c.head_dim,
                             d_pos->as<const int>(), d_table->cos.as<const float>(), d_table->sin.as<const float>(),
                             c.max_positions, stream->get()));
  FLOVER_ASSERT_OK(stream->Synchronize());
  std::vector<float> got(x.size());
  FLOVER_ASSERT_OK(CopyToHost(got.data(), d_x->data(), got.size() * sizeof(float), stream->get()));
  for (int t = 0; t < c.n_tokens; ++t) {
    SCOPED_TRACE("token " + std::to_string(t) + " at position " + std::to_string(positions[t]));
    const std::span<const float> g(got.data() + static_cast<size_t>(t) * c.row_stride, c.row_stride);
    const std::span<const float> w(want.data() + static_cast<size_t>(t) * c.row_stride, c.row_stride);
    if (rotated[t]) {
      EXPECT_LE(NormalisedError(g, w), kFp32Tolerance);
    } else {
      EXPECT_TRUE(std::equal(g.begin(), g.end(), w.begin())) << "row changed";
    }
  }
}

// The checks below run on any machine: every call fails its operand checks and returns
// InvalidArgument before any CUDA call, so the fake host pointers are never used.
TEST(CudaRopeChecks, RejectsBadArgumentsBeforeLaunching) {
  float fake[4] = {};
  float* x = fake;
  const int* pos = reinterpret_cast<const int*>(fake + 1);
  const float* cos_t = fake + 2;
  const float* sin_t = fake + 3;
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, 47, pos, cos_t, sin_t, 1024, nullptr), "rotary_dim is 47");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, 0, pos, cos_t, sin_t, 1024, nullptr), "rotary_dim is 0");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, 50, pos, cos_t, sin_t, 1024, nullptr),
                "rotary_dim is 50, expected a positive even number at most head_dim 48");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 0, 2, pos, cos_t, sin_t, 1024, nullptr), "head_dim is 0");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, -48, 2, pos, cos_t, sin_t, 1024, nullptr), "head_dim is -48");
  ExpectInvalid(ApplyRope(x, 3, 287, 6, 48, 48, pos, cos_t, sin_t, 1024, nullptr),
                "6 heads of 48 do not fit in rows of stride 287");
  ExpectInvalid(ApplyRope(x, -1, 288, 6, 48, 48, pos, cos_t, sin_t, 1024, nullptr), "n_tokens -1");
  ExpectInvalid(ApplyRope(x, 3, 288, -6, 48, 48, pos, cos_t, sin_t, 1024, nullptr), "n_heads -6");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, 48, pos, cos_t, sin_t, 0, nullptr), "max_positions is 0");
  ExpectInvalid(ApplyRope(nullptr, 3, 288, 6, 48, 48, pos, cos_t, sin_t, 1024, nullptr), "null");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, 48, nullptr, cos_t, sin_t, 1024, nullptr), "null");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, 48, pos, nullptr, sin_t, 1024, nullptr), "null");
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, 48, pos, cos_t, nullptr, 1024, nullptr), "null");

  DeviceRopeTable wrong;  // empty buffers: nothing is allocated or freed on a device
  wrong.rotary_dim = 64;
  wrong.max_positions = 1024;
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, pos, wrong, nullptr), "rotary_dim is 64");
  wrong.rotary_dim = 16;  // partial rotary of head_dim 48, but the table's buffers are null
  ExpectInvalid(ApplyRope(x, 3, 288, 6, 48, pos, wrong, nullptr), "null");

  ExpectInvalid(UploadRopeTable(cpu::RopeTable(flover::testing::PlainRopeFrequencies(48, 10000.0f), 0), nullptr).status(),
                "empty");
}

TEST(CudaRopeChecks, EmptyIsANoOp) {
  EXPECT_TRUE(ApplyRope(nullptr, 0, 288, 6, 48, 48, nullptr, nullptr, nullptr, 1024, nullptr).ok());
  EXPECT_TRUE(ApplyRope(nullptr, 3, 288, 0, 48, 16, nullptr, nullptr, nullptr, 1024, nullptr).ok());
}

}  // namespace
}  // namespace flover::cuda
