// The weight formats' conversions (kernels/cpu/weight_matmul.h, float16.h): fp16/bf16
// rounding against references built from the value tables (and against F16C where the
// CPU has it); quantize -> dequantize error bounds per format; dequantization and the
// Q8_0/Q4_0 quantizers equal gguf-py bit for bit (tests/fixtures/gguf_quant); sizes;
// hostile inputs.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/float16.h"
#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_matmul.h"
#include "tests/kernels/weight_reference.h"

namespace flover::cpu {
namespace {

using testing::ParseQ4K;
using testing::RefHalf;
using testing::RefQ4KBlock;

// ---- fp16 and bf16 ----

// Every finite non-negative half's value, in bit-pattern order (which is value order).
const std::vector<double>& HalfValues() {
  static const std::vector<double> values = [] {
    std::vector<double> v;
    for (uint32_t h = 0; h < 0x7C00; ++h) v.push_back(RefHalf(static_cast<uint16_t>(h)));
    return v;
  }();
  return values;
}

// Round to nearest even by search in the value table: the half nearest to f, ties to the
// even bit pattern, at least 65520 (halfway from 65504 to the next power 65536) to inf.
uint16_t ReferenceFloatToHalf(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | 0x7C00;
  const std::vector<double>& v = HalfValues();
  const size_t hi = std::lower_bound(v.begin(), v.end(), a) - v.begin();  // v[hi] >= a
  if (hi == v.size()) return sign | static_cast<uint16_t>(hi - 1);         // [65504, 65520)
  if (hi == 0 || v[hi] == a) return sign | static_cast<uint16_t>(hi);
  const size_t lo = hi - 1;
  const double dlo = a - v[lo], dhi = v[hi] - a;
  const size_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
  return sign | static_cast<uint16_t>(pick);
}

// Round to nearest even by comparing the two bf16 neighbours of f (the truncation and the
// next value away from zero, 2^128 standing for inf).
uint16_t ReferenceFloatToBf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint32_t lo = bits & 0xFFFF0000u, hi = lo + 0x10000u;
  const double a = std::fabs(static_cast<double>(f));
  const double vlo = std::fabs(static_cast<double>(std::bit_cast<float>(lo)));
  const double vhi = (hi & 0x7FFFFFFFu) == 0x7F800000u ? std::ldexp(1.0, 128)
                                                        : std::fabs(static_cast<double>(std::bit_cast<float>(hi)));
  const double dlo = a - vlo, dhi = vhi - a;
  const uint32_t pick = dlo < dhi ? lo : dhi < dlo ? hi : ((lo >> 16) % 2 == 0 ? lo : hi);
  return static_cast<uint16_t>(pick >> 16);
}

// Bit patterns to convert: the edges of each range and random ones of every kind.
std::vector<uint32_t> FloatPatterns() {
  std::vector<uint32_t> p = {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7F7FFFFFu, 0x00000001u,
                             0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0x477FF001u, 0x47800000u, 0x38800000u,
                             0x387FFFFFu, 0x33000000u, 0x33000001u, 0x33800000u, 0x337FFFFFu, 0x3F800000u,
                             0x3F801000u, 0x3F803000u, 0x3F800FFFu, 0x3F808000u, 0x3F818000u, 0x3F7FFFFFu};
  std::mt19937 rng(5);
  for (int i = 0; i < 400000; ++i) p.push_back(static_cast<uint32_t>(rng()));
  // Values near the fp16 range, where the rounding cases are.
  for (int i = 0; i < 400000; ++i) p.push_back(0x30000000u + static_cast<uint32_t>(rng() % 0x18000000u));
  return p;
}

TEST(Float16Test, HalfToFloatMatchesTheDefinition) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float got = HalfToFloat(static_cast<uint16_t>(h)), want = RefHalf(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want)) << std::hex << h;
  }
}

