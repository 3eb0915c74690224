// PagedAttention and WriteKv against a naive attention over a contiguous cache, with
// shuffled, non-contiguous block tables. Unused cache slots hold NaN, so reading any
// slot outside the sequence's blocks poisons the result. fp16 and bf16 caches: equal
// bit for bit to the fp32 path on the widened values, in every instruction-set variant,
// and within a derived error bound of the fp32 cache.
#include "kernels/cpu/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/float16.h"
#include "kernels/cpu/weight_matmul_internal.h"
#include "tests/kernels/random_values.h"

namespace flover::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using testing::Random;

struct Shape {
  int n_heads, n_kv_heads, head_dim, block_size;
};

std::string Describe(const Shape& s) {
  return "heads=" + std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) +
         " head_dim=" + std::to_string(s.head_dim) + " block_size=" + std::to_string(s.block_size);
}

// The stored value of x in `dtype` (round to nearest even) and a stored value as fp32.
uint32_t Narrow(KvDType dtype, float x) {
  switch (dtype) {
    case KvDType::kF16: return FloatToHalf(x);
    case KvDType::kBF16: return FloatToBf16(x);
    case KvDType::kF32: break;
  }
  return std::bit_cast<uint32_t>(x);
}
float Widen(KvDType dtype, uint32_t bits) {
  switch (dtype) {
    case KvDType::kF16: return HalfToFloat(static_cast<uint16_t>(bits));
    case KvDType::kBF16: return Bf16ToFloat(static_cast<uint16_t>(bits));
    case KvDType::kF32: break;
  }
  return std::bit_cast<float>(bits);
}

