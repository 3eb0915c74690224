// Matmul: every kernel this CPU can run (portable, AVX2, AVX-512) against a double-
// precision reference, plus the properties the engine relies on: batch invariance (a row's
// bits do not depend on n, its neighbours or the thread count), accumulate mode, n = 0.
#include "kernels/cpu/matmul.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul_internal.h"

#include "tests/kernels/random_values.h"

namespace flover::cpu {
namespace {

using internal::FindMatmulKernel;
using internal::MatmulKernel;
using internal::MatmulWithKernel;

using testing::Random;

// Restores the OpenMP thread count a test changed.
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ScopedOmpThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

// Checks y (computed with y0 as the initial value when accumulating) against a double
// reference. Each element may be off by a few roundings per term of its canonical sum:
// ceil(in/16) fused (or, for the portable kernel, unfused: two) roundings per lane, four
// for the lane tree and one for the final add, each relative to sum |x_k w_k| + |y0|.
void ExpectNearReference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& y0,
                         const std::vector<float>& y, int n, int in, int out, bool accumulate) {
  const double rounding_steps = 2.0 * ((in + 15) / 16) + 6.0;
  for (int r = 0; r < n; ++r) {
    for (int o = 0; o < out; ++o) {
      double ref = accumulate ? y0[static_cast<size_t>(r) * out + o] : 0.0;
      double magnitude = std::fabs(ref);
      for (int k = 0; k < in; ++k) {
        const double p = static_cast<double>(x[static_cast<size_t>(r) * in + k]) * w[static_cast<size_t>(o) * in + k];
        ref += p;
        magnitude += std::fabs(p);
      }
      const double got = y[static_cast<size_t>(r) * out + o];
      ASSERT_LE(std::fabs(got - ref), rounding_steps * FLT_EPSILON * magnitude)
          << "r=" << r << " o=" << o << " n=" << n << " in=" << in << " out=" << out << " got=" << got
          << " ref=" << ref;
    }
  }
}

// y rows [row, row + count) must hold exactly the bits of `expected` rows.
void ExpectRowsBitwise(const float* y, const std::vector<float>& expected, int row, int count, int out,
                       const std::string& what) {
  for (int r = 0; r < count; ++r) {
    ASSERT_EQ(0, std::memcmp(y + static_cast<size_t>(r) * out, &expected[static_cast<size_t>(row + r) * out],
                             sizeof(float) * out))
        << what << ": row " << (row + r) << " differs";
  }
}

class MatmulKernelTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    kernel_ = FindMatmulKernel(GetParam());
    if (kernel_.fn == nullptr) GTEST_SKIP() << "this CPU cannot run the " << GetParam() << " kernel";
  }
  void Run(const std::vector<float>& x, const std::vector<float>& w, std::vector<float>& y, int n, int in, int out,
           bool accumulate = false) const {
    MatmulWithKernel(kernel_, x.data(), w.data(), y.data(), n, in, out, accumulate);
  }
  MatmulKernel kernel_;
};