TEST(Float16Test, FloatToHalfRoundsToNearestEven) {
  for (uint32_t bits : FloatPatterns()) {
    const float f = std::bit_cast<float>(bits);
    const uint16_t got = FloatToHalf(f);
    if (std::isnan(f)) {
      // Quiet, same sign, top payload bits.
      ASSERT_EQ(got, static_cast<uint16_t>(((bits >> 16) & 0x8000u) | 0x7E00u | ((bits >> 13) & 0x3FFu))) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(got, ReferenceFloatToHalf(f)) << std::hex << bits << " = " << f;
  }
  // Every half survives the round trip (NaNs become quiet).
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), nan ? (h | 0x200) : h) << std::hex << h;
  }
}

__attribute__((target("f16c"))) uint16_t HardwareFloatToHalf(float f) {
  return static_cast<uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}

TEST(Float16Test, FloatToHalfEqualsF16c) {
  if (!CpuHasF16c()) GTEST_SKIP() << "this CPU lacks F16C";
  for (uint32_t bits : FloatPatterns()) {
    const float f = std::bit_cast<float>(bits);
    ASSERT_EQ(FloatToHalf(f), HardwareFloatToHalf(f)) << std::hex << bits;
  }
}

TEST(Float16Test, FloatToBf16RoundsToNearestEven) {
  for (uint32_t bits : FloatPatterns()) {
    const float f = std::bit_cast<float>(bits);
    const uint16_t got = FloatToBf16(f);
    if (std::isnan(f)) {
      ASSERT_EQ(got, static_cast<uint16_t>((bits >> 16) | 0x40u)) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(got, ReferenceFloatToBf16(f)) << std::hex << bits << " = " << f;
  }
  for (uint32_t b = 0; b <= 0xFFFF; ++b) {
    const bool nan = (b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0;
    ASSERT_EQ(FloatToBf16(Bf16ToFloat(static_cast<uint16_t>(b))), nan ? (b | 0x40) : b) << std::hex << b;
  }
}

TEST(Float16Test, ConvertHalfToFloatFromUnalignedBytes) {
  std::vector<uint8_t> bytes(1 + 2 * 1000);
  std::mt19937 rng(9);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  std::vector<float> y(1000);
  ConvertHalfToFloat(bytes.data() + 1, y.data(), y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    const uint16_t h = testing::U16At(&bytes[1 + 2 * i]);
    ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(HalfToFloat(h))) << i;
  }
}

// ---- sizes ----

TEST(WeightFormatTest, NamesAndSizes) {
  struct Row {
    WeightFormat f;
    const char* name;
    int values, bytes;
  };
  for (const Row& r : {Row{WeightFormat::kF32, "fp32", 1, 4}, Row{WeightFormat::kF16, "fp16", 1, 2},
                       Row{WeightFormat::kBF16, "bf16", 1, 2}, Row{WeightFormat::kQ8_0, "q8_0", 32, 34},
                       Row{WeightFormat::kQ4_0, "q4_0", 32, 18}, Row{WeightFormat::kQ4_K, "q4_k", 256, 144}}) {
    EXPECT_STREQ(WeightFormatName(r.f), r.name);
    EXPECT_EQ(WeightBlockValues(r.f), r.values) << r.name;
    EXPECT_EQ(WeightBlockBytes(r.f), r.bytes) << r.name;
    EXPECT_EQ(WeightRowBytes(r.f, 2048), int64_t{2048} / r.values * r.bytes) << r.name;
  }
  EXPECT_EQ(WeightRowBytes(WeightFormat::kQ4_K, int64_t{1} << 40), (int64_t{1} << 32) * 144);
}

TEST(WeightFormatDeathTest, RowBytesOfPartialBlocksAborts) {
  EXPECT_DEATH(WeightRowBytes(WeightFormat::kQ8_0, 48), "not whole blocks");
}

// ---- quantize -> dequantize ----

std::vector<float> RoundTrip(WeightFormat f, const std::vector<float>& x, int cols) {
  const int rows = static_cast<int>(x.size() / cols);
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * WeightRowBytes(f, cols));
  QuantizeWeightRows(f, x.data(), rows, cols, bytes.data());
  std::vector<float> back(x.size());
  DequantizeWeightRows(WeightView{f, bytes.data(), rows, cols}, 0, rows, back.data());
  return back;
}