// One sequence's cache of `dtype`: a pool of NaN-filled blocks, twice as many as needed,
// and a shuffled block table over them.
class PagedSequence {
 public:
  PagedSequence(const Shape& s, int max_tokens, std::mt19937& rng, KvDType dtype = KvDType::kF32)
      : shape_(s), dtype_(dtype) {
    const int n_needed = (max_tokens + s.block_size - 1) / s.block_size;
    const int n_blocks = 2 * n_needed + 1;
    pool_ = static_cast<size_t>(n_blocks) * s.n_kv_heads * s.block_size * s.head_dim;
    const size_t bytes = pool_ * KvDTypeBytes(dtype);
    k_.assign(bytes, 0);
    v_.assign(bytes, 0);
    for (size_t i = 0; i < pool_; ++i) {
      Set(k_, i, Narrow(dtype, kNaN));
      Set(v_, i, Narrow(dtype, kNaN));
    }
    std::vector<int> ids(n_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table_.assign(ids.begin(), ids.begin() + n_needed);
    layer_ = {k_.data(), v_.data(), n_blocks, s.block_size, s.n_kv_heads, s.head_dim, dtype};
  }
  const PagedKvLayer& layer() const { return layer_; }
  const int* table() const { return table_.data(); }
  // The stored bits of K or V of token `pos`, kv head `h`, value i: where the header
  // says they live.
  uint32_t k_bits(int pos, int h, int i) const { return Get(k_, Offset(pos, h) + i); }
  uint32_t v_bits(int pos, int h, int i) const { return Get(v_, Offset(pos, h) + i); }
  // The same widened to fp32: head_dim values.
  std::vector<float> k_at(int pos, int h) const { return Widened(k_, pos, h); }
  std::vector<float> v_at(int pos, int h) const { return Widened(v_, pos, h); }
  // A cache of fp32 holding this one's values widened, with the same block table.
  PagedSequence WidenedCopy() const {
    PagedSequence copy = *this;
    copy.dtype_ = KvDType::kF32;
    copy.k_.assign(pool_ * 4, 0);
    copy.v_.assign(pool_ * 4, 0);
    for (size_t i = 0; i < pool_; ++i) {
      copy.Set(copy.k_, i, std::bit_cast<uint32_t>(Widen(dtype_, Get(k_, i))));
      copy.Set(copy.v_, i, std::bit_cast<uint32_t>(Widen(dtype_, Get(v_, i))));
    }
    copy.layer_.k = copy.k_.data();
    copy.layer_.v = copy.v_.data();
    copy.layer_.dtype = KvDType::kF32;
    return copy;
  }

 private:
  size_t Offset(int pos, int h) const {
    const int block = table_[pos / shape_.block_size], slot = pos % shape_.block_size;
    return ((static_cast<size_t>(block) * shape_.n_kv_heads + h) * shape_.block_size + slot) * shape_.head_dim;
  }
  uint32_t Get(const std::vector<uint8_t>& pool, size_t i) const {
    uint32_t bits = 0;
    std::memcpy(&bits, pool.data() + i * KvDTypeBytes(dtype_), KvDTypeBytes(dtype_));  // little-endian
    return bits;
  }
  void Set(std::vector<uint8_t>& pool, size_t i, uint32_t bits) const {
    std::memcpy(pool.data() + i * KvDTypeBytes(dtype_), &bits, KvDTypeBytes(dtype_));
  }
  std::vector<float> Widened(const std::vector<uint8_t>& pool, int pos, int h) const {
    std::vector<float> out(shape_.head_dim);
    for (int i = 0; i < shape_.head_dim; ++i) out[i] = Widen(dtype_, Get(pool, Offset(pos, h) + i));
    return out;
  }

  Shape shape_;
  KvDType dtype_;
  size_t pool_ = 0;  // values in each of K and V
  std::vector<uint8_t> k_, v_;
  std::vector<int> table_;
  PagedKvLayer layer_;
};

// Naive causal attention in double over contiguous K/V ([pos][kv_head][head_dim]).
std::vector<double> NaiveAttention(const Shape& s, const std::vector<float>& k, const std::vector<float>& v,
                                   const float* q_row, int pos, int h) {
  const int kv_dim = s.n_kv_heads * s.head_dim, kv_h = h / (s.n_heads / s.n_kv_heads);
  std::vector<double> scores(pos + 1);
  for (int p = 0; p <= pos; ++p) {
    double dot = 0.0;
    for (int i = 0; i < s.head_dim; ++i) {
      dot +=
          static_cast<double>(q_row[h * s.head_dim + i]) * k[static_cast<size_t>(p) * kv_dim + kv_h * s.head_dim + i];
    }
    scores[p] = dot / std::sqrt(static_cast<double>(s.head_dim));
  }
  const double max_score = *std::max_element(scores.begin(), scores.end());
  double sum = 0.0;
  for (double& x : scores) sum += (x = std::exp(x - max_score));
  std::vector<double> out(s.head_dim, 0.0);
  for (int p = 0; p <= pos; ++p) {
    for (int i = 0; i < s.head_dim; ++i) {
      out[i] += scores[p] / sum * v[static_cast<size_t>(p) * kv_dim + kv_h * s.head_dim + i];
    }
  }
  return out;
}

// Writes positions [0, start_pos) in a few earlier steps, then the current chunk of
// n_tokens, runs PagedAttention over all heads and compares with the naive attention.
void CheckAttention(const Shape& s, int start_pos, int n_tokens, uint32_t seed) {
  SCOPED_TRACE(Describe(s) + " start_pos=" + std::to_string(start_pos) + " n_tokens=" + std::to_string(n_tokens));
  std::mt19937 rng(seed);
  const int total = start_pos + n_tokens;
  const int q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
  // Rows as the fused QKV GEMM writes them, with a few columns of padding.
  const int row_stride = q_dim + 2 * kv_dim + 3;
  const auto qkv = Random(static_cast<size_t>(total) * row_stride, rng);
  std::vector<float> k(static_cast<size_t>(total) * kv_dim), v(k.size());
  for (int p = 0; p < total; ++p) {
    std::copy_n(&qkv[static_cast<size_t>(p) * row_stride + q_dim], kv_dim, &k[static_cast<size_t>(p) * kv_dim]);
    std::copy_n(&qkv[static_cast<size_t>(p) * row_stride + q_dim + kv_dim], kv_dim,
                &v[static_cast<size_t>(p) * kv_dim]);
  }

  PagedSequence seq(s, total, rng);
  for (int p = 0; p < start_pos;) {  // earlier steps of uneven lengths
    const int chunk = std::min(start_pos - p, 1 + p % 5);
    const float* rows = &qkv[static_cast<size_t>(p) * row_stride];
    WriteKv(seq.layer(), seq.table(), p, chunk, rows + q_dim, rows + q_dim + kv_dim, row_stride);
    p += chunk;
  }
  const float* chunk_rows = &qkv[static_cast<size_t>(start_pos) * row_stride];
  WriteKv(seq.layer(), seq.table(), start_pos, n_tokens, chunk_rows + q_dim, chunk_rows + q_dim + kv_dim, row_stride);
  for (int p = 0; p < total; ++p) {
    for (int h = 0; h < s.n_kv_heads; ++h) {
      const std::vector<float> k_stored = seq.k_at(p, h), v_stored = seq.v_at(p, h);
      ASSERT_TRUE(std::equal(k_stored.begin(), k_stored.end(), &k[static_cast<size_t>(p) * kv_dim + h * s.head_dim]))
          << "K of position " << p << " head " << h;
      ASSERT_TRUE(std::equal(v_stored.begin(), v_stored.end(), &v[static_cast<size_t>(p) * kv_dim + h * s.head_dim]))
          << "V of position " << p << " head " << h;
    }
  }

  const int out_stride = q_dim + 2;
  std::vector<float> out(static_cast<size_t>(n_tokens) * out_stride, kNaN);
  PagedAttention(seq.layer(), seq.table(), start_pos, n_tokens, chunk_rows, row_stride, out.data(), out_stride,
                 s.n_heads, 0, s.n_heads);
  for (int t = 0; t < n_tokens; ++t) {
    for (int h = 0; h < s.n_heads; ++h) {
      const auto ref = NaiveAttention(s, k, v, chunk_rows + static_cast<size_t>(t) * row_stride, start_pos + t, h);
      for (int i = 0; i < s.head_dim; ++i) {
        ASSERT_NEAR(out[static_cast<size_t>(t) * out_stride + h * s.head_dim + i], ref[i], 1e-5)
            << "token " << t << " head " << h << " dim " << i;
      }
    }
    // Padding after the heads is not written.
    EXPECT_TRUE(std::isnan(out[static_cast<size_t>(t) * out_stride + q_dim]));
  }
}

class PagedAttentionTest : public ::testing::TestWithParam<Shape> {};

void CheckHeadRangesPartitionTheHeads(const Shape& s, KvDType dtype);

TEST_P(PagedAttentionTest, DecodeMatchesNaiveAttention) {
  for (int start_pos : {0, 1, 15, 16, 17, 40}) CheckAttention(GetParam(), start_pos, 1, 100 + start_pos);
}

TEST_P(PagedAttentionTest, PrefillChunkMatchesNaiveAttention) {
  CheckAttention(GetParam(), 0, 21, 1);   // whole prompt
  CheckAttention(GetParam(), 13, 20, 2);  // a later chunk that crosses block boundaries
  CheckAttention(GetParam(), 32, 5, 3);   // a chunk starting on a block boundary
}

TEST_P(PagedAttentionTest, HeadRangesPartitionTheHeads) {
  for (KvDType dtype : {KvDType::kF32, KvDType::kF16, KvDType::kBF16}) {
    SCOPED_TRACE(KvDTypeName(dtype));
    CheckHeadRangesPartitionTheHeads(GetParam(), dtype);
  }
}

void CheckHeadRangesPartitionTheHeads(const Shape& s, KvDType dtype) {
  std::mt19937 rng(7);
  constexpr int kStart = 9, kTokens = 4;
  const int q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
  PagedSequence seq(s, kStart + kTokens, rng, dtype);
  const auto k_rows = Random(static_cast<size_t>(kStart + kTokens) * kv_dim, rng);
  const auto v_rows = Random(k_rows.size(), rng);
  WriteKv(seq.layer(), seq.table(), 0, kStart + kTokens, k_rows.data(), v_rows.data(), kv_dim);
  const auto q = Random(static_cast<size_t>(kTokens) * q_dim, rng);

  std::vector<float> whole(static_cast<size_t>(kTokens) * q_dim, kNaN);
  PagedAttention(seq.layer(), seq.table(), kStart, kTokens, q.data(), q_dim, whole.data(), q_dim, s.n_heads, 0,
                 s.n_heads);
  std::vector<float> parts(whole.size(), kNaN);
  std::vector<int> cuts = {0, 1, s.n_heads / 2, s.n_heads};
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    PagedAttention(seq.layer(), seq.table(), kStart, kTokens, q.data(), q_dim, parts.data(), q_dim, s.n_heads, cuts[i],
                   cuts[i + 1]);
    // Heads not yet computed are untouched.
    for (int t = 0; t < kTokens; ++t) {
      for (int j = cuts[i + 1] * s.head_dim; j < q_dim; ++j) ASSERT_TRUE(std::isnan(parts[t * q_dim + j]));
    }
  }
  ASSERT_EQ(0, std::memcmp(whole.data(), parts.data(), sizeof(float) * whole.size()));
}

