// Gemm (cuBLAS) against cpu::Matmul: every storage dtype, fp32 and storage-dtype
// outputs, overwrite and accumulate, dense and padded (strided) rows. Gemv (the small-n
// path Matmul takes for n <= 8 at fp16/bf16) likewise, called directly, and its batch
// invariance. The operand checks
// run without a GPU; the parity tests skip without one.
#include "kernels/cuda/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemv.h"
#include "tests/cuda/gpu_test.h"

namespace flover::cuda {
namespace {

using testing::Decode;
using testing::Encode;
using testing::NormalisedError;
using testing::RoundTrip;

// ---- operand checks: no GPU needed (an empty Gemm checks before it needs a handle) ----

// Host addresses stand in for device memory: nothing is dereferenced.
struct FakeOperands {
  std::vector<float> x = std::vector<float>(7 * 288);
  std::vector<float> w = std::vector<float>(768 * 288);
  std::vector<float> y = std::vector<float>(7 * 768);
};

Status Check(const MatrixView& x, const MatrixView& w, const MatrixView& y) {
  Gemm empty;
  return empty.Matmul(x, w, y);
}

void ExpectInvalid(const Status& s, const std::string& fragment) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(fragment), std::string::npos) << "'" << s.message() << "' lacks '" << fragment << "'";
}

TEST(GemmCheckTest, AcceptsEveryStorageAndOutputDtype) {
  FakeOperands op;
  for (DType storage : {DType::kF32, DType::kF16, DType::kBF16}) {
    const MatrixView x = Matrix(op.x.data(), storage, 7, 288), w = Matrix(op.w.data(), storage, 768, 288);
    EXPECT_TRUE(CheckMatmul(x, w, Matrix(op.y.data(), DType::kF32, 7, 768)).ok()) << DTypeName(storage);
    EXPECT_TRUE(CheckMatmul(x, w, Matrix(op.y.data(), storage, 7, 768)).ok()) << DTypeName(storage);
  }
  // Padded rows.
  EXPECT_TRUE(CheckMatmul(Matrix(op.x.data(), DType::kF32, 6, 288, 300), Matrix(op.w.data(), DType::kF32, 700, 288, 290),
                          Matrix(op.y.data(), DType::kF32, 6, 700, 768))
                  .ok());
}

TEST(GemmCheckTest, RejectsMismatchedDtypes) {
  FakeOperands op;
  const MatrixView w16 = Matrix(op.w.data(), DType::kF16, 768, 288);
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kBF16, 7, 288), w16, Matrix(op.y.data(), DType::kF32, 7, 768)),
                "Matmul: x is bf16 [7, 288], expected fp16 [7, 288]");
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kF16, 7, 288), w16, Matrix(op.y.data(), DType::kBF16, 7, 768)),
                "Matmul: y is bf16 [7, 768], expected fp32 [7, 768]");
  const MatrixView w32 = Matrix(op.w.data(), DType::kF32, 768, 288);
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kF32, 7, 288), w32, Matrix(op.y.data(), DType::kF16, 7, 768)),
                "y is fp16 [7, 768], expected fp32");
}

TEST(GemmCheckTest, RejectsMismatchedShapes) {
  FakeOperands op;
  const MatrixView w = Matrix(op.w.data(), DType::kF32, 768, 288);
  const MatrixView y = Matrix(op.y.data(), DType::kF32, 7, 768);
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kF32, 7, 256), w, y), "x is fp32 [7, 256], expected fp32 [7, 288]");
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kF32, 6, 288), w, y), "y is fp32 [7, 768], expected fp32 [6, 768]");
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kF32, 7, 288), w, Matrix(op.y.data(), DType::kF32, 7, 767)),
                "y is fp32 [7, 767], expected fp32 [7, 768]");
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kF32, 0, 288), Matrix(op.w.data(), DType::kF32, 0, 288),
                      Matrix(op.y.data(), DType::kF32, 0, 0)),
                "must not be empty");
}

