// LayerNorm / AddLayerNorm (kernels/cuda/layernorm.h) against cpu::LayerNorm, for every
// storage dtype, over rows with a mean to take out, plus the launchers' operand checks
// (which run without a GPU).
#include "kernels/cuda/layernorm.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cpu/layernorm.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"
#include "tests/cuda/gpu_test.h"
#include "tests/cuda/norm_test_data.h"

namespace flover::cuda {
namespace {

using testing::CountDifferent;
using testing::CountNaN;
using testing::Describe;
using testing::ExpectInvalid;
using testing::FromStrided;
using testing::kDTypes;
using testing::kNormShapes;
using testing::NormalisedError;
using testing::NormShape;
using testing::PaddingWritten;
using testing::RandomRows;
using testing::RandomVector;
using testing::Tolerance;
using testing::ToStrided;
using testing::Upload;

constexpr float kEps = 1e-5f;
constexpr float kOffset = 0.5f;  // each row's mean, in units of its magnitude

// Runs LayerNorm (or, with `delta`, AddLayerNorm) on x ([s.n, s.dim], stored with the
// shape's padding) and checks the output against cpu::LayerNorm of x (+ delta), the
// updated residual bit for bit, and that no padding is written.
void RunAndCompare(const std::vector<float>& x, const std::optional<std::vector<float>>& delta, const NormShape& s,
                   DType dtype, uint32_t seed) {
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const int64_t stride = s.dim + s.pad;
  const std::vector<float> weight = RandomVector(s.dim, seed, 0.5f, 1.5f);
  const std::vector<float> bias = RandomVector(s.dim, seed + 1, -0.5f, 0.5f);
  std::vector<float> want_x = x;
  if (delta)
    for (size_t i = 0; i < x.size(); ++i) want_x[i] = x[i] + (*delta)[i];
  std::vector<float> want(x.size());
  cpu::LayerNorm(want_x.data(), weight.data(), bias.data(), want.data(), s.n, s.dim, kEps);

  std::vector<unsigned char> x_bytes = ToStrided(x, s.n, s.dim, stride, DType::kF32);
  std::vector<unsigned char> out_bytes = ToStrided(std::vector<float>(x.size()), s.n, s.dim, stride, dtype);
  Result<DeviceBuffer> d_x = Upload(x_bytes.data(), x_bytes.size(), stream->get());
  FLOVER_ASSERT_OK(d_x);
  Result<DeviceBuffer> d_w = Upload(weight.data(), weight.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_w);
  Result<DeviceBuffer> d_b = Upload(bias.data(), bias.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_b);
  Result<DeviceBuffer> d_out = Upload(out_bytes.data(), out_bytes.size(), stream->get());
  FLOVER_ASSERT_OK(d_out);
  const MatrixView x_view = Matrix(d_x->data(), DType::kF32, s.n, s.dim, stride);
  const MatrixView out_view = Matrix(d_out->data(), dtype, s.n, s.dim, stride);
  if (delta) {
    // delta dense, to mix strides within one call.
    Result<DeviceBuffer> d_delta = Upload(delta->data(), delta->size() * sizeof(float), stream->get());
    FLOVER_ASSERT_OK(d_delta);
    FLOVER_ASSERT_OK(AddLayerNorm(x_view, Matrix(d_delta->data(), DType::kF32, s.n, s.dim), d_w->as<float>(),
                                  d_b->as<float>(), out_view, kEps, stream->get()));
    FLOVER_ASSERT_OK(stream->Synchronize());
  } else {
    FLOVER_ASSERT_OK(LayerNorm(x_view, d_w->as<float>(), d_b->as<float>(), out_view, kEps, stream->get()));
  }
  FLOVER_ASSERT_OK(stream->Synchronize());
  FLOVER_ASSERT_OK(CopyToHost(x_bytes.data(), d_x->data(), x_bytes.size(), stream->get()));
  FLOVER_ASSERT_OK(CopyToHost(out_bytes.data(), d_out->data(), out_bytes.size(), stream->get()));

  // One IEEE addition per element on both sides (none without delta): bit-identical.
  EXPECT_EQ(CountDifferent(FromStrided(x_bytes, s.n, s.dim, stride, DType::kF32), want_x), 0);
  EXPECT_EQ(PaddingWritten(x_bytes, s.n, s.dim, stride, DType::kF32), 0);
  const std::vector<float> got = FromStrided(out_bytes, s.n, s.dim, stride, dtype);
  EXPECT_LE(NormalisedError(got, want), Tolerance(dtype));
  EXPECT_EQ(CountNaN(got), 0);  // NormalisedError does not see NaNs
  EXPECT_EQ(PaddingWritten(out_bytes, s.n, s.dim, stride, dtype), 0);
  if (!delta && s.n > 1) {
    // Row 1 is all zeros: no variance, so the output is the bias (rounded to dtype).
    const std::vector<float> rounded_bias = testing::RoundTrip(bias, dtype);
    for (int j = 0; j < s.dim; ++j) EXPECT_EQ(got[s.dim + j], rounded_bias[j]) << "zero row, column " << j;
  }
}

TEST(CudaLayerNorm, MatchesCpuReference) {
  FLOVER_REQUIRE_GPU();
  for (DType dtype : kDTypes) {
    for (const NormShape& s : kNormShapes) {
      SCOPED_TRACE(Describe(dtype, s));
      RunAndCompare(RandomRows(s.n, s.dim, 31 + s.n * 7 + s.dim, kOffset), std::nullopt, s, dtype, 32 + s.dim);
    }
  }
}

TEST(CudaLayerNorm, InPlaceOnFp32) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const int n = 37, dim = 288;
  const std::vector<float> x = RandomRows(n, dim, 41, kOffset);
  const std::vector<float> weight = RandomVector(dim, 42, 0.5f, 1.5f), bias = RandomVector(dim, 43, -0.5f, 0.5f);
  std::vector<float> want(x.size());
  cpu::LayerNorm(x.data(), weight.data(), bias.data(), want.data(), n, dim, kEps);
  Result<DeviceBuffer> d_x = Upload(x.data(), x.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_x);
  Result<DeviceBuffer> d_w = Upload(weight.data(), weight.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_w);
  Result<DeviceBuffer> d_b = Upload(bias.data(), bias.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_b);
  const MatrixView view = Matrix(d_x->data(), DType::kF32, n, dim);
  FLOVER_ASSERT_OK(LayerNorm(view, d_w->as<float>(), d_b->as<float>(), view, kEps, stream->get()));
  std::vector<float> got(x.size());
  FLOVER_ASSERT_OK(CopyToHost(got.data(), d_x->data(), got.size() * sizeof(float), stream->get()));
  EXPECT_LE(NormalisedError(got, want), Tolerance(DType::kF32));
  EXPECT_EQ(CountNaN(got), 0);
}

TEST(CudaAddLayerNorm, UpdatesTheResidualAndMatchesCpuReference) {
  FLOVER_REQUIRE_GPU();
  for (DType dtype : kDTypes) {
    for (const NormShape& s : kNormShapes) {
      SCOPED_TRACE(Describe(dtype, s));
      RunAndCompare(RandomRows(s.n, s.dim, 51 + s.n + s.dim, kOffset), RandomRows(s.n, s.dim, 52 + s.n + s.dim), s,
                    dtype, 53 + s.dim);
    }
  }
}

// The checks below run on any machine: every call fails its operand checks and returns
// InvalidArgument before any CUDA call, so the fake host pointers are never used.
TEST(CudaLayerNormChecks, RejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  const float* w = fake;
  const float* b = fake + 3;
  const MatrixView x = Matrix(fake, DType::kF32, 3, 288);
  const MatrixView out = Matrix(fake + 1, DType::kF16, 3, 288);
  ExpectInvalid(LayerNorm(Matrix(fake, DType::kF16, 3, 288), w, b, out, kEps, nullptr),
                "LayerNorm: x is fp16 [3, 288], expected fp32 [3, 288]");
  ExpectInvalid(LayerNorm(x, w, b, Matrix(fake + 1, DType::kF16, 3, 289), kEps, nullptr),
                "LayerNorm: out is fp16 [3, 289], expected fp16 [3, 288]");
  ExpectInvalid(LayerNorm(Matrix(fake, DType::kF32, 3, 288, 100), w, b, out, kEps, nullptr), "x has stride 100 < 288");
  ExpectInvalid(LayerNorm(Matrix(nullptr, DType::kF32, 3, 288), w, b, out, kEps, nullptr), "x is null");
  ExpectInvalid(LayerNorm(x, nullptr, b, out, kEps, nullptr), "LayerNorm: weight is null");
  ExpectInvalid(LayerNorm(x, w, nullptr, out, kEps, nullptr), "LayerNorm: bias is null");
  ExpectInvalid(LayerNorm(x, w, b, out, -1e-5f, nullptr), "eps");
  ExpectInvalid(LayerNorm(x, w, b, out, std::numeric_limits<float>::quiet_NaN(), nullptr), "eps");
  ExpectInvalid(LayerNorm(x, w, b, Matrix(fake, DType::kF16, 3, 288), kEps, nullptr), "aliases");
}

TEST(CudaLayerNormChecks, AddLayerNormRejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  const float* w = fake;
  const float* b = fake + 3;
  const MatrixView x = Matrix(fake, DType::kF32, 3, 288);
  const MatrixView delta = Matrix(fake + 1, DType::kF32, 3, 288);
  const MatrixView out = Matrix(fake + 2, DType::kBF16, 3, 288);
  ExpectInvalid(AddLayerNorm(x, Matrix(fake + 1, DType::kF16, 3, 288), w, b, out, kEps, nullptr),
                "AddLayerNorm: delta is fp16 [3, 288], expected fp32 [3, 288]");
  ExpectInvalid(AddLayerNorm(x, Matrix(fake + 1, DType::kF32, 2, 288), w, b, out, kEps, nullptr),
                "delta is fp32 [2, 288]");
  ExpectInvalid(AddLayerNorm(x, Matrix(nullptr, DType::kF32, 3, 288), w, b, out, kEps, nullptr), "delta is null");
  ExpectInvalid(AddLayerNorm(x, delta, w, nullptr, out, kEps, nullptr), "AddLayerNorm: bias is null");
  ExpectInvalid(AddLayerNorm(x, x, w, b, out, kEps, nullptr), "delta aliases");
  ExpectInvalid(AddLayerNorm(x, delta, w, b, out, -std::numeric_limits<float>::infinity(), nullptr), "eps");
}

TEST(CudaLayerNormChecks, EmptyIsANoOp) {
  EXPECT_TRUE(LayerNorm(Matrix(nullptr, DType::kF32, 0, 288), nullptr, nullptr, Matrix(nullptr, DType::kF16, 0, 288),
                        kEps, nullptr)
                  .ok());
  EXPECT_TRUE(AddLayerNorm(Matrix(nullptr, DType::kF32, 0, 288), Matrix(nullptr, DType::kF32, 0, 288), nullptr,
                           nullptr, Matrix(nullptr, DType::kF16, 0, 288), kEps, nullptr)
                  .ok());
}

}  // namespace
}  // namespace flover::cuda