// ---- fp16 and bf16 caches -----------------------------------------------------------

constexpr KvDType k16BitTypes[] = {KvDType::kF16, KvDType::kBF16};

// K and V rows of `total` tokens and the query rows of the tokens from start_pos on, all
// random; the K/V rows written into `seq` by WriteKv in steps of uneven lengths, as the
// decoder writes them.
struct Tokens {
  std::vector<float> k, v;  // [total, kv_dim]
  std::vector<float> q;     // [n_tokens, q_dim]
};

Tokens WriteTokens(const Shape& s, const PagedSequence& seq, int total, int n_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  const int kv_dim = s.n_kv_heads * s.head_dim;
  Tokens tokens;
  tokens.k = Random(static_cast<size_t>(total) * kv_dim, rng);
  tokens.v = Random(tokens.k.size(), rng);
  tokens.q = Random(static_cast<size_t>(n_tokens) * s.n_heads * s.head_dim, rng);
  for (int p = 0; p < total;) {
    const int chunk = std::min(total - p, 1 + p % 7);
    WriteKv(seq.layer(), seq.table(), p, chunk, &tokens.k[static_cast<size_t>(p) * kv_dim],
            &tokens.v[static_cast<size_t>(p) * kv_dim], kv_dim);
    p += chunk;
  }
  return tokens;
}

