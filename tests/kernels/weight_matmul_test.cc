// MatmulWeights (kernels/cpu/weight_matmul.h): every variant of every weight format this
// CPU can run (the others skip, naming the CPU features they need) against
//   - fp32/fp16/bf16: Matmul on the weights widened by the test, bit for bit;
//   - Q8_0/Q4_0/Q4_K: the test's own implementation of the canonical arithmetic
//     (weight_reference.h), bit for bit, and the exact x · dequant(W)ᵀ within the bound
//     RefQuantErrorBound states;
// and the properties the engine relies on: batch invariance (a row's bits do not depend
// on n or its neighbours), the same bits for 1, 2 and 3 threads, accumulate mode,
// unaligned weights, and hostile scales, weights and activations (NaN, inf, -128) that
// must not crash.
#include "kernels/cpu/weight_matmul.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_interleave.h"
#include "kernels/cpu/weight_matmul_internal.h"
#include "tests/kernels/random_values.h"
#include "tests/kernels/weight_reference.h"

namespace flover::cpu {
namespace {

using internal::FindMatmulKernel;
using internal::FindWeightKernel;
using internal::MatmulKernel;
using internal::MatmulWeightsWithKernel;
using internal::WeightKernel;
using internal::WeightKernelNames;
using internal::WeightKernelRequirement;
using testing::ActivationBlock;
using testing::Random;
using testing::RandomBlocks;
using testing::RefDequantizeRow;
using testing::RefMatmulQuant;
using testing::RefQuantErrorBound;
using testing::SameBitsOrBothNaN;

constexpr WeightFormat kAllFormats[] = {WeightFormat::kF32,  WeightFormat::kF16,  WeightFormat::kBF16,
                                        WeightFormat::kQ8_0, WeightFormat::kQ4_0, WeightFormat::kQ4_K};

bool IsQuantized(WeightFormat f) {
  return f == WeightFormat::kQ8_0 || f == WeightFormat::kQ4_0 || f == WeightFormat::kQ4_K;
}

// Restores the OpenMP thread count a test changed.
class ThreadCountScope {
 public:
  explicit ThreadCountScope(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadCountScope() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

// The Matmul kernel whose bits a float-format variant gives: "avx512" and "avx2" widen
// inside Matmul's SIMD tiles (which give one set of bits), "widen+K" runs kernel K.
MatmulKernel PairedMatmulKernel(const char* variant) {
  std::string name = variant;
  if (name.rfind("widen+", 0) == 0) name = name.substr(6);
  return FindMatmulKernel(name.c_str());
}

// Weights of a format: rows of random values in [-1, 1) quantized by QuantizeWeightRows,
// or (raw, block formats only) random block bytes with finite scales, which reach every
// integer weight (Q8_0's -128 included) and every 6-bit scale and min.
std::vector<uint8_t> MakeWeights(WeightFormat f, int rows, int cols, uint32_t seed, bool raw) {
  if (raw && IsQuantized(f)) return RandomBlocks(f, rows, cols, seed);
  const std::vector<float> values = Random(static_cast<size_t>(rows) * cols, seed);
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * WeightRowBytes(f, cols));
  QuantizeWeightRows(f, values.data(), rows, cols, bytes.data());
  return bytes;
}

// The layout a variant reads at speed: the int8 formats' kernels and the float formats'
// "avx2" ones read the interleaved one (the latter rows too: FloatLayoutsGiveTheSameBits,
// matmul_test), the others rows.
WeightLayout FastLayout(WeightFormat f, const char* variant) {
  return IsQuantized(f) || std::string(variant) == "avx2" ? WeightLayout::kInterleaved : WeightLayout::kRows;
}

// A matrix in `layout`: the kInterleaved bytes made from W's kRows bytes at w, or those
// bytes themselves.
struct LaidOut {
  std::vector<uint8_t> interleaved;
  WeightView view;
};
LaidOut LayOut(WeightFormat f, const uint8_t* w, int rows, int cols, WeightLayout layout) {
  LaidOut out;
  out.view = WeightView{f, w, rows, cols};
  if (layout == WeightLayout::kRows) return out;
  out.interleaved.resize(static_cast<size_t>(InterleavedWeightBytes(f, rows, cols)));
  InterleaveWeightRows(out.view, out.interleaved.data());
  out.view = WeightView{f, out.interleaved.data(), rows, cols, WeightLayout::kInterleaved};
  return out;
}

// Columns to test per format: odd counts, partial 16-wide chunks, odd block counts.
std::vector<int> ColsFor(WeightFormat f) {
  if (f == WeightFormat::kQ4_K) return {256, 512, 768, 1280};
  if (IsQuantized(f)) return {32, 64, 96, 160, 800, 768};
  return {1, 15, 17, 64, 100, 300, 768, 1500, 2100};  // 1500 and 2100: AVX2 blocks k in its driver
}

// 1500 for the 16-bit formats: long enough for the AVX2 kernels to block k in the driver
// from 6 x rows on, with a partial last chunk.
int OddCols(WeightFormat f) { return f == WeightFormat::kQ4_K ? 768 : IsQuantized(f) ? 800 : 1500; }

struct Case {
  WeightFormat format;
  const char* variant;
};

void PrintTo(const Case& c, std::ostream* os) { *os << WeightFormatName(c.format) << " " << c.variant; }

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (WeightFormat f : kAllFormats) {
    for (const char* name : WeightKernelNames(f)) cases.push_back({f, name});
  }
  return cases;
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string name = std::string(WeightFormatName(info.param.format)) + "_" + info.param.variant;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

class WeightMatmulTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    format_ = GetParam().format;
    kernel_ = FindWeightKernel(format_, GetParam().variant);
    if (kernel_.fn == nullptr) {
      GTEST_SKIP() << "this CPU lacks " << WeightKernelRequirement(format_, GetParam().variant) << " for the "
                   << GetParam().variant << " kernel of " << WeightFormatName(format_);
    }
  }