TEST_P(MatmulKernelTest, MatchesReferenceOnOddShapes) {
  for (int in : {1, 15, 16, 17, 172, 768}) {
    for (int out : {1, 3, 7, 64, 172}) {
      for (int n : {1, 2, 5, 9}) {
        for (bool accumulate : {false, true}) {
          const auto x = Random(static_cast<size_t>(n) * in, 1 + in);
          const auto w = Random(static_cast<size_t>(out) * in, 2 + out);
          const auto y0 = Random(static_cast<size_t>(n) * out, 3 + n);
          auto y = y0;
          Run(x, w, y, n, in, out, accumulate);
          ExpectNearReference(x, w, y0, y, n, in, out, accumulate);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_P(MatmulKernelTest, MatchesReferenceOnModelShapes) {
  // stories260K's dims (64, 172) and stories110M's (768, 2048), with enough work to run
  // on several threads.
  const int shapes[][3] = {{7, 64, 172}, {3, 172, 64}, {19, 768, 2048}, {4, 2048, 768}, {1, 768, 3000}};
  for (const auto& s : shapes) {
    const int n = s[0], in = s[1], out = s[2];
    const auto x = Random(static_cast<size_t>(n) * in, 10);
    const auto w = Random(static_cast<size_t>(out) * in, 11);
    std::vector<float> y(static_cast<size_t>(n) * out);
    Run(x, w, y, n, in, out);
    ExpectNearReference(x, w, y, y, n, in, out, false);
  }
}

TEST_P(MatmulKernelTest, RowsAreBatchInvariant) {
  // in = 4099 makes the kernels split rows into several cache blocks; in = 300 has a
  // partial last chunk of k; out = 100 leaves partial tiles; with in = 2048 batches of
  // more than one row are first copied to padded rows, a single row is not; a single row
  // with in = 64 or 141 takes the kernels' path for a few dot products.
  const int shapes[][2] = {{300, 100}, {4099, 13}, {768, 64}, {2048, 20}, {64, 40}, {141, 29}};
  constexpr int kN = 37;
  for (const auto& s : shapes) {
    const int in = s[0], out = s[1];
    SCOPED_TRACE("in=" + std::to_string(in) + " out=" + std::to_string(out));
    const auto x = Random(static_cast<size_t>(kN) * in, 20);
    const auto w = Random(static_cast<size_t>(out) * in, 21);
    std::vector<float> full(static_cast<size_t>(kN) * out);
    Run(x, w, full, kN, in, out);

    // Each row alone.
    std::vector<float> y(out);
    for (int r = 0; r < kN; ++r) {
      std::vector<float> xr(x.begin() + static_cast<long>(r) * in, x.begin() + static_cast<long>(r + 1) * in);
      Run(xr, w, y, 1, in, out);
      ExpectRowsBitwise(y.data(), full, r, 1, out, "n=1");
    }
    // Sub-batches of several sizes, walking through the rows at shifting offsets.
    for (int size : {2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 33}) {
      for (int start = 0; start + size <= kN; start += size + 1) {
        std::vector<float> xs(x.begin() + static_cast<long>(start) * in,
                              x.begin() + static_cast<long>(start + size) * in);
        std::vector<float> ys(static_cast<size_t>(size) * out);
        Run(xs, w, ys, size, in, out);
        ExpectRowsBitwise(ys.data(), full, start, size, out, "sub-batch of " + std::to_string(size));
      }
    }
    // The same row among different neighbours.
    auto other = Random(static_cast<size_t>(kN) * in, 22);
    const int kRow = 17;
    std::copy(x.begin() + static_cast<long>(kRow) * in, x.begin() + static_cast<long>(kRow + 1) * in,
              other.begin() + static_cast<long>(kRow) * in);
    std::vector<float> y_other(static_cast<size_t>(kN) * out);
    Run(other, w, y_other, kN, in, out);
    ExpectRowsBitwise(y_other.data() + static_cast<size_t>(kRow) * out, full, kRow, 1, out, "other neighbours");
    if (HasFatalFailure()) return;
  }
}

TEST_P(MatmulKernelTest, LongBatchesOfLongRowsAreBatchInvariant) {
  // 260 rows of 4099: AVX2's panels take them in three blocks of regrouped rows.
  constexpr int kN = 260, kIn = 4099, kOut = 21;
  const auto x = Random(static_cast<size_t>(kN) * kIn, 23);
  const auto w = Random(static_cast<size_t>(kOut) * kIn, 24);
  std::vector<float> full(static_cast<size_t>(kN) * kOut);
  Run(x, w, full, kN, kIn, kOut);
  ExpectNearReference(x, w, full, full, kN, kIn, kOut, false);
  for (int r = 0; r < kN; r += 7) {
    std::vector<float> xr(x.begin() + static_cast<long>(r) * kIn, x.begin() + static_cast<long>(r + 1) * kIn);
    std::vector<float> y(kOut);
    Run(xr, w, y, 1, kIn, kOut);
    ExpectRowsBitwise(y.data(), full, r, 1, kOut, "n=1");
    if (HasFatalFailure()) return;
  }
}

TEST_P(MatmulKernelTest, ResultDoesNotDependOnThreadCount) {
  constexpr int kN = 37, kIn = 300, kOut = 250;
  const auto x = Random(static_cast<size_t>(kN) * kIn, 30);
  const auto w = Random(static_cast<size_t>(kOut) * kIn, 31);
  std::vector<float> one(static_cast<size_t>(kN) * kOut);
  {
    ScopedOmpThreads threads(1);
    Run(x, w, one, kN, kIn, kOut);
  }
  for (int n_threads : {2, 3, 5}) {
    ScopedOmpThreads threads(n_threads);
    std::vector<float> many(one.size());
    Run(x, w, many, kN, kIn, kOut);
    ASSERT_EQ(0, std::memcmp(one.data(), many.data(), sizeof(float) * one.size())) << n_threads << " threads";
  }
}

TEST_P(MatmulKernelTest, AccumulateAddsTheFinishedDotProduct) {
  // y += x·wᵀ must be exactly y0 + (x·wᵀ): the dot product is finished first, then added.
  constexpr int kN = 6, kIn = 172, kOut = 64;
  const auto x = Random(static_cast<size_t>(kN) * kIn, 40);
  const auto w = Random(static_cast<size_t>(kOut) * kIn, 41);
  const auto y0 = Random(static_cast<size_t>(kN) * kOut, 42);
  std::vector<float> plain(y0.size());
  Run(x, w, plain, kN, kIn, kOut);
  auto y = y0;
  Run(x, w, y, kN, kIn, kOut, /*accumulate=*/true);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], y0[i] + plain[i]) << "element " << i;
}

TEST_P(MatmulKernelTest, ZeroRowsIsANoOp) {
  const auto w = Random(3 * 17, 50);
  const std::vector<float> x(17, 1.0f);
  std::vector<float> y(3, 42.0f);
  Run(x, w, y, 0, 17, 3);
  Run(x, w, y, 0, 17, 3, /*accumulate=*/true);
  EXPECT_EQ(y, std::vector<float>(3, 42.0f));
}

INSTANTIATE_TEST_SUITE_P(Kernels, MatmulKernelTest, ::testing::Values("generic", "avx2", "avx512"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

TEST(MatmulTest, Avx2AndAvx512GiveTheSameBits) {
  const MatmulKernel avx2 = FindMatmulKernel("avx2"), avx512 = FindMatmulKernel("avx512");
  if (avx2.fn == nullptr || avx512.fn == nullptr) GTEST_SKIP() << "needs a CPU with AVX-512";
  // in = 1500 and 4099 (with a partial last chunk) run AVX2's k-blocked driver; one x
  // row with in <= 141 the kernels' path for a few dot products (attention's scores);
  // 40 rows AVX2's panels (two of them, the second partial).
  for (int n : {1, 11, 40}) {
    for (int in : {1, 9, 16, 24, 64, 141, 172, 768, 1500, 4099}) {
      constexpr int kOut = 29;
      const auto x = Random(static_cast<size_t>(n) * in, 60);
      const auto w = Random(static_cast<size_t>(kOut) * in, 61);
      const auto y0 = Random(static_cast<size_t>(n) * kOut, 62);
      for (bool accumulate : {false, true}) {
        auto a = y0, b = y0;
        MatmulWithKernel(avx2, x.data(), w.data(), a.data(), n, in, kOut, accumulate);
        MatmulWithKernel(avx512, x.data(), w.data(), b.data(), n, in, kOut, accumulate);
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * a.size())) << "n=" << n << " in=" << in;
      }
    }
  }
}

TEST(MatmulTest, DispatchesToANamedKernel) {
  const std::string name = MatmulKernelName();
  const MatmulKernel kernel = FindMatmulKernel(name.c_str());
  ASSERT_NE(kernel.fn, nullptr) << name;
  if (const char* forced = std::getenv("FLOVER_MATMUL_KERNEL"); forced == nullptr || *forced == '\0') {
    // Unforced, the widest kernel the CPU supports is chosen.
    const char* best = FindMatmulKernel("avx512").fn ? "avx512" : FindMatmulKernel("avx2").fn ? "avx2" : "generic";
    EXPECT_EQ(name, best);
  }
  constexpr int kN = 3, kIn = 40, kOut = 5;
  const auto x = Random(kN * kIn, 70);
  const auto w = Random(kOut * kIn, 71);
  std::vector<float> a(kN * kOut), b(kN * kOut);
  Matmul(x.data(), w.data(), a.data(), kN, kIn, kOut);
  MatmulWithKernel(kernel, x.data(), w.data(), b.data(), kN, kIn, kOut, false);
  EXPECT_EQ(a, b);
}

// Rows a multiple of 4 KiB apart are copied with a cache line of padding each, into a
// buffer that starts on a cache line (so every row does); other rows are used in place.
TEST(MatmulTest, UnaliasedRowsAreCopiedOntoCacheLines) {
  for (int n : {2, 5, 64}) {
    const auto x = Random(n * 2048, 72);
    int stride = 0;
    const float* rows = internal::UnaliasedRows(x.data(), n, 2048, &stride);
    EXPECT_EQ(stride, 2048 + 16);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(rows) % 64, 0u) << n << " rows";
    for (int r = 0; r < n; ++r) EXPECT_EQ(std::memcmp(rows + r * stride, x.data() + r * 2048, 2048 * 4), 0);
  }
  const auto y = Random(3 * 768, 73);
  int stride = 0;
  EXPECT_EQ(internal::UnaliasedRows(y.data(), 3, 768, &stride), y.data());
  EXPECT_EQ(stride, 768);
}

}  // namespace
}  // namespace flover::cpu