std::vector<float> Attend(const Shape& s, const PagedSequence& seq, int start_pos, int n_tokens,
                          const std::vector<float>& q) {
  const int q_dim = s.n_heads * s.head_dim;
  std::vector<float> out(static_cast<size_t>(n_tokens) * q_dim, kNaN);
  PagedAttention(seq.layer(), seq.table(), start_pos, n_tokens, q.data(), q_dim, out.data(), q_dim, s.n_heads, 0,
                 s.n_heads);
  return out;
}

// A chunk's tokens are attended together (groups of up to four share the K and V rows
// they read) and each gives the bits it gives alone, as one decode token at its
// position: prefill chunking and fusing never change a token's output.
TEST_P(PagedAttentionTest, ChunkTokensEqualEachTokenAlone) {
  const Shape s = GetParam();
  const int q_dim = s.n_heads * s.head_dim;
  for (KvDType dtype : {KvDType::kF32, KvDType::kF16, KvDType::kBF16}) {
    for (const auto& [start_pos, n_tokens] : {std::pair{0, 11}, {13, 9}, {30, 4}, {47, 6}, {5, 2}}) {
      SCOPED_TRACE(std::string(KvDTypeName(dtype)) + " start_pos=" + std::to_string(start_pos) +
                   " n_tokens=" + std::to_string(n_tokens));
      const int total = start_pos + n_tokens;
      std::mt19937 rng(21);
      PagedSequence seq(s, total, rng, dtype);
      const Tokens tokens = WriteTokens(s, seq, total, n_tokens, 22);
      const std::vector<float> chunk = Attend(s, seq, start_pos, n_tokens, tokens.q);
      for (int t = 0; t < n_tokens; ++t) {
        const std::vector<float> q(tokens.q.begin() + static_cast<ptrdiff_t>(t) * q_dim,
                                   tokens.q.begin() + static_cast<ptrdiff_t>(t + 1) * q_dim);
        const std::vector<float> alone = Attend(s, seq, start_pos + t, 1, q);
        ASSERT_EQ(0, std::memcmp(alone.data(), &chunk[static_cast<size_t>(t) * q_dim], sizeof(float) * q_dim))
            << "token " << t;
      }
    }
  }
}

TEST(KvDTypeTest, NamesAndSizes) {
  EXPECT_STREQ(KvDTypeName(KvDType::kF32), "fp32");
  EXPECT_STREQ(KvDTypeName(KvDType::kF16), "fp16");
  EXPECT_STREQ(KvDTypeName(KvDType::kBF16), "bf16");
  EXPECT_EQ(KvDTypeBytes(KvDType::kF32), 4);
  EXPECT_EQ(KvDTypeBytes(KvDType::kF16), 2);
  EXPECT_EQ(KvDTypeBytes(KvDType::kBF16), 2);
}

