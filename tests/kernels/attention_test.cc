// PagedAttention and WriteKv against a naive attention over a contiguous cache, with
// shuffled, non-contiguous block tables. Unused cache slots hold NaN, so reading any
// slot outside the sequence's blocks poisons the result.
#include "kernels/cpu/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

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

// One sequence's cache: a pool of NaN-filled blocks, twice as many as needed, and a
// shuffled block table over them.
class PagedSequence {
 public:
  PagedSequence(const Shape& s, int max_tokens, std::mt19937& rng) : shape_(s) {
    const int n_needed = (max_tokens + s.block_size - 1) / s.block_size;
    const int n_blocks = 2 * n_needed + 1;
    const size_t pool = static_cast<size_t>(n_blocks) * s.n_kv_heads * s.block_size * s.head_dim;
    k_.assign(pool, kNaN);
    v_.assign(pool, kNaN);
    std::vector<int> ids(n_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table_.assign(ids.begin(), ids.begin() + n_needed);
    layer_ = {k_.data(), v_.data(), n_blocks, s.block_size, s.n_kv_heads, s.head_dim};
  }
  const PagedKvLayer& layer() const { return layer_; }
  const int* table() const { return table_.data(); }
  // Where the header says token `pos`, kv head `h` lives.
  const float* k_at(int pos, int h) const { return k_.data() + Offset(pos, h); }
  const float* v_at(int pos, int h) const { return v_.data() + Offset(pos, h); }

 private:
  size_t Offset(int pos, int h) const {
    const int block = table_[pos / shape_.block_size], slot = pos % shape_.block_size;
    return ((static_cast<size_t>(block) * shape_.n_kv_heads + h) * shape_.block_size + slot) * shape_.head_dim;
  }
  Shape shape_;
  std::vector<float> k_, v_;
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
      ASSERT_TRUE(
          std::equal(seq.k_at(p, h), seq.k_at(p, h) + s.head_dim, &k[static_cast<size_t>(p) * kv_dim + h * s.head_dim]))
          << "K of position " << p << " head " << h;
      ASSERT_TRUE(
          std::equal(seq.v_at(p, h), seq.v_at(p, h) + s.head_dim, &v[static_cast<size_t>(p) * kv_dim + h * s.head_dim]))
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

TEST_P(PagedAttentionTest, DecodeMatchesNaiveAttention) {
  for (int start_pos : {0, 1, 15, 16, 17, 40}) CheckAttention(GetParam(), start_pos, 1, 100 + start_pos);
}

TEST_P(PagedAttentionTest, PrefillChunkMatchesNaiveAttention) {
  CheckAttention(GetParam(), 0, 21, 1);   // whole prompt
  CheckAttention(GetParam(), 13, 20, 2);  // a later chunk that crosses block boundaries
  CheckAttention(GetParam(), 32, 5, 3);   // a chunk starting on a block boundary
}

TEST_P(PagedAttentionTest, HeadRangesPartitionTheHeads) {
  const Shape s = GetParam();
  std::mt19937 rng(7);
  constexpr int kStart = 9, kTokens = 4;
  const int q_dim = s.n_heads * s.head_dim, kv_dim = s.n_kv_heads * s.head_dim;
  PagedSequence seq(s, kStart + kTokens, rng);
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
