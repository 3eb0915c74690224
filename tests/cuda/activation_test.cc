// SiluMul and GeluBias (kernels/cuda/activation.h) against cpu::SiluMul and
// cpu::AddBias + cpu::GeluTanh, for every storage dtype, plus the launchers' operand
// checks (which run without a GPU).
#include "kernels/cuda/activation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/bias.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"
#include "tests/cuda/gpu_test.h"

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

struct Shape {
  int n;
  int hidden;
  int in_pad;   // extra floats per gate_up row
  int out_pad;  // extra elements per out row
};
constexpr Shape kShapes[] = {{1, 288, 0, 0},   {37, 288, 0, 0}, {1, 4096, 0, 0}, {37, 4096, 0, 0},
                             {1, 11008, 0, 0}, {5, 7, 3, 2},    {37, 288, 4, 5}};

std::string Describe(DType dtype, const Shape& s) {
  return std::string(DTypeName(dtype)) + " n=" + std::to_string(s.n) + " hidden=" + std::to_string(s.hidden) +
         " pads=" + std::to_string(s.in_pad) + "/" + std::to_string(s.out_pad);
}

// Host bytes of a [rows, cols] matrix of `dtype` with row stride `stride`, padding kPad.
// Number of padding bytes that are no longer kPad.
// Runs SiluMul on `gate_up` ([n, 2 * hidden], dense) and returns the output as floats,
// checking that the padding of both operands is untouched.
void RunAndCompare(const std::vector<float>& gate_up, const Shape& s, DType dtype, double tolerance) {
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const int64_t in_stride = 2 * s.hidden + s.in_pad, out_stride = s.hidden + s.out_pad;
  std::vector<float> want(static_cast<size_t>(s.n) * s.hidden);
  cpu::SiluMul(gate_up.data(), want.data(), s.n, s.hidden);

  std::vector<unsigned char> in_bytes = ToStrided(gate_up, s.n, 2 * s.hidden, in_stride, DType::kF32);
  std::vector<unsigned char> out_bytes = ToStrided(std::vector<float>(want.size()), s.n, s.hidden, out_stride, dtype);
  Result<DeviceBuffer> d_in = Upload(in_bytes.data(), in_bytes.size(), stream->get());
  FLOVER_ASSERT_OK(d_in);
  Result<DeviceBuffer> d_out = Upload(out_bytes.data(), out_bytes.size(), stream->get());
  FLOVER_ASSERT_OK(d_out);

  FLOVER_ASSERT_OK(SiluMul(Matrix(d_in->data(), DType::kF32, s.n, 2 * s.hidden, in_stride),
                           Matrix(d_out->data(), dtype, s.n, s.hidden, out_stride), stream->get()));
  FLOVER_ASSERT_OK(stream->Synchronize());
  const std::vector<unsigned char> in_before = in_bytes;
  FLOVER_ASSERT_OK(CopyToHost(in_bytes.data(), d_in->data(), in_bytes.size(), stream->get()));
  FLOVER_ASSERT_OK(CopyToHost(out_bytes.data(), d_out->data(), out_bytes.size(), stream->get()));

  const std::vector<float> got = FromStrided(out_bytes, s.n, s.hidden, out_stride, dtype);
  EXPECT_LE(NormalisedError(got, want), tolerance);
  EXPECT_EQ(CountNaN(got), 0);  // NormalisedError does not see NaNs
  EXPECT_EQ(PaddingWritten(out_bytes, s.n, s.hidden, out_stride, dtype), 0);
  EXPECT_TRUE(in_bytes == in_before) << "gate_up was modified";
}

TEST(CudaSiluMul, MatchesCpuReference) {
  FLOVER_REQUIRE_GPU();
  for (DType dtype : kDTypes) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(Describe(dtype, s));
      std::mt19937 rng(3 + s.n * 131 + s.hidden);
      std::uniform_real_distribution<float> u(-6.0f, 6.0f);
      std::vector<float> gate_up(static_cast<size_t>(s.n) * 2 * s.hidden);
      for (float& v : gate_up) v = u(rng);
      RunAndCompare(gate_up, s, dtype, Tolerance(dtype));
    }
  }
}