// WriteKv stores float16.h's round-to-nearest-even of every value (whichever way it
// converts: F16C where the CPU has it): random values, and every fp32 exponent with
// mantissas at and around fp16's and bf16's halfway points, both signs (infinities,
// NaNs, fp32 and fp16 subnormals, overflow to inf). head_dim 20: the rows' 8-wide
// conversions and their tails.
TEST(KvDTypeTest, WriteKvRoundsToNearestEven) {
  std::mt19937 rng(5);
  std::vector<float> values = Random(4000, rng, -1e5f, 1e5f);
  for (float x : Random(1000, rng, -1e-4f, 1e-4f)) values.push_back(x);
  for (uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t exponent = 0; exponent < 256; ++exponent) {
      for (uint32_t mantissa : {0x0u, 0x1u, 0xFFFu, 0x1000u, 0x1001u, 0x3000u, 0x7FFFu, 0x8000u, 0x8001u, 0x18000u,
                                0x3FFFFFu, 0x400000u, 0x401000u, 0x7FE000u, 0x7FF000u, 0x7FFFFFu})
        values.push_back(std::bit_cast<float>(sign | exponent << 23 | mantissa));
    }
  }
  const Shape s{2, 2, 20, 4};
  const int kv_dim = s.n_kv_heads * s.head_dim;
  values.resize((values.size() + kv_dim - 1) / kv_dim * kv_dim, 1.0f);
  const int n_tokens = static_cast<int>(values.size()) / kv_dim;
  std::vector<float> reversed(values.rbegin(), values.rend());
  for (KvDType dtype : k16BitTypes) {
    SCOPED_TRACE(KvDTypeName(dtype));
    PagedSequence seq(s, n_tokens, rng, dtype);
    WriteKv(seq.layer(), seq.table(), 0, n_tokens, values.data(), reversed.data(), kv_dim);
    for (int p = 0; p < n_tokens; ++p) {
      for (int h = 0; h < s.n_kv_heads; ++h) {
        for (int i = 0; i < s.head_dim; ++i) {
          const size_t j = static_cast<size_t>(p) * kv_dim + h * s.head_dim + i;
          ASSERT_EQ(seq.k_bits(p, h, i), Narrow(dtype, values[j]))
              << "K 0x" << std::hex << std::bit_cast<uint32_t>(values[j]);
          ASSERT_EQ(seq.v_bits(p, h, i), Narrow(dtype, reversed[j]))
              << "V 0x" << std::hex << std::bit_cast<uint32_t>(reversed[j]);
        }
      }
    }
  }
}

// Exact: attention over a 16-bit cache is attention over an fp32 cache of the widened
// values, bit for bit (the scores are Matmul's on the widened K, the rest the same fp32
// operations; attention.h). Also, within float rounding, the naive double attention on
// the widened values.
TEST_P(PagedAttentionTest, SixteenBitEqualsFp32OnTheWidenedValues) {
  const Shape s = GetParam();
  for (KvDType dtype : k16BitTypes) {
    for (const auto& [start_pos, n_tokens] : {std::pair{0, 1}, {16, 1}, {0, 21}, {13, 20}, {333, 1}, {290, 12}}) {
      SCOPED_TRACE(std::string(KvDTypeName(dtype)) + " start_pos=" + std::to_string(start_pos) +
                   " n_tokens=" + std::to_string(n_tokens));
      const int total = start_pos + n_tokens;
      std::mt19937 rng(11);
      PagedSequence seq(s, total, rng, dtype);
      const Tokens tokens = WriteTokens(s, seq, total, n_tokens, 12);
      const std::vector<float> out = Attend(s, seq, start_pos, n_tokens, tokens.q);
      const std::vector<float> want = Attend(s, seq.WidenedCopy(), start_pos, n_tokens, tokens.q);
      ASSERT_EQ(0, std::memcmp(out.data(), want.data(), sizeof(float) * out.size()));

      const int q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
      std::vector<float> k(static_cast<size_t>(total) * kv_dim), v(k.size());
      for (int p = 0; p < total; ++p) {
        for (int h = 0; h < s.n_kv_heads; ++h) {
          std::ranges::copy(seq.k_at(p, h), &k[static_cast<size_t>(p) * kv_dim + h * s.head_dim]);
          std::ranges::copy(seq.v_at(p, h), &v[static_cast<size_t>(p) * kv_dim + h * s.head_dim]);
        }
      }
      for (int t = 0; t < n_tokens; t += 5) {
        for (int h = 0; h < s.n_heads; ++h) {
          const auto ref = NaiveAttention(s, k, v, &tokens.q[static_cast<size_t>(t) * q_dim], start_pos + t, h);
          for (int i = 0; i < s.head_dim; ++i)
            ASSERT_NEAR(out[static_cast<size_t>(t) * q_dim + h * s.head_dim + i], ref[i], 1e-5)
                << "token " << t << " head " << h << " dim " << i;
        }
      }
    }
  }
}