TEST(GemmCheckTest, RejectsBadStridesNullsAlignmentAndOverlap) {
  FakeOperands op;
  const MatrixView x = Matrix(op.x.data(), DType::kF32, 7, 288);
  const MatrixView w = Matrix(op.w.data(), DType::kF32, 768, 288);
  const MatrixView y = Matrix(op.y.data(), DType::kF32, 7, 768);
  ExpectInvalid(Check(Matrix(op.x.data(), DType::kF32, 7, 288, 287), w, y), "x has stride 287 < 288 columns");
  ExpectInvalid(Check(x, Matrix(op.w.data(), DType::kF32, 768, 288, 100), y), "w has stride 100 < 288 columns");
  ExpectInvalid(Check(x, w, Matrix(op.y.data(), DType::kF32, 7, 768, 700)), "y has stride 700");
  ExpectInvalid(Check(x, w, Matrix(op.y.data(), DType::kF32, 7, 768, int64_t{1} << 31)), "int leading dimension");
  ExpectInvalid(Check(Matrix(nullptr, DType::kF32, 7, 288), w, y), "x is null");
  ExpectInvalid(Check(x, Matrix(nullptr, DType::kF32, 768, 288), y), "w is null");
  ExpectInvalid(Check(x, w, Matrix(nullptr, DType::kF32, 7, 768)), "y is null");
  auto* odd = reinterpret_cast<unsigned char*>(op.x.data()) + 1;
  ExpectInvalid(Check(Matrix(odd, DType::kF16, 7, 288), Matrix(op.w.data(), DType::kF16, 768, 288), y),
                "x is not aligned to its 2-byte elements");
  // y over the last row of x (its first element past x's start).
  ExpectInvalid(Check(x, w, Matrix(op.x.data() + 6 * 288, DType::kF32, 7, 768)), "y overlaps x");
  std::vector<float> w_then_y(768 * 288 + 7 * 768);  // one allocation: y's start is w's last element
  ExpectInvalid(Check(x, Matrix(w_then_y.data(), DType::kF32, 768, 288),
                      Matrix(w_then_y.data() + 768 * 288 - 1, DType::kF32, 7, 768)),
                "y overlaps w");
  // Adjacent is not overlapping.
  std::vector<float> both(7 * 288 + 7 * 768);
  EXPECT_TRUE(CheckMatmul(Matrix(both.data(), DType::kF32, 7, 288), w,
                          Matrix(both.data() + 7 * 288, DType::kF32, 7, 768))
                  .ok());
}

TEST(GemmCheckTest, NoRowsIsANoOp) {
  FakeOperands op;
  Gemm empty;  // no handle: would CHECK-fail if it tried to launch
  EXPECT_TRUE(empty.Matmul(Matrix(nullptr, DType::kF16, 0, 288), Matrix(op.w.data(), DType::kF16, 768, 288),
                           Matrix(nullptr, DType::kF32, 0, 768), /*accumulate=*/true)
                  .ok());
}

TEST(GemmCheckTest, CreateWithoutAGpuIsAnError) {
  if (DeviceCount() > 0) GTEST_SKIP() << "a GPU is visible; this checks the machine without one";
  Result<Gemm> gemm = Gemm::Create(nullptr);
  ASSERT_FALSE(gemm.ok());
  // No driver (cudaErrorInsufficientDriver) or no device (cudaErrorNoDevice).
  EXPECT_EQ(gemm.status().code(), StatusCode::kUnavailable) << gemm.status().ToString();
}

// ---- parity with cpu::Matmul (GPU) --------------------------------------------------