// Gaussian values with a different scale per row (as weight rows have), a few outliers.
std::vector<float> WeightLike(int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    const float scale = std::ldexp(1.0f, -static_cast<int>(rng() % 12));
    for (int j = 0; j < cols; ++j) x[static_cast<size_t>(r) * cols + j] = normal(rng) * scale * (rng() % 97 == 0 ? 6.0f : 1.0f);
  }
  return x;
}

TEST(WeightRoundTripTest, Fp16AndBf16WithinHalfAnUlp) {
  const std::vector<float> x = WeightLike(16, 512, 1);
  const std::vector<float> h = RoundTrip(WeightFormat::kF16, x, 512), b = RoundTrip(WeightFormat::kBF16, x, 512);
  const std::vector<float> f = RoundTrip(WeightFormat::kF32, x, 512);
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = std::fabs(x[i]);
    // fp16: 11 significant bits for |x| >= 2^-14, absolute steps of 2^-24 below.
    ASSERT_LE(std::fabs(h[i] - x[i]), a >= std::ldexp(1.0, -14) ? std::ldexp(a, -11) : std::ldexp(1.0, -25)) << i;
    ASSERT_LE(std::fabs(b[i] - x[i]), std::ldexp(a, -8)) << i;  // bf16: 8 significant bits
    ASSERT_EQ(f[i], x[i]) << i;
  }
}

// Per block of 32, with the step d = amax / 127 (Q8_0) or amax / 8 (Q4_0) and e_d the
// error of d's rounding to fp16 (2^-11 d, or up to 2^-25 where d is an fp16 subnormal):
// Q8_0 is within d / 2 + 127 e_d, Q4_0 within d + 8 e_d (a value of the opposite sign
// as large as the largest is clipped from q = 16 to 15: one step). The RMS error is near
// that of uniform rounding, d / sqrt(12) = 0.29 d.
TEST(WeightRoundTripTest, Q8_0AndQ4_0WithinTheirSteps) {
  constexpr int kCols = 1024, kRows = 32;
  const std::vector<float> x = WeightLike(kRows, kCols, 2);
  for (WeightFormat f : {WeightFormat::kQ8_0, WeightFormat::kQ4_0}) {
    SCOPED_TRACE(WeightFormatName(f));
    const std::vector<float> back = RoundTrip(f, x, kCols);
    const double levels = f == WeightFormat::kQ8_0 ? 127.0 : 8.0, steps = f == WeightFormat::kQ8_0 ? 0.5 : 1.0;
    double sum_sq_steps = 0.0;
    for (size_t b = 0; b < x.size() / 32; ++b) {
      double amax = 0.0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(static_cast<double>(x[32 * b + j])));
      const double step = amax / levels;
      const double e_d = std::max(std::ldexp(step, -11), std::ldexp(1.0, -25));
      for (int j = 0; j < 32; ++j) {
        const double e = std::fabs(static_cast<double>(back[32 * b + j]) - x[32 * b + j]);
        ASSERT_LE(e, (steps + 1e-6) * step + levels * e_d) << "block " << b << " value " << j;
        sum_sq_steps += (e / step) * (e / step);
      }
    }
    EXPECT_LE(std::sqrt(sum_sq_steps / x.size()), 0.33) << "RMS error in steps (uniform rounding: 0.29)";
  }
}