// fp16/bf16 against fp32 caches of the same K/V rows, per output head, against a bound
// derived from the storage rounding. With u the unit roundoff of the storage (2^-11 for
// fp16, 2^-8 for bf16), a stored value is v' = v + dv with |dv| <= u |v| + 2^-25 (fp16
// subnormals), and a score moves by e_p = q . (k'_p - k_p) / sqrt(head_dim). To first
// order the probabilities move by p_p (e_p - sum_r p_r e_r), so each output value
// moves by at most
//   b_i = sum_p p_p |dv_pi| + sum_p p_p |e_p - e_mean| |v_pi|,
// which the test computes in double from the stored values. The error of the head,
// ||out16 - out32||, must stay within 1.05 ||b|| (second-order terms) plus the fp32
// rounding of the two runs (a few ulps of sum_p p_p |v_p| per position and per score
// term). Relative to the head's scale sum_p p_p |v_p| rather than to ||out||, which
// cancellation over hundreds of random V rows makes arbitrarily small.
TEST_P(PagedAttentionTest, SixteenBitErrorAgainstFp32IsBounded) {
  const Shape s = GetParam();
  const int q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
  const double sqrt_d = std::sqrt(static_cast<double>(s.head_dim));
  for (KvDType dtype : k16BitTypes) {
    const double u = dtype == KvDType::kF16 ? 0x1p-11 : 0x1p-8;
    for (const auto& [start_pos, n_tokens] : {std::pair{0, 1}, {16, 1}, {332, 1}, {300, 9}}) {
      SCOPED_TRACE(std::string(KvDTypeName(dtype)) + " start_pos=" + std::to_string(start_pos) +
                   " n_tokens=" + std::to_string(n_tokens));
      const int total = start_pos + n_tokens;
      std::mt19937 rng16(21), rng32(21);  // the same block tables
      PagedSequence seq16(s, total, rng16, dtype), seq32(s, total, rng32);
      const Tokens tokens = WriteTokens(s, seq16, total, n_tokens, 22);
      WriteTokens(s, seq32, total, n_tokens, 22);
      const std::vector<float> out16 = Attend(s, seq16, start_pos, n_tokens, tokens.q);
      const std::vector<float> out32 = Attend(s, seq32, start_pos, n_tokens, tokens.q);
      // The stored values, widened: [total, kv_dim] like tokens.k and tokens.v.
      std::vector<float> k16(tokens.k.size()), v16(tokens.v.size());
      for (int p = 0; p < total; ++p) {
        for (int h = 0; h < s.n_kv_heads; ++h) {
          std::ranges::copy(seq16.k_at(p, h), &k16[static_cast<size_t>(p) * kv_dim + h * s.head_dim]);
          std::ranges::copy(seq16.v_at(p, h), &v16[static_cast<size_t>(p) * kv_dim + h * s.head_dim]);
        }
      }
      for (size_t j = 0; j < v16.size(); ++j) {
        ASSERT_LE(std::abs(static_cast<double>(v16[j]) - tokens.v[j]), u * std::abs(tokens.v[j]) + 0x1p-25) << j;
        ASSERT_LE(std::abs(static_cast<double>(k16[j]) - tokens.k[j]), u * std::abs(tokens.k[j]) + 0x1p-25) << j;
      }
      bool differs = false;
      for (int t = 0; t < n_tokens; ++t) {
        const int n_pos = start_pos + t + 1;
        for (int h = 0; h < s.n_heads; ++h) {
          const size_t head = static_cast<size_t>(h / (s.n_heads / s.n_kv_heads)) * s.head_dim;
          const float* q = &tokens.q[static_cast<size_t>(t) * q_dim + h * s.head_dim];
          // In double: the probabilities of the fp32 cache, the score shifts e_p, and
          // sum_i |q_i k_pi| / sqrt(head_dim) (the scale of a score's fp32 rounding).
          std::vector<double> prob(n_pos), e(n_pos), abs_dot(n_pos);
          double max_score = -INFINITY;
          for (int p = 0; p < n_pos; ++p) {
            const size_t row = static_cast<size_t>(p) * kv_dim + head;
            double dot = 0.0, shift = 0.0, abs_sum = 0.0;
            for (int i = 0; i < s.head_dim; ++i) {
              dot += static_cast<double>(q[i]) * tokens.k[row + i];
              shift += static_cast<double>(q[i]) * (static_cast<double>(k16[row + i]) - tokens.k[row + i]);
              abs_sum += std::abs(static_cast<double>(q[i]) * tokens.k[row + i]);
            }
            prob[p] = dot / sqrt_d;
            e[p] = shift / sqrt_d;
            abs_dot[p] = abs_sum / sqrt_d;
            max_score = std::max(max_score, prob[p]);
          }
          double sum = 0.0, e_mean = 0.0;
          for (double& x : prob) sum += (x = std::exp(x - max_score));
          for (int p = 0; p < n_pos; ++p) e_mean += (prob[p] /= sum) * e[p];
          double err2 = 0.0, bound2 = 0.0, noise2 = 0.0;
          for (int i = 0; i < s.head_dim; ++i) {
            double b = 0.0, noise = 0.0;
            for (int p = 0; p < n_pos; ++p) {
              const size_t j = static_cast<size_t>(p) * kv_dim + head + i;
              const double v = tokens.v[j];
              b += prob[p] * (std::abs(v16[j] - v) + std::abs(e[p] - e_mean) * std::abs(v));
              // The fp32 rounding of either run: the sums over positions and the scores.
              noise += prob[p] * std::abs(v) * (n_pos * 0x1p-22 + 2.0 * s.head_dim * 0x1p-24 * abs_dot[p]);
            }
            const size_t j = static_cast<size_t>(t) * q_dim + h * s.head_dim + i;
            const double d = static_cast<double>(out16[j]) - out32[j];
            err2 += d * d;
            bound2 += b * b;
            noise2 += noise * noise;
          }
          ASSERT_LE(std::sqrt(err2), 1.05 * std::sqrt(bound2) + std::sqrt(noise2)) << "token " << t << " head " << h;
          differs = differs || err2 > 0.0;
        }
      }
      EXPECT_TRUE(differs) << "the 16-bit cache gave fp32's results: was it read as fp32?";
    }
  }
}

