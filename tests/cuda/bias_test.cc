// AddBias (kernels/cuda/bias.h) against cpu::AddBias: one fp32 addition per element on
// both sides, so the results must be bit-identical; over strided rows (the gate columns
// of a gate/up row, a QKV row), plus the launcher's operand checks (which run without a
// GPU).
#include "kernels/cuda/bias.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/bias.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"
#include "tests/cuda/gpu_test.h"

namespace flover::cuda {
namespace {

using testing::ExpectInvalid;
using testing::Upload;

struct Shape {
  int n;
  int cols;    // columns the bias covers
  int stride;  // row stride (the rest of each row must stay as it is)
};
constexpr Shape kShapes[] = {{1, 4096 + 2 * 1024, 4096 + 2 * 1024},  // a QKV row
                             {37, 896 + 2 * 128, 896 + 2 * 128},
                             {37, 11008, 2 * 11008},  // the gate half of gate/up rows
                             {3, 32000, 32000},       // logits
                             {5, 7, 10}};

std::string Describe(const Shape& s) {
  return "n=" + std::to_string(s.n) + " cols=" + std::to_string(s.cols) + " stride=" + std::to_string(s.stride);
}

TEST(CudaAddBias, EqualsTheCpuReferenceBitForBit) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(Describe(s));
    std::mt19937 rng(7 + s.n + s.cols);
    std::uniform_real_distribution<float> u(-4.0f, 4.0f), b(-0.1f, 0.1f);
    std::vector<float> y(static_cast<size_t>(s.n) * s.stride), bias(s.cols);
    for (float& v : y) v = u(rng);
    for (float& v : bias) v = b(rng);
    std::vector<float> want = y;  // the columns past `cols` included: they must not change
    cpu::AddBias(want.data(), s.stride, bias.data(), s.n, s.cols);

    Result<DeviceBuffer> d_y = Upload(y.data(), y.size() * sizeof(float), stream->get());
    FLOVER_ASSERT_OK(d_y);
    Result<DeviceBuffer> d_bias = Upload(bias.data(), bias.size() * sizeof(float), stream->get());
    FLOVER_ASSERT_OK(d_bias);
    FLOVER_ASSERT_OK(
        AddBias(Matrix(d_y->data(), DType::kF32, s.n, s.cols, s.stride), d_bias->as<const float>(), stream->get()));
    FLOVER_ASSERT_OK(stream->Synchronize());
    std::vector<float> got(y.size());
    FLOVER_ASSERT_OK(CopyToHost(got.data(), d_y->data(), got.size() * sizeof(float), stream->get()));
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  }
}

// The checks below run on any machine: every call fails its operand checks and returns
// InvalidArgument before any CUDA call, so the fake host pointers are never used.
TEST(CudaAddBiasChecks, RejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  ExpectInvalid(AddBias(Matrix(fake, DType::kF16, 3, 288), fake + 1, nullptr),
                "AddBias: y is fp16 [3, 288], expected fp32 [3, 288]");
  ExpectInvalid(AddBias(Matrix(fake, DType::kF32, 3, 288, 100), fake + 1, nullptr), "y has stride 100 < 288");
  ExpectInvalid(AddBias(Matrix(nullptr, DType::kF32, 3, 288), fake + 1, nullptr), "y is null");
  ExpectInvalid(AddBias(Matrix(fake, DType::kF32, 3, 288), nullptr, nullptr), "AddBias: bias is null");
}

TEST(CudaAddBiasChecks, EmptyIsANoOp) {
  EXPECT_TRUE(AddBias(Matrix(nullptr, DType::kF32, 0, 288), nullptr, nullptr).ok());
}

}  // namespace
}  // namespace flover::cuda