// Q4_K per block of 256: every value within 1.5 steps of the block's coarsest sub-block
// (step = its value range / 15; the search may clip a sub-block's extremes by about a
// step to fit the rest better, and the 6-bit scales and mins move the grid by up to half
// a step of d and dmin), RMS over all values within 0.35 of the mean step of the
// sub-blocks (uniform rounding: 0.29).
TEST(WeightRoundTripTest, Q4_KWithinItsSteps) {
  constexpr int kCols = 1024, kRows = 32;
  const std::vector<float> x = WeightLike(kRows, kCols, 3);
  const std::vector<float> back = RoundTrip(WeightFormat::kQ4_K, x, kCols);
  double sum_sq = 0.0, sum_step_sq = 0.0;
  for (size_t b = 0; b < x.size() / 256; ++b) {
    double max_step = 0.0;
    for (int s = 0; s < 8; ++s) {
      const float* v = &x[256 * b + 32 * s];
      const double lo = std::min(0.0f, *std::min_element(v, v + 32)), hi = *std::max_element(v, v + 32);
      max_step = std::max(max_step, (hi - lo) / 15.0);
      sum_step_sq += 32 * ((hi - lo) / 15.0) * ((hi - lo) / 15.0);
    }
    for (int j = 0; j < 256; ++j) {
      const double e = std::fabs(static_cast<double>(back[256 * b + j]) - x[256 * b + j]);
      ASSERT_LE(e, 1.5 * max_step) << "block " << b << " value " << j;
      sum_sq += e * e;
    }
  }
  EXPECT_LE(std::sqrt(sum_sq / sum_step_sq), 0.35) << "RMS error relative to the sub-blocks' steps";
}

// The quantizer's 6-bit scales and mins, read back by the test's own parser, give the
// kernels' dequantization (gguf-py's arithmetic: (d * scale) * q - dmin * min, in fp32).
TEST(WeightRoundTripTest, Q4_KPackingReadsBack) {
  const std::vector<float> x = WeightLike(4, 512, 4);
  std::vector<uint8_t> bytes(4 * WeightRowBytes(WeightFormat::kQ4_K, 512));
  QuantizeWeightRows(WeightFormat::kQ4_K, x.data(), 4, 512, bytes.data());
  std::vector<float> back(x.size());
  DequantizeWeightRows(WeightView{WeightFormat::kQ4_K, bytes.data(), 4, 512}, 0, 4, back.data());
  int n_nonzero_scales = 0;
  for (size_t b = 0; b < bytes.size() / 144; ++b) {
    const RefQ4KBlock k = ParseQ4K(&bytes[144 * b]);
    for (int j = 0; j < 256; ++j) {
      const float want = (k.d * static_cast<float>(k.scale[j / 32])) * static_cast<float>(k.q[j]) -
                         k.dmin * static_cast<float>(k.min[j / 32]);
      ASSERT_EQ(std::bit_cast<uint32_t>(back[256 * b + j]), std::bit_cast<uint32_t>(want)) << b << " " << j;
    }
    for (int s = 0; s < 8; ++s) n_nonzero_scales += k.scale[s] > 0;
    EXPECT_EQ(*std::max_element(k.scale, k.scale + 8), 63) << "the largest scale uses the full 6 bits";
  }
  EXPECT_GT(n_nonzero_scales, 8 * static_cast<int>(bytes.size() / 144) / 2);
}

// One block built by hand: sub-block 5 has scale 37 and min 50, which take their high
// bits from bytes 1 and 5 and their low bits from byte 9.
TEST(WeightRoundTripTest, Q4_KScaleMinUnpacking) {
  uint8_t packed[12] = {};
  packed[1] = (37 >> 4) << 6;
  packed[5] = (50 >> 4) << 6;
  packed[9] = (37 & 0x0F) | ((50 & 0x0F) << 4);
  packed[0] = 3;
  packed[4] = 7;
  int scale, min;
  UnpackQ4KScaleMin(packed, 5, &scale, &min);
  EXPECT_EQ(scale, 37);
  EXPECT_EQ(min, 50);
  UnpackQ4KScaleMin(packed, 0, &scale, &min);
  EXPECT_EQ(scale, 3);
  EXPECT_EQ(min, 7);
  UnpackQ4KScaleMin(packed, 1, &scale, &min);
  EXPECT_EQ(scale, 0);  // the top bits of byte 1 belong to sub-block 5
  EXPECT_EQ(min, 0);
}