// Every instruction-set variant of the 16-bit paths gives the same bits: the attention
// variants (how V is widened and summed) with any score kernel, and the SIMD score
// kernels with each other (MatmulWeights' fp16/bf16 contract). The portable score kernel
// rounds differently (no FMA, as Matmul's), but alike under every attention variant.
// What PagedAttention runs (FLOVER_MATMUL_KERNEL=avx2 or generic limit it) is one of them.
TEST(KvDTypeTest, EveryVariantGivesTheSameBits) {
  using internal::AttentionKernel;
  using internal::FindAttentionKernel;
  using internal::FindWeightKernel;
  using internal::WeightKernel;
  for (const Shape& s : {Shape{8, 4, 8, 16}, Shape{4, 2, 64, 16}, Shape{3, 3, 100, 4}, Shape{2, 1, 128, 16}}) {
    for (KvDType dtype : k16BitTypes) {
      SCOPED_TRACE(Describe(s) + " " + KvDTypeName(dtype));
      const WeightFormat format = dtype == KvDType::kF16 ? WeightFormat::kF16 : WeightFormat::kBF16;
      constexpr int kStart = 67, kTokens = 6;  // a group of four tokens and one of two
      const int q_dim = s.n_heads * s.head_dim;
      std::mt19937 rng(31);
      PagedSequence seq(s, kStart + kTokens, rng, dtype);
      const Tokens tokens = WriteTokens(s, seq, kStart + kTokens, kTokens, 32);
      const std::vector<float> selected = Attend(s, seq, kStart, kTokens, tokens.q);
      std::vector<float> simd, portable;  // the first result of each group of score kernels
      int n_runs = 0;
      for (const char* score_name : {"avx512", "avx2", "widen+avx512", "widen+avx2", "widen+generic"}) {
        const WeightKernel scores = FindWeightKernel(format, score_name);
        if (scores.fn == nullptr) continue;
        std::vector<float>& group = std::string(score_name) == "widen+generic" ? portable : simd;
        for (const char* name : {"avx512", "avx2", "generic"}) {
          const AttentionKernel kernel = FindAttentionKernel(name);
          ASSERT_STREQ(kernel.name, name);
          if (kernel.f16 == nullptr) continue;
          std::vector<float> out(static_cast<size_t>(kTokens) * q_dim, kNaN);
          internal::PagedAttention16WithKernels(kernel, scores, seq.layer(), seq.table(), kStart, kTokens,
                                                tokens.q.data(), q_dim, out.data(), q_dim, s.n_heads, 0, s.n_heads);
          ++n_runs;
          if (group.empty()) group = out;
          ASSERT_EQ(0, std::memcmp(out.data(), group.data(), sizeof(float) * out.size()))
              << "attention " << name << ", scores " << score_name;
        }
      }
      EXPECT_GE(n_runs, 2);  // at least the portable variant under both kinds of scores
      EXPECT_TRUE(selected == simd || selected == portable) << internal::SelectedAttentionKernel().name;
    }
  }
  EXPECT_EQ(FindAttentionKernel("sse9").f16, nullptr);
}