TEST(CudaSiluMul, SaturatesLikeTheCpuForLargeInputs) {
  // exp(-v) overflows to inf for v <= -89, where silu(v) becomes -0; large positive v
  // gives v. Both sides must agree, and never produce NaN.
  FLOVER_REQUIRE_GPU();
  const Shape s{2, 8, 0, 0};
  const std::vector<float> gate_up = {-100.0f, -90.0f, -89.0f, -20.0f, 0.0f,  20.0f, 89.0f, 100.0f,  // gate row 0
                                      1.0f,    1.0f,   1.0f,   1.0f,   1.0f,  1.0f,  1.0f,  1.0f,    // up row 0
                                      -0.5f,   0.5f,   -1e-3f, 1e-3f,  -3.0f, 3.0f,  -8.0f, 8.0f,    // gate row 1
                                      2.0f,    -2.0f,  3.0f,   -3.0f,  0.5f,  0.25f, 4.0f,  -4.0f};  // up row 1
  for (DType dtype : kDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    RunAndCompare(gate_up, s, dtype, Tolerance(dtype));
  }
}

// Runs GeluBias on `h` ([n, hidden], dense; shape's in_pad pads its rows) with `bias`
// ([hidden], or empty for none) and compares with cpu::AddBias then cpu::GeluTanh,
// checking that the padding of both operands and h itself are untouched.
void RunGeluAndCompare(const std::vector<float>& h, const std::vector<float>& bias, const Shape& s, DType dtype) {
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const int64_t in_stride = s.hidden + s.in_pad, out_stride = s.hidden + s.out_pad;
  std::vector<float> want = h;
  if (!bias.empty()) cpu::AddBias(want.data(), s.hidden, bias.data(), s.n, s.hidden);
  cpu::GeluTanh(want.data(), want.data(), s.n, s.hidden);

  std::vector<unsigned char> in_bytes = ToStrided(h, s.n, s.hidden, in_stride, DType::kF32);
  std::vector<unsigned char> out_bytes = ToStrided(std::vector<float>(want.size()), s.n, s.hidden, out_stride, dtype);
  Result<DeviceBuffer> d_in = Upload(in_bytes.data(), in_bytes.size(), stream->get());
  FLOVER_ASSERT_OK(d_in);
  Result<DeviceBuffer> d_out = Upload(out_bytes.data(), out_bytes.size(), stream->get());
  FLOVER_ASSERT_OK(d_out);
  const std::vector<float> bias_or_zero = bias.empty() ? std::vector<float>{0.0f} : bias;  // no empty upload
  Result<DeviceBuffer> d_bias = Upload(bias_or_zero.data(), bias_or_zero.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d_bias);

  FLOVER_ASSERT_OK(GeluBias(Matrix(d_in->data(), DType::kF32, s.n, s.hidden, in_stride),
                            bias.empty() ? nullptr : d_bias->as<const float>(),
                            Matrix(d_out->data(), dtype, s.n, s.hidden, out_stride), stream->get()));
  FLOVER_ASSERT_OK(stream->Synchronize());
  const std::vector<unsigned char> in_before = in_bytes;
  FLOVER_ASSERT_OK(CopyToHost(in_bytes.data(), d_in->data(), in_bytes.size(), stream->get()));
  FLOVER_ASSERT_OK(CopyToHost(out_bytes.data(), d_out->data(), out_bytes.size(), stream->get()));

  const std::vector<float> got = FromStrided(out_bytes, s.n, s.hidden, out_stride, dtype);
  EXPECT_LE(NormalisedError(got, want), Tolerance(dtype));
  EXPECT_EQ(CountNaN(got), 0);  // NormalisedError does not see NaNs
  EXPECT_EQ(PaddingWritten(out_bytes, s.n, s.hidden, out_stride, dtype), 0);
  EXPECT_TRUE(in_bytes == in_before) << "h was modified";
}

TEST(CudaGeluBias, MatchesCpuReference) {
  FLOVER_REQUIRE_GPU();
  for (DType dtype : kDTypes) {
    for (const Shape& s : kShapes) {
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(Describe(dtype, s) + (with_bias ? " with bias" : " without bias"));
        std::mt19937 rng(5 + s.n * 17 + s.hidden);
        std::uniform_real_distribution<float> u(-6.0f, 6.0f), b(-0.5f, 0.5f);
        std::vector<float> h(static_cast<size_t>(s.n) * s.hidden), bias;
        for (float& v : h) v = u(rng);
        if (with_bias) {
          bias.resize(s.hidden);
          for (float& v : bias) v = b(rng);
        }
        RunGeluAndCompare(h, bias, s, dtype);
      }
    }
  }
}