// NormalisedError bound for a y of `out` dtype from `storage` inputs, `in` products per
// element. Products of fp16/bf16 (and fp32) inputs in fp32 are what both sides sum; what
// differs is the order and rounding of the fp32 sums.
//  * fp32 storage runs on CUDA cores (FFMA, round to nearest), like the CPU reference;
//    either side is within a few ulps (2^-23) of the largest partial sum, which for
//    random signs stays within a small multiple of max |y|: 1e-5 leaves over an order
//    of magnitude.
//  * fp16/bf16 storage runs on tensor cores: each MMA step adds a block of (exact)
//    products to the fp32 accumulator with truncation (round toward zero; measured on
//    V100/T4/A100 by Fasi et al., "Numerical behavior of NVIDIA tensor cores", 2021).
//    That error is biased, so it grows linearly with the in/16 steps, each at most one
//    ulp (2^-22 relative) of a running sum: in = 4096 allows 3.1e-5 on top of 1e-5.
//  * a y stored as fp16/bf16 is then rounded to nearest once: half an ulp, at most
//    2^-11 (fp16) or 2^-8 (bf16) of |y|, compared here with the unrounded fp32 reference.
//    With accumulate (y += x·wᵀ into an fp16/bf16 y) cuBLAS rounds twice: the product
//    to the output type, then product + y. Measured on an H200 (2026-11-28): up to 1.5
//    half-ulps (7.2e-4 at fp16, 5.9e-3 at bf16), so two roundings are allowed there.
//    (The forward pass only accumulates into fp32.)
double Bound(DType storage, DType out, int in, bool accumulate) {
  double bound = 1e-5;
  if (storage != DType::kF32) bound += (in / 16.0) * std::ldexp(1.0, -22);
  const int roundings = accumulate ? 2 : 1;
  if (out == DType::kF16) bound += roundings * std::ldexp(1.0, -11);
  if (out == DType::kBF16) bound += roundings * std::ldexp(1.0, -8);
  return bound;
}

struct Case {
  DType storage;
  DType out_dtype;
  int n, in, out;
  bool accumulate;
  bool padded;  // rows of x, w and y have extra (NaN / sentinel) elements after them
};

std::string Describe(const Case& c) {
  return std::string(DTypeName(c.storage)) + "->" + DTypeName(c.out_dtype) + " n=" + std::to_string(c.n) +
         " in=" + std::to_string(c.in) + " out=" + std::to_string(c.out) + (c.accumulate ? " accumulate" : "") +
         (c.padded ? " padded" : "");
}

std::vector<float> Uniform(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& f : v) f = dist(rng);
  return v;
}

// `dense` [rows, cols] laid out with row stride `stride`, gaps filled with `fill`.
std::vector<float> Pad(const std::vector<float>& dense, int rows, int cols, int64_t stride, float fill) {
  std::vector<float> padded(static_cast<size_t>(rows) * stride, fill);
  for (int r = 0; r < rows; ++r)
    std::memcpy(&padded[r * stride], &dense[static_cast<size_t>(r) * cols], cols * sizeof(float));
  return padded;
}

