// RmsNorm / AddRmsNorm (kernels/cuda/rmsnorm.h) against cpu::RmsNorm, for every storage
// dtype, plus the launcher's operand checks (which run without a GPU).
#include "kernels/cuda/rmsnorm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/rmsnorm.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"
#include "tests/cuda/gpu_test.h"
#include "tests/cuda/norm_test_data.h"

namespace flover::cuda {
namespace {

using testing::CountNaN;
using testing::ExpectInvalid;
using testing::FromStrided;
using testing::PaddingWritten;
using testing::ToStrided;
using testing::Upload;
using testing::kPad;

using testing::Decode;
using testing::Encode;
using testing::NormalisedError;
using testing::Tolerance;

using testing::kDTypes;
using testing::CountDifferent;
using testing::Describe;
using testing::RandomRows;
using Shape = testing::NormShape;
constexpr auto& kShapes = testing::kNormShapes;
constexpr float kEps = 1e-5f;

std::vector<float> RandomWeight(int dim, uint32_t seed) { return testing::RandomVector(dim, seed, 0.5f, 1.5f); }

TEST(CudaRmsNorm, MatchesCpuReference) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  for (DType dtype : kDTypes) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(Describe(dtype, s));
      const int64_t stride = s.dim + s.pad;
      const std::vector<float> x = RandomRows(s.n, s.dim, 1 + s.n * 7 + s.dim);
      const std::vector<float> weight = RandomWeight(s.dim, 2 + s.dim);
      std::vector<float> want(x.size());
      cpu::RmsNorm(x.data(), weight.data(), want.data(), s.n, s.dim, kEps);

      const std::vector<unsigned char> x_bytes = ToStrided(x, s.n, s.dim, stride, DType::kF32);
      std::vector<unsigned char> out_bytes = ToStrided(std::vector<float>(x.size()), s.n, s.dim, stride, dtype);
      Result<DeviceBuffer> d_x = Upload(x_bytes.data(), x_bytes.size(), stream->get());
      FLOVER_ASSERT_OK(d_x);
      Result<DeviceBuffer> d_w = Upload(weight.data(), weight.size() * sizeof(float), stream->get());
      FLOVER_ASSERT_OK(d_w);
      Result<DeviceBuffer> d_out = Upload(out_bytes.data(), out_bytes.size(), stream->get());
      FLOVER_ASSERT_OK(d_out);

      FLOVER_ASSERT_OK(RmsNorm(Matrix(d_x->data(), DType::kF32, s.n, s.dim, stride), d_w->as<float>(),
                               Matrix(d_out->data(), dtype, s.n, s.dim, stride), kEps, stream->get()));
      FLOVER_ASSERT_OK(stream->Synchronize());
      FLOVER_ASSERT_OK(CopyToHost(out_bytes.data(), d_out->data(), out_bytes.size(), stream->get()));

      const std::vector<float> got = FromStrided(out_bytes, s.n, s.dim, stride, dtype);
      EXPECT_LE(NormalisedError(got, want), Tolerance(dtype));
      EXPECT_EQ(CountNaN(got), 0);  // NormalisedError does not see NaNs
      if (s.n > 1) {
        for (int j = 0; j < s.dim; ++j) EXPECT_EQ(got[s.dim + j], 0.0f) << "zero row, column " << j;
      }
      EXPECT_EQ(PaddingWritten(out_bytes, s.n, s.dim, stride, dtype), 0);
    }
  }
}

TEST(CudaRmsNorm, InPlaceOnFp32) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const int n = 37, dim = 288;
  const std::vector<float> x = RandomRows(n, dim, 11);
  const std::vector<float> weight = RandomWeight(dim, 12);
  std::vector<float> want(x.size());
  cpu::RmsNorm(x.data(), weight.data(), want.data(), n, dim, kEps);
  Result<DeviceBuffer> d_x = Upload(x.data(), x.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_x);
  Result<DeviceBuffer> d_w = Upload(weight.data(), weight.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_w);
  const MatrixView view = Matrix(d_x->data(), DType::kF32, n, dim);
  FLOVER_ASSERT_OK(RmsNorm(view, d_w->as<float>(), view, kEps, stream->get()));
  std::vector<float> got(x.size());
  FLOVER_ASSERT_OK(CopyToHost(got.data(), d_x->data(), got.size() * sizeof(float), stream->get()));
  EXPECT_LE(NormalisedError(got, want), Tolerance(DType::kF32));
  EXPECT_EQ(CountNaN(got), 0);
}