  // W's kRows bytes at w, read in the layout the variants stream (LayOut).
  void Run(const std::vector<float>& x, const uint8_t* w, std::vector<float>& y, int n, int rows, int cols,
           bool accumulate = false) const {
    MatmulWeightsWithKernel(kernel_, x.data(),
                            LayOut(format_, w, rows, cols, FastLayout(format_, GetParam().variant)).view, y.data(), n,
                            accumulate);
  }

  // What the variant must give, bit for bit (NaNs: any NaN).
  void Expected(const std::vector<float>& x, const std::vector<uint8_t>& w, std::vector<float>& y, int n, int rows,
                int cols, bool accumulate) const {
    if (IsQuantized(format_)) {
      RefMatmulQuant(format_, x, w, n, rows, cols, y, accumulate);
      return;
    }
    std::vector<float> widened(static_cast<size_t>(rows) * cols);
    const int64_t row_bytes = WeightRowBytes(format_, cols);
    for (int o = 0; o < rows; ++o) {
      const std::vector<double> v = RefDequantizeRow(format_, w.data() + o * row_bytes, cols);
      for (int j = 0; j < cols; ++j) widened[static_cast<size_t>(o) * cols + j] = static_cast<float>(v[j]);
    }
    const MatmulKernel matmul = PairedMatmulKernel(GetParam().variant);
    ASSERT_NE(matmul.fn, nullptr) << GetParam().variant;
    internal::MatmulWithKernel(matmul, x.data(), widened.data(), y.data(), n, cols, rows, accumulate);
  }

  // EXPECTs y == Expected(...) element by element.
  void ExpectAsReference(const std::vector<float>& x, const std::vector<uint8_t>& w, const std::vector<float>& y0,
                         const std::vector<float>& y, int n, int rows, int cols, bool accumulate,
                         const std::string& what) const {
    std::vector<float> expected = y0;
    Expected(x, w, expected, n, rows, cols, accumulate);
    int n_diff = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      if (!SameBitsOrBothNaN(expected[i], y[i]) && ++n_diff <= 3) {
        ADD_FAILURE() << what << ": element " << i << " (row " << i / rows << ", W row " << i % rows << ") is " << y[i]
                      << ", the reference gives " << expected[i];
      }
    }
    EXPECT_EQ(n_diff, 0) << what;
  }

  WeightFormat format_ = WeightFormat::kF32;
  WeightKernel kernel_;
};