// The word-at-a-time unpacking the SIMD kernels use gives UnpackQ4KScaleMin's values for
// every sub-block, on 4096 random 12-byte groups (the first 256 also carry each byte
// value 0-255 at one position).
TEST(WeightRoundTripTest, Q4_KScaleMinWordsMatchUnpacking) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 4096; ++trial) {
    uint8_t packed[12];
    for (uint8_t& b : packed) b = static_cast<uint8_t>(rng());
    if (trial < 256) packed[trial % 12] = static_cast<uint8_t>(trial);
    const Q4KScaleMinWords w = UnpackQ4KScaleMinWords(packed);
    const uint32_t words[4] = {w.scales_lo, w.scales_hi, w.mins_lo, w.mins_hi};
    for (int s = 0; s < 8; ++s) {
      int scale, min;
      UnpackQ4KScaleMin(packed, s, &scale, &min);
      ASSERT_EQ(static_cast<int>((words[s / 4] >> (8 * (s % 4))) & 0xFF), scale) << "sub-block " << s;
      ASSERT_EQ(static_cast<int>((words[2 + s / 4] >> (8 * (s % 4))) & 0xFF), min) << "sub-block " << s;
    }
  }
}

TEST(WeightRoundTripTest, DequantizeRowRangesOnly) {
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16, WeightFormat::kQ8_0,
                         WeightFormat::kQ4_0, WeightFormat::kQ4_K}) {
    SCOPED_TRACE(WeightFormatName(f));
    constexpr int kRows = 7, kCols = 512;
    const std::vector<uint8_t> bytes = testing::RandomBlocks(f, kRows, kCols, 7);  // every bit random for floats
    std::vector<float> all(kRows * kCols);
    DequantizeWeightRows(WeightView{f, bytes.data(), kRows, kCols}, 0, kRows, all.data());
    std::vector<float> part(3 * kCols + 1, -7.0f);
    DequantizeWeightRows(WeightView{f, bytes.data(), kRows, kCols}, 2, 3, part.data());
    EXPECT_EQ(0, std::memcmp(part.data(), all.data() + 2 * kCols, sizeof(float) * 3 * kCols));
    EXPECT_EQ(part.back(), -7.0f) << "wrote past the rows";
  }
}

// Non-finite inputs quantize without crashing: NaNs become 0, an inf makes a Q8_0/Q4_0
// block's scale inf, Q4_K's scales stay finite.
TEST(WeightRoundTripTest, HostileValuesQuantize) {
  std::vector<float> x = WeightLike(1, 512, 5);
  x[3] = std::nanf("");
  x[40] = INFINITY;
  x[300] = -std::numeric_limits<float>::max();
  for (int j = 64; j < 96; ++j) x[j] = std::nanf("");
  for (WeightFormat f : {WeightFormat::kF16, WeightFormat::kBF16, WeightFormat::kQ8_0, WeightFormat::kQ4_0,
                         WeightFormat::kQ4_K}) {
    SCOPED_TRACE(WeightFormatName(f));
    const std::vector<float> back = RoundTrip(f, x, 512);
    if (f == WeightFormat::kQ8_0 || f == WeightFormat::kQ4_0) {
      EXPECT_TRUE(std::isfinite(back[3])) << "a NaN in a finite block becomes 0 times d";
      EXPECT_TRUE(std::isnan(back[41])) << "the inf's block has an inf scale";
      for (int j = 64; j < 96; ++j) EXPECT_EQ(back[j], 0.0f) << j;
    }
    if (f == WeightFormat::kQ4_K) {
      std::vector<uint8_t> bytes(WeightRowBytes(f, 512));
      QuantizeWeightRows(f, x.data(), 1, 512, bytes.data());
      for (int b = 0; b < 2; ++b) {
        EXPECT_TRUE(std::isfinite(RefHalf(testing::U16At(&bytes[144 * b])))) << b;
        EXPECT_TRUE(std::isfinite(RefHalf(testing::U16At(&bytes[144 * b + 2])))) << b;
      }
    }
  }
}