// Runs one case on `gemm` (or Gemv directly, on its stream) and returns the normalised
// error against cpu::Matmul; also checks that y's padding is untouched.
double RunCase(Gemm& gemm, const Case& c, double* bound, bool direct_gemv = false) {
  const uint32_t seed = static_cast<uint32_t>(c.n * 131 + c.in * 7 + c.out + static_cast<int>(c.storage) * 17);
  // Gemv needs row strides that are multiples of 8.
  const int64_t x_stride = c.padded ? c.in + (direct_gemv ? 8 : 5) : c.in,
                w_stride = c.padded ? c.in + (direct_gemv ? 16 : 3) : c.in,
                y_stride = c.padded ? c.out + 7 : c.out;
  const float nan = std::numeric_limits<float>::quiet_NaN();

  // What the GPU reads: inputs stored as c.storage; the reference gets the same values.
  const std::vector<float> x = RoundTrip(Uniform(static_cast<size_t>(c.n) * c.in, seed), c.storage);
  const std::vector<float> w = RoundTrip(Uniform(static_cast<size_t>(c.out) * c.in, seed + 1), c.storage);
  // accumulate: y starts as values of its dtype; otherwise as NaN, which beta = 0 must
  // never read.
  const std::vector<float> y0 = c.accumulate
                                    ? RoundTrip(Uniform(static_cast<size_t>(c.n) * c.out, seed + 2), c.out_dtype)
                                    : std::vector<float>(static_cast<size_t>(c.n) * c.out, nan);

  std::vector<float> want = c.accumulate ? y0 : std::vector<float>(y0.size(), 0.0f);
  cpu::Matmul(x.data(), w.data(), want.data(), c.n, c.in, c.out, c.accumulate);

  // Padding of x and w is NaN (reading it would poison y); y's is a sentinel that must
  // come back unchanged.
  const std::vector<unsigned char> x_bytes = Encode(Pad(x, c.n, c.in, x_stride, nan), c.storage);
  const std::vector<unsigned char> w_bytes = Encode(Pad(w, c.out, c.in, w_stride, nan), c.storage);
  const std::vector<unsigned char> y_bytes = Encode(Pad(y0, c.n, c.out, y_stride, 1234.5f), c.out_dtype);

  Result<DeviceBuffer> dx = DeviceBuffer::Allocate(x_bytes.size());
  Result<DeviceBuffer> dw = DeviceBuffer::Allocate(w_bytes.size());
  Result<DeviceBuffer> dy = DeviceBuffer::Allocate(y_bytes.size());
  EXPECT_TRUE(dx.ok() && dw.ok() && dy.ok()) << "device allocation failed";
  if (!dx.ok() || !dw.ok() || !dy.ok()) return INFINITY;
  EXPECT_TRUE(CopyToDevice(dx->data(), x_bytes.data(), x_bytes.size(), gemm.stream()).ok());
  EXPECT_TRUE(CopyToDevice(dw->data(), w_bytes.data(), w_bytes.size(), gemm.stream()).ok());
  EXPECT_TRUE(CopyToDevice(dy->data(), y_bytes.data(), y_bytes.size(), gemm.stream()).ok());

  const MatrixView mx = Matrix(dx->data(), c.storage, c.n, c.in, x_stride);
  const MatrixView mw = Matrix(dw->data(), c.storage, c.out, c.in, w_stride);
  const MatrixView my = Matrix(dy->data(), c.out_dtype, c.n, c.out, y_stride);
  const Status s = direct_gemv ? Gemv(mx, mw, my, c.accumulate, gemm.stream()) : gemm.Matmul(mx, mw, my, c.accumulate);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::vector<unsigned char> got_bytes(y_bytes.size());
  EXPECT_TRUE(CopyToHost(got_bytes.data(), dy->data(), got_bytes.size(), gemm.stream()).ok());

  const size_t elem = DTypeSize(c.out_dtype);
  std::vector<float> got(want.size());
  for (int r = 0; r < c.n; ++r) {
    const unsigned char* row = &got_bytes[r * y_stride * elem];
    const std::vector<float> decoded = Decode(std::span<const unsigned char>(row, c.out * elem), c.out_dtype);
    std::memcpy(&got[static_cast<size_t>(r) * c.out], decoded.data(), c.out * sizeof(float));
    if (y_stride > c.out) {
      EXPECT_EQ(std::memcmp(row + c.out * elem, &y_bytes[(r * y_stride + c.out) * elem], (y_stride - c.out) * elem), 0)
          << "padding of y row " << r << " was written";
    }
  }
  for (float v : got) {
    if (!std::isfinite(v)) {
      ADD_FAILURE() << "non-finite output (read padding or an uninitialised y?)";
      return INFINITY;
    }
  }
  *bound = Bound(c.storage, c.out_dtype, c.in, c.accumulate);
  return NormalisedError(got, want);
}

void ExpectParity(DType storage) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  Result<Gemm> created = Gemm::Create(stream->get());
  FLOVER_ASSERT_OK(created);
  Gemm gemm = std::move(created).value();  // also checks that a moved Gemm works
  ASSERT_EQ(gemm.stream(), stream->get());

  // (in, out): stories-size square and rectangular, and a 7B-size row (in 4096) against
  // a slice of its 11008 outputs (one eighth: runtime stays small).
  const std::vector<std::pair<int, int>> shapes = {{288, 288}, {288, 768}, {768, 288}, {4096, 1376}};
  std::vector<DType> outputs = {DType::kF32};
  if (storage != DType::kF32) outputs.push_back(storage);
  for (DType out_dtype : outputs)
    for (auto [in, out] : shapes)
      for (int n : {1, 7, 64})
        for (bool accumulate : {false, true}) {
          const Case c{storage, out_dtype, n, in, out, accumulate, /*padded=*/n == 7};
          double bound = 0.0;
          const double error = RunCase(gemm, c, &bound);
          EXPECT_LE(error, bound) << Describe(c);
        }
}