TEST(CudaGeluBias, SaturatesLikeTheCpuForLargeInputs) {
  // tanh saturates to -1 (gelu -> -0) and 1 (gelu -> v); v^3 stays finite for these.
  FLOVER_REQUIRE_GPU();
  const Shape s{2, 8, 0, 0};
  const std::vector<float> h = {-1e4f, -100.0f, -10.0f, -3.0f, -1e-3f, 0.0f,  1e-3f, 3.0f,
                                10.0f, 100.0f,  1e4f,   -0.5f, 0.5f,   -1.0f, 1.0f,  2.0f};
  const std::vector<float> bias = {0.0f, 0.25f, -0.25f, 0.0f, 1e-3f, -1e-3f, 0.0f, 0.1f};
  for (DType dtype : kDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    RunGeluAndCompare(h, bias, s, dtype);
  }
}

// The checks below run on any machine: every call fails its operand checks and returns
// InvalidArgument before any CUDA call, so the fake host pointers are never used.
TEST(CudaSiluMulChecks, RejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  const MatrixView gate_up = Matrix(fake, DType::kF32, 3, 576);
  const MatrixView out = Matrix(fake + 1, DType::kF16, 3, 288);
  ExpectInvalid(SiluMul(Matrix(fake, DType::kF16, 3, 576), out, nullptr),
                "SiluMul: gate_up is fp16 [3, 576], expected fp32 [3, 576]");
  ExpectInvalid(SiluMul(Matrix(fake, DType::kF32, 3, 288), out, nullptr),
                "SiluMul: gate_up is fp32 [3, 288], expected fp32 [3, 576]");
  ExpectInvalid(SiluMul(Matrix(fake, DType::kF32, 4, 576), out, nullptr), "gate_up is fp32 [4, 576]");
  ExpectInvalid(SiluMul(Matrix(fake, DType::kF32, 3, 576, 575), out, nullptr), "gate_up has stride 575 < 576");
  ExpectInvalid(SiluMul(gate_up, Matrix(fake + 1, DType::kF16, 3, 288, 10), nullptr), "out has stride 10 < 288");
  ExpectInvalid(SiluMul(Matrix(nullptr, DType::kF32, 3, 576), out, nullptr), "gate_up is null");
  ExpectInvalid(SiluMul(gate_up, Matrix(nullptr, DType::kBF16, 3, 288), nullptr), "out is null");
  ExpectInvalid(SiluMul(gate_up, Matrix(fake + 1, DType::kF16, 3, 1 << 30), nullptr), "too large");
}

TEST(CudaSiluMulChecks, EmptyIsANoOp) {
  EXPECT_TRUE(SiluMul(Matrix(nullptr, DType::kF32, 0, 576), Matrix(nullptr, DType::kF16, 0, 288), nullptr).ok());
}

TEST(CudaGeluBiasChecks, RejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  const float* bias = fake + 2;
  const MatrixView h = Matrix(fake, DType::kF32, 3, 288);
  const MatrixView out = Matrix(fake + 1, DType::kF16, 3, 288);
  ExpectInvalid(GeluBias(Matrix(fake, DType::kBF16, 3, 288), bias, out, nullptr),
                "GeluBias: h is bf16 [3, 288], expected fp32 [3, 288]");
  ExpectInvalid(GeluBias(Matrix(fake, DType::kF32, 3, 289), bias, out, nullptr), "h is fp32 [3, 289]");
  ExpectInvalid(GeluBias(Matrix(fake, DType::kF32, 2, 288), nullptr, out, nullptr), "h is fp32 [2, 288]");
  ExpectInvalid(GeluBias(Matrix(fake, DType::kF32, 3, 288, 100), bias, out, nullptr), "h has stride 100 < 288");
  ExpectInvalid(GeluBias(h, bias, Matrix(fake + 1, DType::kF16, 3, 288, 7), nullptr), "out has stride 7 < 288");
  ExpectInvalid(GeluBias(Matrix(nullptr, DType::kF32, 3, 288), bias, out, nullptr), "h is null");
  ExpectInvalid(GeluBias(h, bias, Matrix(nullptr, DType::kF32, 3, 288), nullptr), "out is null");
}

TEST(CudaGeluBiasChecks, EmptyIsANoOp) {
  EXPECT_TRUE(GeluBias(Matrix(nullptr, DType::kF32, 0, 288), nullptr, Matrix(nullptr, DType::kF16, 0, 288), nullptr)
                  .ok());
}

}  // namespace
}  // namespace flover::cuda