// Every one of the 65536 fp16 and bf16 values widens exactly (HalfToFloat, Bf16ToFloat),
// in every attention variant, through the vector loads (head_dim 16) and the tail's
// (head_dim 8): one position, so the output is 0 + 1 * V (which turns -0 into +0 and
// quiets bf16's signalling NaNs; fp16's come out of HalfToFloat quiet already).
TEST(KvDTypeTest, EveryStoredValueWidensExactly) {
  for (KvDType dtype : k16BitTypes) {
    for (int head_dim : {16, 8}) {
      for (const char* name : {"avx512", "avx2", "generic"}) {
        const internal::AttentionKernel kernel = internal::FindAttentionKernel(name);
        if (kernel.f16 == nullptr) continue;
        SCOPED_TRACE(std::string(KvDTypeName(dtype)) + " head_dim " + std::to_string(head_dim) + " " + name);
        const int n_heads = 65536 / head_dim;
        std::vector<uint16_t> k(65536, 0), v(65536);
        std::iota(v.begin(), v.end(), 0);
        const PagedKvLayer layer{k.data(), v.data(), 1, 1, n_heads, head_dim, dtype};
        const int table[] = {0};
        const std::vector<float> q(65536, 1.0f);
        std::vector<float> out(65536, kNaN);
        internal::PagedAttention16WithKernels(
            kernel, internal::SelectedWeightKernel(dtype == KvDType::kF16 ? WeightFormat::kF16 : WeightFormat::kBF16),
            layer, table, 0, 1, q.data(), 65536, out.data(), 65536, n_heads, 0, n_heads);
        for (uint32_t bits = 0; bits < 65536; ++bits) {
          uint32_t want = std::bit_cast<uint32_t>(Widen(dtype, bits));
          if (want == 0x80000000u) want = 0;                                // -0 + +0 is +0
          if (std::isnan(std::bit_cast<float>(want))) want |= 0x00400000u;  // arithmetic quiets a NaN
          ASSERT_EQ(std::bit_cast<uint32_t>(out[bits]), want) << "stored bits " << bits;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionTest,
                         ::testing::Values(Shape{8, 4, 8, 16},   // stories260K: GQA, head_dim 8
                                           Shape{8, 4, 16, 4},   // GQA, small blocks
                                           Shape{8, 4, 64, 1},   // one token per block
                                           Shape{4, 4, 64, 16},  // MHA
                                           Shape{6, 2, 20, 4},   // group of 3, head_dim not a multiple of 16
                                           Shape{12, 12, 64, 16},
                                           // The V sum's passes: 48 (stories15M), 32, 64 + 48, 64 + 32 + 4, 2 x 64.
                                           Shape{6, 6, 48, 16}, Shape{4, 2, 32, 16}, Shape{2, 2, 112, 8},
                                           Shape{3, 3, 100, 4}, Shape{2, 1, 128, 16}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           const Shape& s = info.param;
                           std::string name = "h";
                           for (const auto& [tag, value] : {std::pair<const char*, int>{"", s.n_heads},
                                                            {"kv", s.n_kv_heads},
                                                            {"d", s.head_dim},
                                                            {"bs", s.block_size}}) {
                             name.append(tag).append(std::to_string(value));
                           }
                           return name;
                         });

TEST(PagedAttentionTest, FirstTokenReturnsItsOwnValue) {
  // With one position the softmax is exactly 1, so the output is V bit for bit.
  const Shape s{2, 1, 16, 4};
  std::mt19937 rng(3);
  PagedSequence seq(s, 1, rng);
  const auto k = Random(16, rng), v = Random(16, rng), q = Random(32, rng);
  WriteKv(seq.layer(), seq.table(), 0, 1, k.data(), v.data(), 16);
  std::vector<float> out(32);
  PagedAttention(seq.layer(), seq.table(), 0, 1, q.data(), 32, out.data(), 32, 2, 0, 2);
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 16), v);
  EXPECT_EQ(std::vector<float>(out.begin() + 16, out.end()), v);
}

}  // namespace
}  // namespace flover::cpu