// ---- gguf-py's bytes and values ----

std::string Fixture(const std::string& name) { return std::string(FLOVER_FIXTURES_DIR) + "/gguf_quant/" + name; }

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot read " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<float> ReadFloats(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadBytes(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

nlohmann::json Manifest() {
  const std::vector<uint8_t> bytes = ReadBytes(Fixture("manifest.json"));
  return nlohmann::json::parse(bytes.begin(), bytes.end());
}

bool FormatOfGgmlType(const std::string& type, WeightFormat* f) {
  if (type == "BF16") *f = WeightFormat::kBF16;
  else if (type == "Q8_0") *f = WeightFormat::kQ8_0;
  else if (type == "Q4_0") *f = WeightFormat::kQ4_0;
  else if (type == "Q4_K") *f = WeightFormat::kQ4_K;
  else return false;
  return true;
}

void ExpectSameBits(const std::vector<float>& expected, const std::vector<float>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  int n_diff = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::bit_cast<uint32_t>(expected[i]) != std::bit_cast<uint32_t>(actual[i]) && ++n_diff <= 5)
      ADD_FAILURE() << what << "[" << i << "] is " << actual[i] << ", gguf-py gives " << expected[i];
  }
  EXPECT_EQ(n_diff, 0) << what;
}

TEST(WeightGgufPyTest, DequantizationEqualsGgufPy) {
  int n_cases = 0;
  const nlohmann::json manifest = Manifest();
  for (const nlohmann::json& c : manifest.at("cases")) {
    WeightFormat f;
    if (c.contains("input") || !FormatOfGgmlType(c.at("type"), &f)) continue;
    const std::string name = c.at("name");
    const std::vector<uint8_t> blocks = ReadBytes(Fixture(c.at("blocks")));
    const std::vector<float> expected = ReadFloats(Fixture(c.at("values")));
    const int n = c.at("n_values");
    // As one row, and as rows of 256 values.
    for (int cols : {n, 256}) {
      ASSERT_EQ(n % cols, 0);
      const WeightView w{f, blocks.data(), n / cols, cols};
      ASSERT_EQ(blocks.size(), static_cast<size_t>(w.rows * WeightRowBytes(f, cols))) << name;
      std::vector<float> actual(n, std::nanf(""));
      DequantizeWeightRows(w, 0, w.rows, actual.data());
      ExpectSameBits(expected, actual, name + " as rows of " + std::to_string(cols));
    }
    ++n_cases;
  }
  EXPECT_EQ(n_cases, 4) << "bf16, q8_0, q4_0 and q4_k fixtures";
}

TEST(WeightGgufPyTest, Q8_0AndQ4_0QuantizersEqualGgufPy) {
  int n_cases = 0;
  const nlohmann::json manifest = Manifest();
  for (const nlohmann::json& c : manifest.at("cases")) {
    WeightFormat f;
    if (!c.contains("input") || !FormatOfGgmlType(c.at("type"), &f)) continue;
    const std::string name = c.at("name");
    const std::vector<float> input = ReadFloats(Fixture(c.at("input")));
    const std::vector<uint8_t> expected = ReadBytes(Fixture(c.at("blocks")));
    const int cols = WeightBlockValues(f) * 4;
    ASSERT_EQ(input.size() % cols, 0u) << name;
    const int rows = static_cast<int>(input.size() / cols);
    std::vector<uint8_t> actual(rows * WeightRowBytes(f, cols));
    QuantizeWeightRows(f, input.data(), rows, cols, actual.data());
    EXPECT_EQ(actual, expected) << name;
    std::vector<float> back(input.size());
    DequantizeWeightRows(WeightView{f, actual.data(), rows, cols}, 0, rows, back.data());
    ExpectSameBits(ReadFloats(Fixture(c.at("values"))), back, name + " read back");
    ++n_cases;
  }
  EXPECT_EQ(n_cases, 2) << "q8_0_quantize and q4_0_quantize fixtures";
}

}  // namespace
}  // namespace flover::cpu