TEST(CudaAddRmsNorm, UpdatesTheResidualAndMatchesCpuReference) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  for (DType dtype : kDTypes) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(Describe(dtype, s));
      const int64_t stride = s.dim + s.pad;
      const std::vector<float> x = RandomRows(s.n, s.dim, 21 + s.n + s.dim);
      const std::vector<float> delta = RandomRows(s.n, s.dim, 22 + s.n + s.dim);
      const std::vector<float> weight = RandomWeight(s.dim, 23 + s.dim);
      std::vector<float> want_x(x.size()), want(x.size());
      for (size_t i = 0; i < x.size(); ++i) want_x[i] = x[i] + delta[i];
      cpu::RmsNorm(want_x.data(), weight.data(), want.data(), s.n, s.dim, kEps);

      std::vector<unsigned char> x_bytes = ToStrided(x, s.n, s.dim, stride, DType::kF32);
      // delta dense, to mix strides within one call.
      std::vector<unsigned char> out_bytes = ToStrided(std::vector<float>(x.size()), s.n, s.dim, stride, dtype);
      Result<DeviceBuffer> d_x = Upload(x_bytes.data(), x_bytes.size(), stream->get());
      FLOVER_ASSERT_OK(d_x);
      Result<DeviceBuffer> d_delta = Upload(delta.data(), delta.size() * sizeof(float), stream->get());
      FLOVER_ASSERT_OK(d_delta);
      Result<DeviceBuffer> d_w = Upload(weight.data(), weight.size() * sizeof(float), stream->get());
      FLOVER_ASSERT_OK(d_w);
      Result<DeviceBuffer> d_out = Upload(out_bytes.data(), out_bytes.size(), stream->get());
      FLOVER_ASSERT_OK(d_out);

      FLOVER_ASSERT_OK(AddRmsNorm(Matrix(d_x->data(), DType::kF32, s.n, s.dim, stride),
                                  Matrix(d_delta->data(), DType::kF32, s.n, s.dim), d_w->as<float>(),
                                  Matrix(d_out->data(), dtype, s.n, s.dim, stride), kEps, stream->get()));
      FLOVER_ASSERT_OK(stream->Synchronize());
      FLOVER_ASSERT_OK(CopyToHost(x_bytes.data(), d_x->data(), x_bytes.size(), stream->get()));
      FLOVER_ASSERT_OK(CopyToHost(out_bytes.data(), d_out->data(), out_bytes.size(), stream->get()));

      // One IEEE addition per element on both sides: the residual is bit-identical.
      EXPECT_EQ(CountDifferent(FromStrided(x_bytes, s.n, s.dim, stride, DType::kF32), want_x), 0);
      EXPECT_EQ(PaddingWritten(x_bytes, s.n, s.dim, stride, DType::kF32), 0);
      const std::vector<float> got = FromStrided(out_bytes, s.n, s.dim, stride, dtype);
      EXPECT_LE(NormalisedError(got, want), Tolerance(dtype));
      EXPECT_EQ(CountNaN(got), 0);
      EXPECT_EQ(PaddingWritten(out_bytes, s.n, s.dim, stride, dtype), 0);
    }
  }
}