TEST(GemmTest, Fp32MatchesCpu) { ExpectParity(DType::kF32); }
TEST(GemmTest, Fp16MatchesCpu) { ExpectParity(DType::kF16); }
TEST(GemmTest, Bf16MatchesCpu) { ExpectParity(DType::kBF16); }

// TF32 rounds every fp32 input to a 10-bit mantissa (relative error up to 2^-10 when
// truncated), so products are off by up to ~2^-9 relative with random signs: the sum's
// error is a random walk, about 2^-9 · sqrt(in) · rms(product) against max |y| ≈
// 4 · sqrt(in) · rms(product). 5e-3 bounds it with room; still fp32 accumulation.
TEST(GemmTest, Tf32OptionStaysClose) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  GemmOptions options;
  options.allow_tf32 = true;
  Result<Gemm> gemm = Gemm::Create(stream->get(), options);
  FLOVER_ASSERT_OK(gemm);
  EXPECT_TRUE(gemm->allow_tf32());
  for (bool accumulate : {false, true}) {
    const Case c{DType::kF32, DType::kF32, 64, 768, 288, accumulate, false};
    double bound = 0.0;
    EXPECT_LE(RunCase(*gemm, c, &bound), 5e-3) << Describe(c);
  }
}

// The same call twice gives the same bits (atomics off, fixed workspace).
TEST(GemmTest, RepeatedCallsAreBitIdentical) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  Result<Gemm> gemm = Gemm::Create(stream->get());
  FLOVER_ASSERT_OK(gemm);
  constexpr int kN = 64, kIn = 4096, kOut = 1376;
  const std::vector<unsigned char> x = Encode(Uniform(kN * kIn, 7), DType::kBF16);
  const std::vector<unsigned char> w = Encode(Uniform(kOut * kIn, 8), DType::kBF16);
  Result<DeviceBuffer> dx = DeviceBuffer::Allocate(x.size());
  Result<DeviceBuffer> dw = DeviceBuffer::Allocate(w.size());
  Result<DeviceBuffer> dy = DeviceBuffer::Allocate(kN * kOut * sizeof(float));
  FLOVER_ASSERT_OK(dx);
  FLOVER_ASSERT_OK(dw);
  FLOVER_ASSERT_OK(dy);
  FLOVER_ASSERT_OK(CopyToDevice(dx->data(), x.data(), x.size(), stream->get()));
  FLOVER_ASSERT_OK(CopyToDevice(dw->data(), w.data(), w.size(), stream->get()));
  std::vector<float> first(kN * kOut), second(kN * kOut);
  for (std::vector<float>* out : {&first, &second}) {
    FLOVER_ASSERT_OK(gemm->Matmul(Matrix(dx->data(), DType::kBF16, kN, kIn), Matrix(dw->data(), DType::kBF16, kOut, kIn),
                                  Matrix(dy->data(), DType::kF32, kN, kOut)));
    FLOVER_ASSERT_OK(CopyToHost(out->data(), dy->data(), out->size() * sizeof(float), stream->get()));
  }
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0);
}

// ---- Gemv -------------------------------------------------------------------------