TEST_P(WeightMatmulTest, MatchesReferenceBitForBit) {
  for (int cols : ColsFor(format_)) {
    for (int rows : {1, 3, 7, 13, 17, 40}) {  // Q4_K: parts of a group of 16, one, several
      for (int n : {1, 2, 5, 9}) {
        for (bool accumulate : {false, true}) {
          const bool raw = (cols + rows + n) % 2 == 0;
          const std::string what = "cols=" + std::to_string(cols) + " rows=" + std::to_string(rows) +
                                   " n=" + std::to_string(n) + (accumulate ? " accumulate" : "") +
                                   (raw ? " raw blocks" : "");
          const auto x = Random(static_cast<size_t>(n) * cols, 1 + cols + n);
          const auto w = MakeWeights(format_, rows, cols, 2 + rows + cols, raw);
          const auto y0 = Random(static_cast<size_t>(n) * rows, 3 + n);
          auto y = y0;
          Run(x, w.data(), y, n, rows, cols, accumulate);
          ExpectAsReference(x, w, y0, y, n, rows, cols, accumulate, what);
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST_P(WeightMatmulTest, RowsAreBatchInvariant) {
  constexpr int kN = 40, kRows = 13;
  const int cols = OddCols(format_);
  const auto x = Random(static_cast<size_t>(kN) * cols, 20);
  const auto w = MakeWeights(format_, kRows, cols, 21, /*raw=*/false);
  std::vector<float> alone(static_cast<size_t>(kN) * kRows);
  for (int r = 0; r < kN; ++r) {
    const std::vector<float> xr(x.begin() + static_cast<long>(r) * cols, x.begin() + static_cast<long>(r + 1) * cols);
    std::vector<float> y(kRows);
    Run(xr, w.data(), y, 1, kRows, cols);
    std::copy(y.begin(), y.end(), alone.begin() + static_cast<long>(r) * kRows);
  }
  for (int n = 1; n <= kN; ++n) {
    const int start = (7 * n) % (kN - n + 1);  // shifting neighbours
    const std::vector<float> xs(x.begin() + static_cast<long>(start) * cols,
                                x.begin() + static_cast<long>(start + n) * cols);
    std::vector<float> y(static_cast<size_t>(n) * kRows);
    Run(xs, w.data(), y, n, kRows, cols);
    ASSERT_EQ(0, std::memcmp(y.data(), alone.data() + static_cast<size_t>(start) * kRows, sizeof(float) * y.size()))
        << "rows [" << start << ", " << start + n << ") computed together differ from each alone";
  }
}

// Prefill-sized batches (the AVX2 float kernels switch to their outer-product panels
// from a few dozen rows): the reference's bits, and each row's bits alone.
TEST_P(WeightMatmulTest, PrefillSizedBatchesGiveTheReferenceAndEachRowsBits) {
  constexpr int kN = 100, kRows = 40;  // two whole panels of 16 W rows and a part
  const int cols = OddCols(format_);
  const auto x = Random(static_cast<size_t>(kN) * cols, 25);
  const auto w = MakeWeights(format_, kRows, cols, 26, /*raw=*/false);
  const auto y0 = Random(static_cast<size_t>(kN) * kRows, 27);
  for (bool accumulate : {false, true}) {
    auto y = y0;
    Run(x, w.data(), y, kN, kRows, cols, accumulate);
    ExpectAsReference(x, w, y0, y, kN, kRows, cols, accumulate, accumulate ? "accumulate" : "");
    if (HasFailure()) return;
  }
  std::vector<float> all(static_cast<size_t>(kN) * kRows);
  Run(x, w.data(), all, kN, kRows, cols);
  for (int r = 0; r < kN; r += 11) {
    const std::vector<float> xr(x.begin() + static_cast<long>(r) * cols, x.begin() + static_cast<long>(r + 1) * cols);
    std::vector<float> y(kRows);
    Run(xr, w.data(), y, 1, kRows, cols);
    ASSERT_EQ(0, std::memcmp(y.data(), all.data() + static_cast<size_t>(r) * kRows, sizeof(float) * kRows))
        << "row " << r;
  }
}

TEST_P(WeightMatmulTest, ResultDoesNotDependOnThreadCount) {
  constexpr int kN = 9, kRows = 61;
  const int cols = OddCols(format_);
  const auto x = Random(static_cast<size_t>(kN) * cols, 30);
  const auto w = MakeWeights(format_, kRows, cols, 31, /*raw=*/true);
  std::vector<float> one(static_cast<size_t>(kN) * kRows);
  {
    ThreadCountScope threads(1);
    Run(x, w.data(), one, kN, kRows, cols);
  }
  for (int n_threads : {2, 3}) {
    ThreadCountScope threads(n_threads);
    std::vector<float> many(one.size());
    Run(x, w.data(), many, kN, kRows, cols);
    ASSERT_EQ(0, std::memcmp(one.data(), many.data(), sizeof(float) * one.size())) << n_threads << " threads";
  }
}

TEST_P(WeightMatmulTest, AccumulateAddsTheFinishedDotProduct) {
  constexpr int kN = 6, kRows = 10;
  const int cols = OddCols(format_);
  const auto x = Random(static_cast<size_t>(kN) * cols, 40);
  const auto w = MakeWeights(format_, kRows, cols, 41, /*raw=*/false);
  const auto y0 = Random(static_cast<size_t>(kN) * kRows, 42);
  std::vector<float> plain(y0.size());
  Run(x, w.data(), plain, kN, kRows, cols);
  auto y = y0;
  Run(x, w.data(), y, kN, kRows, cols, /*accumulate=*/true);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], y0[i] + plain[i]) << "element " << i;
}

TEST_P(WeightMatmulTest, ZeroRowsIsANoOp) {
  const int cols = OddCols(format_);
  const auto w = MakeWeights(format_, 3, cols, 50, false);
  const std::vector<float> x(cols, 1.0f);
  std::vector<float> y(3, 42.0f);
  Run(x, w.data(), y, 0, 3, cols);
  Run(x, w.data(), y, 0, 3, cols, /*accumulate=*/true);
  EXPECT_EQ(y, std::vector<float>(3, 42.0f));
}

// W may start at any address (GGUF tensors are aligned, but the contract asks nothing).
TEST_P(WeightMatmulTest, UnalignedWeightsGiveTheSameBits) {
  constexpr int kN = 3, kRows = 7;
  const int cols = OddCols(format_);
  const auto x = Random(static_cast<size_t>(kN) * cols, 60);
  const auto w = MakeWeights(format_, kRows, cols, 61, true);
  std::vector<float> aligned(static_cast<size_t>(kN) * kRows);
  Run(x, w.data(), aligned, kN, kRows, cols);
  for (int offset : {1, 2, 3}) {
    std::vector<uint8_t> shifted(w.size() + offset);
    std::memcpy(shifted.data() + offset, w.data(), w.size());
    std::vector<float> y(aligned.size());
    Run(x, shifted.data() + offset, y, kN, kRows, cols);
    ASSERT_EQ(0, std::memcmp(y.data(), aligned.data(), sizeof(float) * y.size())) << "offset " << offset;
  }
}

// Every fp16 scale (NaN, inf, subnormal, negative, zero) and every Q8_0 weight
// (including -128 in all 32 positions against activations of +-127, the largest pair
// sums vpmaddubsw can see) gives the reference's result and no crash.
TEST_P(WeightMatmulTest, HostileWeightsFollowTheReference) {
  constexpr int kN = 4, kRows = 12;
  const int cols = OddCols(format_);
  auto w = MakeWeights(format_, kRows, cols, 70, true);
  const int block_bytes = WeightBlockBytes(format_);
  const uint16_t halves[] = {0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF, 0x0001, 0x8001, 0x0000, 0x8000, 0x7BFF, 0xFBFF};
  // Scales (block formats) or weights (fp16, bf16: 16-bit patterns) set to the specials.
  for (size_t off = 0, i = 0; off + 2 <= w.size(); off += static_cast<size_t>(block_bytes) * 5, ++i) {
    const uint16_t h = halves[i % std::size(halves)];
    if (format_ == WeightFormat::kF32) {
      const float specials[] = {INFINITY, -INFINITY, std::nanf(""), std::numeric_limits<float>::max(), 1e-42f};
      std::memcpy(&w[off], &specials[i % std::size(specials)], 4);
      continue;
    }
    std::memcpy(&w[off + (format_ == WeightFormat::kQ4_K && i % 2 ? 2 : 0)], &h, 2);
  }
  if (format_ == WeightFormat::kQ8_0) {  // W row 1: all -128 with scale 1
    const int64_t row_bytes = WeightRowBytes(format_, cols);
    for (int b = 0; b < cols / 32; ++b) {
      uint8_t* block = w.data() + row_bytes + b * 34;
      block[0] = 0x00;
      block[1] = 0x3C;
      std::memset(block + 2, 0x80, 32);
    }
  }
  std::vector<float> x = Random(static_cast<size_t>(kN) * cols, 71);
  for (int j = 0; j < cols; ++j) {
    x[j] = 1.0f;                         // row 0: every q = 127
    x[cols + j] = j % 2 ? -1.0f : 1.0f;  // row 1: +-127
  }
  std::vector<float> y(static_cast<size_t>(kN) * kRows);
  Run(x, w.data(), y, kN, kRows, cols);
  ExpectAsReference(x, w, y, y, kN, kRows, cols, false, "hostile weights");
  if (format_ == WeightFormat::kQ8_0) {
    // x row 0 (all 1) times W row 1 (all -128): -128 per column, up to d's rounding.
    EXPECT_NEAR(y[1], -128.0 * cols, 1e-5 * 128 * cols);
    EXPECT_NEAR(y[kRows + 1], 0.0, 1e-5 * 128 * cols);  // alternating signs cancel
  }
}

// Activations with NaN, inf, the largest float, subnormals and all-zero blocks: the
// reference's results (NaN where it says NaN), no crash.
TEST_P(WeightMatmulTest, HostileActivationsFollowTheReference) {
  constexpr int kN = 6, kRows = 5;
  const int cols = OddCols(format_);
  const auto w = MakeWeights(format_, kRows, cols, 80, false);
  std::vector<float> x = Random(static_cast<size_t>(kN) * cols, 81);
  x[3] = std::nanf("");
  x[cols + 40] = INFINITY;
  x[2 * cols + 7] = -std::numeric_limits<float>::max();
  for (int j = 0; j < cols; ++j) x[3 * cols + j] = j % 3 ? 1e-40f : -1e-39f;  // subnormal: quantized to 0
  for (int j = 0; j < cols / 2; ++j) x[4 * cols + j] = 0.0f;
  for (int j = 0; j < cols; ++j)  // blocks at the all-zero threshold, quantized as usual
    x[5 * cols + j] = std::ldexp(1.0f, -97) * static_cast<float>(j % 5 - 2);
  std::vector<float> y(static_cast<size_t>(kN) * kRows);
  Run(x, w.data(), y, kN, kRows, cols);
  ExpectAsReference(x, w, y, y, kN, kRows, cols, false, "hostile activations");
  EXPECT_NE(y[5 * kRows], 0.0f) << "activations of 2^-96 are not flushed to zero";
  EXPECT_TRUE(std::isnan(y[0])) << "a NaN activation gives NaN";
  if (IsQuantized(format_)) {
    EXPECT_TRUE(std::isnan(y[kRows])) << "an inf activation gives NaN through d";
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, WeightMatmulTest, ::testing::ValuesIn(AllCases()), CaseName);

// The int8 formats' variants.
class QuantizedWeightMatmulTest : public WeightMatmulTest {};

std::vector<Case> QuantizedCases() {
  std::vector<Case> cases;
  for (const Case& c : AllCases()) {
    if (IsQuantized(c.format)) cases.push_back(c);
  }
  return cases;
}

// The int8 formats' error against the exact product with the dequantized weights stays
// within the bound the arithmetic allows (RefQuantErrorBound), and that bound is small:
// on these inputs a few per mille of sum |x_j w_j|.
TEST_P(QuantizedWeightMatmulTest, ErrorWithinItsBound) {
  for (bool raw : {false, true}) {
    const int n = 5, rows = 9, cols = format_ == WeightFormat::kQ4_K ? 1024 : 800;
    const auto x = Random(static_cast<size_t>(n) * cols, 11);
    const auto w = MakeWeights(format_, rows, cols, 12, raw);
    std::vector<float> y(static_cast<size_t>(n) * rows);
    Run(x, w.data(), y, n, rows, cols);
    const int64_t row_bytes = WeightRowBytes(format_, cols);
    for (int r = 0; r < n; ++r) {
      for (int o = 0; o < rows; ++o) {
        const std::vector<double> wo = RefDequantizeRow(format_, w.data() + o * row_bytes, cols);
        double exact = 0.0, magnitude = 0.0;
        for (int j = 0; j < cols; ++j) {
          exact += x[static_cast<size_t>(r) * cols + j] * wo[j];
          magnitude += std::fabs(x[static_cast<size_t>(r) * cols + j] * wo[j]);
        }
        const double bound =
            RefQuantErrorBound(format_, w.data() + o * row_bytes, cols, &x[static_cast<size_t>(r) * cols], 0.0);
        const double got = y[static_cast<size_t>(r) * rows + o];
        ASSERT_LE(std::fabs(got - exact), bound) << "row " << r << " W row " << o << (raw ? " raw" : "");
        // Activations uniform in [-1, 1): the bound is about |w| * d / 2 per term.
        EXPECT_LE(bound, 0.02 * magnitude) << "row " << r << " W row " << o;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, QuantizedWeightMatmulTest, ::testing::ValuesIn(QuantizedCases()), CaseName);

// Every variant of a format gives one set of bits: the int8 ones always, the float
// ones per Matmul kernel they pair with (avx512 = avx2 = widen+avx512 = widen+avx2).
TEST(WeightMatmulVariantsTest, VariantsOfAFormatAgree) {
  constexpr int kN = 7, kRows = 11;
  for (WeightFormat f : kAllFormats) {
    const int cols = OddCols(f);
    const auto x = Random(static_cast<size_t>(kN) * cols, 90);
    const auto w = MakeWeights(f, kRows, cols, 91, true);
    std::vector<float> first;
    std::string first_name;
    int n_run = 0;
    for (const char* name : WeightKernelNames(f)) {
      if (std::string(name) == "generic" && !IsQuantized(f)) continue;  // fp32's portable Matmul kernel
      if (std::string(name) == "widen+generic") continue;               // rounds differently, as Matmul's
      const WeightKernel k = FindWeightKernel(f, name);
      if (k.fn == nullptr) continue;
      std::vector<float> y(static_cast<size_t>(kN) * kRows);
      MatmulWeightsWithKernel(k, x.data(), LayOut(f, w.data(), kRows, cols, FastLayout(f, name)).view, y.data(), kN,
                              false);
      ++n_run;
      if (first.empty()) {
        first = y;
        first_name = name;
        continue;
      }
      EXPECT_EQ(0, std::memcmp(first.data(), y.data(), sizeof(float) * y.size()))
          << WeightFormatName(f) << ": " << name << " differs from " << first_name;
    }
    EXPECT_GE(n_run, 1) << WeightFormatName(f);
  }
}

// MatmulWeights runs the variant chosen for the process, one of the format's, whose
// arithmetic is that of the Matmul kernel chosen for the process; for float formats
// the result is Matmul's on the widened weights.
TEST(WeightMatmulVariantsTest, DispatchesToTheSelectedVariant) {
  constexpr int kN = 3, kRows = 9;
  for (WeightFormat f : kAllFormats) {
    SCOPED_TRACE(WeightFormatName(f));
    const std::string name = MatmulWeightsKernelName(f);
    const std::vector<const char*> names = WeightKernelNames(f);
    ASSERT_TRUE(std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; })) << name;
    const WeightKernel k = FindWeightKernel(f, name.c_str());
    ASSERT_NE(k.fn, nullptr) << name;
    const int cols = OddCols(f);
    const auto x = Random(static_cast<size_t>(kN) * cols, 100);
    const auto w = MakeWeights(f, kRows, cols, 101, false);
    std::vector<float> a(static_cast<size_t>(kN) * kRows), b(a.size());
    const LaidOut laid_out = LayOut(f, w.data(), kRows, cols, PreferredWeightLayout(f));
    MatmulWeights(x.data(), laid_out.view, a.data(), kN);
    MatmulWeightsWithKernel(k, x.data(), laid_out.view, b.data(), kN, false);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * a.size()));
    if (!IsQuantized(f)) {
      std::vector<float> widened(static_cast<size_t>(kRows) * cols), c(a.size());
      DequantizeWeightRows(WeightView{f, w.data(), kRows, cols}, 0, kRows, widened.data());
      Matmul(x.data(), widened.data(), c.data(), kN, cols, kRows);
      EXPECT_EQ(0, std::memcmp(a.data(), c.data(), sizeof(float) * a.size())) << "not Matmul on widened weights";
    }
    const std::string matmul = MatmulKernelName();
    const bool interleaved = IsQuantized(f) || name == "avx2";
    EXPECT_EQ(PreferredWeightLayout(f), interleaved ? WeightLayout::kInterleaved : WeightLayout::kRows);
    if (f == WeightFormat::kF32) {
      EXPECT_EQ(name, matmul);
    } else if (!IsQuantized(f)) {
      EXPECT_TRUE(name == matmul || name == "widen+" + matmul) << name << " for Matmul kernel " << matmul;
    } else if (matmul == "generic") {
      EXPECT_EQ(name, "generic");
    } else if (matmul == "avx2") {
      EXPECT_NE(name, "avx512-vnni");
    }
  }
}

constexpr WeightFormat kInterleavedFormats[] = {WeightFormat::kF32, WeightFormat::kQ8_0, WeightFormat::kQ4_0,
                                                WeightFormat::kQ4_K};

// A Q8_0, Q4_0 or Q4_K matrix in the kRows layout gives the interleaved layout's bits
// through every variant (the SIMD ones hand it to the portable kernel), and through
// MatmulWeights.
TEST(WeightMatmulLayoutTest, RowsLayoutGivesTheInterleavedBits) {
  constexpr int kN = 5, kRows = 21, kCols = 512;
  for (WeightFormat f : {WeightFormat::kQ8_0, WeightFormat::kQ4_0, WeightFormat::kQ4_K}) {
    SCOPED_TRACE(WeightFormatName(f));
    const auto x = Random(static_cast<size_t>(kN) * kCols, 110);
    const auto w = MakeWeights(f, kRows, kCols, 111, /*raw=*/true);
    const LaidOut laid_out = LayOut(f, w.data(), kRows, kCols, WeightLayout::kInterleaved);
    std::vector<float> expected(static_cast<size_t>(kN) * kRows), y(expected.size());
    MatmulWeights(x.data(), laid_out.view, expected.data(), kN);
    MatmulWeights(x.data(), WeightView{f, w.data(), kRows, kCols}, y.data(), kN);
    EXPECT_EQ(0, std::memcmp(expected.data(), y.data(), sizeof(float) * y.size())) << "MatmulWeights";
    for (const char* name : WeightKernelNames(f)) {
      const WeightKernel k = FindWeightKernel(f, name);
      if (k.fn == nullptr) continue;
      std::fill(y.begin(), y.end(), 0.0f);
      MatmulWeightsWithKernel(k, x.data(), WeightView{f, w.data(), kRows, kCols}, y.data(), kN, false);
      EXPECT_EQ(0, std::memcmp(expected.data(), y.data(), sizeof(float) * y.size())) << name;
    }
  }
}

// An fp32, fp16 or bf16 matrix gives the same bits in either layout through every
// variant (the "avx2" ones read the interleaved groups as their panels, the others a
// copy of the rows), for shapes with partial chunks, partial groups, several row tiles
// and thread counts.
TEST(WeightMatmulLayoutTest, FloatLayoutsGiveTheSameBits) {
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16}) {
    for (int cols : {1, 15, 100, 768, 1500}) {
      for (int rows : {1, 16, 21, 40}) {
        for (int n : {1, 5, 13, 40}) {
          SCOPED_TRACE(std::string(WeightFormatName(f)) + " cols=" + std::to_string(cols) +
                       " rows=" + std::to_string(rows) + " n=" + std::to_string(n));
          const auto x = Random(static_cast<size_t>(n) * cols, 130 + n);
          const auto w = MakeWeights(f, rows, cols, 131 + rows + cols, /*raw=*/false);
          const LaidOut interleaved = LayOut(f, w.data(), rows, cols, WeightLayout::kInterleaved);
          const auto y0 = Random(static_cast<size_t>(n) * rows, 132);
          for (const char* name : WeightKernelNames(f)) {
            const WeightKernel k = FindWeightKernel(f, name);
            if (k.fn == nullptr) continue;
            for (bool accumulate : {false, true}) {
              auto expected = y0;
              MatmulWeightsWithKernel(k, x.data(), WeightView{f, w.data(), rows, cols}, expected.data(), n, accumulate);
              for (int n_threads : {1, 2, 3}) {
                ThreadCountScope threads(n_threads);
                auto y = y0;
                MatmulWeightsWithKernel(k, x.data(), interleaved.view, y.data(), n, accumulate);
                ASSERT_EQ(0, std::memcmp(expected.data(), y.data(), sizeof(float) * y.size()))
                    << name << (accumulate ? " accumulate" : "") << ", " << n_threads << " threads";
              }
            }
          }
        }
      }
    }
  }
}

// The interleaved layout keeps every field of every block: each row read back is its
// GGUF bytes (random blocks: every scale, min and nibble pattern), DequantizeWeightRows
// gives the same values from both layouts, and the padding rows are zero bytes.
TEST(WeightMatmulLayoutTest, InterleavingKeepsEveryByte) {
  for (WeightFormat f : kAllFormats) {
    EXPECT_TRUE(HasInterleavedLayout(f));
    const bool floats = !IsQuantized(f);
    for (int rows : {1, 15, 16, 17, 50}) {
      for (int cols : floats ? std::vector<int>{1, 100, 768} : std::vector<int>{256, 768}) {
        SCOPED_TRACE(std::string(WeightFormatName(f)) + " rows=" + std::to_string(rows) +
                     " cols=" + std::to_string(cols));
        const auto w = MakeWeights(f, rows, cols, 120 + rows + cols, /*raw=*/true);
        const LaidOut laid_out = LayOut(f, w.data(), rows, cols, WeightLayout::kInterleaved);
        const int64_t groups = (rows + kInterleaveRows - 1) / kInterleaveRows;
        // Bytes per row and block: the float formats' blocks are 16 values, the last one
        // zero-padded.
        const int64_t group_row_bytes = floats                     ? 16 * WeightBlockBytes(f)
                                        : f == WeightFormat::kQ4_K ? 148
                                                                   : WeightBlockBytes(f);
        const int64_t blocks = floats ? (cols + 15) / 16 : cols / WeightBlockValues(f);
        ASSERT_EQ(laid_out.interleaved.size(),
                  static_cast<size_t>(groups * kInterleaveRows * blocks * group_row_bytes));
        const int64_t row_bytes = WeightRowBytes(f, cols);
        std::vector<uint8_t> back(static_cast<size_t>(row_bytes));
        for (int o = 0; o < rows; ++o) {
          internal::ExtractInterleavedRow(f, laid_out.interleaved.data(), cols, o, back.data());
          ASSERT_EQ(0, std::memcmp(back.data(), w.data() + o * row_bytes, back.size())) << "row " << o;
        }
        const std::vector<uint8_t> zero_row(static_cast<size_t>(row_bytes), 0);
        for (int o = rows; o < groups * kInterleaveRows; ++o) {
          internal::ExtractInterleavedRow(f, laid_out.interleaved.data(), cols, o, back.data());
          ASSERT_EQ(back, zero_row) << "padding row " << o;
        }
        std::vector<float> from_rows(static_cast<size_t>(rows) * cols), from_groups(from_rows.size());
        DequantizeWeightRows(WeightView{f, w.data(), rows, cols}, 0, rows, from_rows.data());
        DequantizeWeightRows(laid_out.view, 0, rows, from_groups.data());
        ASSERT_EQ(0, std::memcmp(from_rows.data(), from_groups.data(), sizeof(float) * from_rows.size()));
        if (rows > 2) {  // a single row from the middle, as an embedding lookup reads it
          std::vector<float> one(cols);
          DequantizeWeightRows(laid_out.view, rows / 2, 1, one.data());
          ASSERT_EQ(0, std::memcmp(one.data(), from_rows.data() + static_cast<size_t>(rows / 2) * cols,
                                   sizeof(float) * cols));
        }
      }
    }
  }
}

}  // namespace
}  // namespace flover::cpu