// The checks below run on any machine: every call fails its operand checks and returns
// InvalidArgument before any CUDA call, so the fake host pointers are never used.
TEST(CudaRmsNormChecks, RejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  const float* w = fake;
  const MatrixView x = Matrix(fake, DType::kF32, 3, 288);
  const MatrixView out = Matrix(fake + 1, DType::kF16, 3, 288);
  ExpectInvalid(RmsNorm(Matrix(fake, DType::kF16, 3, 288), w, out, kEps, nullptr),
                "RmsNorm: x is fp16 [3, 288], expected fp32 [3, 288]");
  ExpectInvalid(RmsNorm(x, w, Matrix(fake + 1, DType::kF16, 3, 289), kEps, nullptr),
                "RmsNorm: out is fp16 [3, 289], expected fp16 [3, 288]");
  ExpectInvalid(RmsNorm(x, w, Matrix(fake + 1, DType::kBF16, 4, 288), kEps, nullptr), "out is bf16 [4, 288]");
  ExpectInvalid(RmsNorm(Matrix(fake, DType::kF32, 3, 288, 100), w, out, kEps, nullptr), "x has stride 100 < 288");
  ExpectInvalid(RmsNorm(x, w, Matrix(fake + 1, DType::kF16, 3, 288, 287), kEps, nullptr), "out has stride 287");
  ExpectInvalid(RmsNorm(Matrix(nullptr, DType::kF32, 3, 288), w, out, kEps, nullptr), "x is null");
  ExpectInvalid(RmsNorm(x, w, Matrix(nullptr, DType::kF16, 3, 288), kEps, nullptr), "out is null");
  ExpectInvalid(RmsNorm(x, nullptr, out, kEps, nullptr), "weight is null");
  ExpectInvalid(RmsNorm(x, w, out, -1e-5f, nullptr), "eps");
  ExpectInvalid(RmsNorm(x, w, out, std::numeric_limits<float>::quiet_NaN(), nullptr), "eps");
  ExpectInvalid(RmsNorm(x, w, Matrix(fake, DType::kF16, 3, 288), kEps, nullptr), "aliases");
}

TEST(CudaRmsNormChecks, AddRmsNormRejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  const float* w = fake;
  const MatrixView x = Matrix(fake, DType::kF32, 3, 288);
  const MatrixView delta = Matrix(fake + 1, DType::kF32, 3, 288);
  const MatrixView out = Matrix(fake + 2, DType::kBF16, 3, 288);
  ExpectInvalid(AddRmsNorm(x, Matrix(fake + 1, DType::kF16, 3, 288), w, out, kEps, nullptr),
                "AddRmsNorm: delta is fp16 [3, 288], expected fp32 [3, 288]");
  ExpectInvalid(AddRmsNorm(x, Matrix(fake + 1, DType::kF32, 2, 288), w, out, kEps, nullptr), "delta is fp32 [2, 288]");
  ExpectInvalid(AddRmsNorm(Matrix(fake, DType::kBF16, 3, 288), delta, w, out, kEps, nullptr), "x is bf16");
  ExpectInvalid(AddRmsNorm(x, delta, w, Matrix(fake + 2, DType::kBF16, 3, 200), kEps, nullptr), "out is bf16 [3, 200]");
  ExpectInvalid(AddRmsNorm(x, Matrix(fake + 1, DType::kF32, 3, 288, 10), w, out, kEps, nullptr), "delta has stride 10");
  ExpectInvalid(AddRmsNorm(x, Matrix(nullptr, DType::kF32, 3, 288), w, out, kEps, nullptr), "delta is null");
  ExpectInvalid(AddRmsNorm(x, delta, nullptr, out, kEps, nullptr), "weight is null");
  ExpectInvalid(AddRmsNorm(x, x, w, out, kEps, nullptr), "delta aliases");
  ExpectInvalid(AddRmsNorm(x, delta, w, out, -std::numeric_limits<float>::infinity(), nullptr), "eps");
}

TEST(CudaRmsNormChecks, EmptyIsANoOp) {
  // Nothing to do: OK without a device, even with null pointers.
  EXPECT_TRUE(RmsNorm(Matrix(nullptr, DType::kF32, 0, 288), nullptr, Matrix(nullptr, DType::kF16, 0, 288), kEps,
                      nullptr)
                  .ok());
  EXPECT_TRUE(AddRmsNorm(Matrix(nullptr, DType::kF32, 0, 288), Matrix(nullptr, DType::kF32, 0, 288), nullptr,
                         Matrix(nullptr, DType::kF16, 0, 288), kEps, nullptr)
                  .ok());
}

}  // namespace
}  // namespace flover::cuda