TEST(GemvCheckTest, SupportsSmallAlignedHalfPrecisionOnly) {
  alignas(16) static unsigned char x[16 * 4096 * 2], w[16 * 4096 * 2], y[16 * 4096 * 4];
  const MatrixView w16 = Matrix(w, DType::kF16, 64, 4096);
  EXPECT_TRUE(GemvSupports(Matrix(x, DType::kF16, 1, 4096), w16, Matrix(y, DType::kF32, 1, 64)));
  EXPECT_TRUE(GemvSupports(Matrix(x, DType::kF16, 8, 4096), w16, Matrix(y, DType::kF16, 8, 64)));
  EXPECT_TRUE(GemvSupports(Matrix(x, DType::kBF16, 3, 4096), Matrix(w, DType::kBF16, 64, 4096),
                           Matrix(y, DType::kF32, 3, 64)));
  EXPECT_FALSE(GemvSupports(Matrix(x, DType::kF16, 9, 4096), w16, Matrix(y, DType::kF32, 9, 64)));  // n > 8
  EXPECT_FALSE(GemvSupports(Matrix(x, DType::kF32, 1, 4096), Matrix(w, DType::kF32, 64, 4096),
                            Matrix(y, DType::kF32, 1, 64)));                                         // fp32
  EXPECT_FALSE(GemvSupports(Matrix(x, DType::kF16, 1, 172), Matrix(w, DType::kF16, 64, 172),
                            Matrix(y, DType::kF32, 1, 64)));                                         // in % 8
  EXPECT_FALSE(GemvSupports(Matrix(x, DType::kF16, 2, 4096, 4100), w16, Matrix(y, DType::kF32, 2, 64)));  // stride
  EXPECT_FALSE(GemvSupports(Matrix(x + 2, DType::kF16, 1, 4096), w16, Matrix(y, DType::kF32, 1, 64)));    // align
  Status s = Gemv(Matrix(x, DType::kF16, 9, 4096), w16, Matrix(y, DType::kF32, 9, 64), false, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  ExpectInvalid(Gemv(Matrix(x, DType::kF16, 1, 4096), w16, Matrix(y, DType::kF32, 1, 63), false, nullptr),
                "y is fp32 [1, 63], expected fp32 [1, 64]");
}

void ExpectGemvParity(DType storage) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  Result<Gemm> gemm = Gemm::Create(stream->get());
  FLOVER_ASSERT_OK(gemm);
  // in: a short row, 7B's dim and hidden (11008 = 5.4 chunks of 2048: the tail); out not
  // a multiple of the 4 columns per block.
  const std::vector<std::pair<int, int>> shapes = {{288, 771}, {4096, 1377}, {11008, 515}};
  for (DType out_dtype : {DType::kF32, storage})
    for (auto [in, out] : shapes)
      for (int n : {1, 2, 3, 5, 8})
        for (bool accumulate : {false, true}) {
          const Case c{storage, out_dtype, n, in, out, accumulate, /*padded=*/n == 3};
          double bound = 0.0;
          const double error = RunCase(*gemm, c, &bound, /*direct_gemv=*/true);
          EXPECT_LE(error, bound) << "Gemv " << Describe(c);
        }
}

TEST(GemvTest, Fp16MatchesCpu) { ExpectGemvParity(DType::kF16); }
TEST(GemvTest, Bf16MatchesCpu) { ExpectGemvParity(DType::kBF16); }

// A row's result does not depend on the other rows or on n (1..8): the same bits as the
// row alone; and Matmul with gemv_max_rows = 8 takes this path (the same bits again).
TEST(GemvTest, RowsAreBatchInvariant) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  GemmOptions options;
  options.gemv_max_rows = kGemvMaxRows;
  Result<Gemm> gemm = Gemm::Create(stream->get(), options);
  FLOVER_ASSERT_OK(gemm);
  ASSERT_EQ(gemm->gemv_max_rows(), kGemvMaxRows);
  constexpr int kN = 8, kIn = 4096, kOut = 1000;
  const std::vector<unsigned char> x = Encode(Uniform(kN * kIn, 11), DType::kF16);
  const std::vector<unsigned char> w = Encode(Uniform(kOut * kIn, 12), DType::kF16);
  Result<DeviceBuffer> dx = DeviceBuffer::Allocate(x.size());
  Result<DeviceBuffer> dw = DeviceBuffer::Allocate(w.size());
  Result<DeviceBuffer> dy = DeviceBuffer::Allocate(kN * kOut * sizeof(float));
  FLOVER_ASSERT_OK(dx);
  FLOVER_ASSERT_OK(dw);
  FLOVER_ASSERT_OK(dy);
  FLOVER_ASSERT_OK(CopyToDevice(dx->data(), x.data(), x.size(), stream->get()));
  FLOVER_ASSERT_OK(CopyToDevice(dw->data(), w.data(), w.size(), stream->get()));
  const MatrixView mw = Matrix(dw->data(), DType::kF16, kOut, kIn);
  std::vector<float> all(kN * kOut);
  FLOVER_ASSERT_OK(Gemv(Matrix(dx->data(), DType::kF16, kN, kIn), mw, Matrix(dy->data(), DType::kF32, kN, kOut), false,
                        stream->get()));
  FLOVER_ASSERT_OK(CopyToHost(all.data(), dy->data(), all.size() * sizeof(float), stream->get()));
  for (int n : {1, 2, 3, 4, 5, 7}) {
    std::vector<float> some(static_cast<size_t>(n) * kOut);
    FLOVER_ASSERT_OK(gemm->Matmul(Matrix(dx->data(), DType::kF16, n, kIn), mw, Matrix(dy->data(), DType::kF32, n, kOut)));
    FLOVER_ASSERT_OK(CopyToHost(some.data(), dy->data(), some.size() * sizeof(float), stream->get()));
    EXPECT_EQ(std::memcmp(some.data(), all.data(), some.size() * sizeof(float)), 0) << "n=" << n;
  }
}

// GemvSiluMul equals Gemv into fp32 followed by SiluMul, bit for bit.
TEST(GemvTest, FusedSiluMulEqualsGemvThenSiluMul) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  constexpr int kIn = 4096, kHidden = 1377;
  for (DType dtype : {DType::kF16, DType::kBF16})
    for (int n : {1, 4, 8}) {
      const std::vector<unsigned char> x = Encode(Uniform(n * kIn, 21 + n), dtype);
      const std::vector<unsigned char> w = Encode(Uniform(2 * kHidden * kIn, 22), dtype);
      const size_t es = DTypeSize(dtype);
      Result<DeviceBuffer> dx = DeviceBuffer::Allocate(x.size());
      Result<DeviceBuffer> dw = DeviceBuffer::Allocate(w.size());
      Result<DeviceBuffer> gate_up = DeviceBuffer::Allocate(size_t{2} * n * kHidden * sizeof(float));
      Result<DeviceBuffer> unfused = DeviceBuffer::Allocate(n * kHidden * es);
      Result<DeviceBuffer> fused = DeviceBuffer::Allocate(n * kHidden * es);
      FLOVER_ASSERT_OK(dx);
      FLOVER_ASSERT_OK(dw);
      FLOVER_ASSERT_OK(gate_up);
      FLOVER_ASSERT_OK(unfused);
      FLOVER_ASSERT_OK(fused);
      FLOVER_ASSERT_OK(CopyToDevice(dx->data(), x.data(), x.size(), stream->get()));
      FLOVER_ASSERT_OK(CopyToDevice(dw->data(), w.data(), w.size(), stream->get()));
      const MatrixView mx = Matrix(dx->data(), dtype, n, kIn), mw = Matrix(dw->data(), dtype, 2 * kHidden, kIn);
      FLOVER_ASSERT_OK(Gemv(mx, mw, Matrix(gate_up->data(), DType::kF32, n, 2 * kHidden), false, stream->get()));
      FLOVER_ASSERT_OK(SiluMul(Matrix(gate_up->data(), DType::kF32, n, 2 * kHidden),
                               Matrix(unfused->data(), dtype, n, kHidden), stream->get()));
      FLOVER_ASSERT_OK(GemvSiluMul(mx, mw, Matrix(fused->data(), dtype, n, kHidden), stream->get()));
      std::vector<unsigned char> a(n * kHidden * es), b(a.size());
      FLOVER_ASSERT_OK(CopyToHost(a.data(), unfused->data(), a.size(), stream->get()));
      FLOVER_ASSERT_OK(CopyToHost(b.data(), fused->data(), b.size(), stream->get()));
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0) << DTypeName(dtype) << " n=" << n;
    }
}

}  // namespace
}  // namespace flover::cuda
