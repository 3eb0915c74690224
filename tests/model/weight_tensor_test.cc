// WeightTensor (weight_tensor.h), the format rule of WeightPolicy (weight_policy.h),
// and what the model tables do with packed tensors: Validate's byte checks, sharding of
// packed rows and column ranges (shard.h), the Q/K row permutation on packed rows
// (rotary_layout.h).
#include "worker/model/weight_tensor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "worker/model/model_weights.h"
#include "worker/model/rotary_layout.h"
#include "worker/model/shard.h"
#include "worker/model/weight_policy.h"

namespace flover {
namespace {

using cpu::WeightFormat;
using ::testing::HasSubstr;

constexpr WeightFormat kEveryFormat[] = {WeightFormat::kF32,  WeightFormat::kF16,  WeightFormat::kBF16,
                                         WeightFormat::kQ8_0, WeightFormat::kQ4_0, WeightFormat::kQ4_K};

std::vector<float> Uniform(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// The bytes QuantizeWeightRows makes of `values` ([rows, cols]).
std::vector<uint8_t> Quantized(WeightFormat f, const std::vector<float>& values, int64_t rows, int64_t cols) {
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * cpu::WeightRowBytes(f, cols)));
  cpu::QuantizeWeightRows(f, values.data(), rows, cols, bytes.data());
  return bytes;
}

TEST(WeightTensorTest, Fp32KeepsItsValuesAndOtherFormatsTheirBytes) {
  const std::vector<float> values = Uniform(2 * 256, 1);
  const WeightTensor f32(values);
  EXPECT_TRUE(f32.is_f32());
  EXPECT_EQ(f32.f32(), values);
  EXPECT_EQ(f32.n_bytes(), 2 * 256 * 4);
  EXPECT_TRUE(f32.Holds(2, 256));
  EXPECT_FALSE(f32.Holds(3, 256));
  for (WeightFormat f : kEveryFormat) {
    SCOPED_TRACE(cpu::WeightFormatName(f));
    const std::vector<uint8_t> bytes = Quantized(f, values, 2, 256);
    const WeightTensor t = WeightTensor::FromBytes(f, bytes);
    EXPECT_EQ(t.format(), f);
    ASSERT_EQ(t.n_bytes(), static_cast<int64_t>(bytes.size()));
    EXPECT_EQ(std::memcmp(t.bytes().data(), bytes.data(), bytes.size()), 0);
    EXPECT_TRUE(t.Holds(2, 256));
    // The same bytes hold [4, 128] too, except in Q4_K, whose blocks have 256 values.
    EXPECT_EQ(t.Holds(4, 128), f != WeightFormat::kQ4_K);
    const cpu::WeightView v = t.view(2, 256);
    EXPECT_EQ(v.format, f);
    EXPECT_EQ(v.data, t.bytes().data());
  }
  EXPECT_TRUE(WeightTensor().empty());
  EXPECT_TRUE(WeightTensor().is_f32());
}

// Interleave() rearranges a matrix into the layout the process's kernel reads fastest
// (cpu::PreferredWeightLayout: Q8_0, Q4_0 and Q4_K always, fp32, fp16 and bf16 under the
// AVX2 kernels, which the avx2.-prefixed run of this test chooses): the same values through
// DequantizeWeightRows and the same products through MatmulWeights, Holds and view
// follow the new size, a second call changes nothing, ConvertTo still reads it, the
// values can no longer be read as fp32 rows; other formats are left as they are.
TEST(WeightTensorTest, InterleaveKeepsTheMatrixInThePreferredLayout) {
  constexpr int64_t kRows = 19, kCols = 520;  // floats: a partial group and a partial block of 16 values
  const std::vector<float> values = Uniform(kRows * kCols, 5);
  for (WeightFormat f : kEveryFormat) {
    SCOPED_TRACE(cpu::WeightFormatName(f));
    const bool floats = f == WeightFormat::kF32 || f == WeightFormat::kF16 || f == WeightFormat::kBF16;
    const int64_t cols = floats ? kCols : 512;
    const WeightTensor rows =
        f == WeightFormat::kF32 ? WeightTensor(values) : WeightTensor::FromBytes(f, Quantized(f, values, kRows, cols));
    WeightTensor t = rows;
    t.Interleave(kRows, cols);
    if (cpu::PreferredWeightLayout(f) == cpu::WeightLayout::kRows) {
      EXPECT_EQ(t, rows);
      EXPECT_EQ(t.layout(), cpu::WeightLayout::kRows);
      continue;
    }
    EXPECT_EQ(t.layout(), cpu::WeightLayout::kInterleaved);
    EXPECT_FALSE(t == rows);
    // Two groups of 16 rows; Q4_K keeps 148 bytes per block and row, the others their 34
    // or 18, the float formats 16 values' bytes (the last block zero-padded).
    const int64_t block_bytes = f == WeightFormat::kQ4_K ? 148
                                : floats                 ? 16 * cpu::WeightBlockBytes(f)
                                                         : cpu::WeightBlockBytes(f);
    const int64_t blocks = floats ? (cols + 15) / 16 : cols / cpu::WeightBlockValues(f);
    EXPECT_EQ(t.n_bytes(), 2 * 16 * blocks * block_bytes);
    if (f == WeightFormat::kF32) {
      EXPECT_DEATH((void)t.f32(), "fp32 tensor \\(interleaved\\) read as fp32");
    }
    EXPECT_TRUE(t.Holds(kRows, cols));
    EXPECT_FALSE(t.Holds(kRows, 2 * cols));
    const WeightTensor again = [&] {
      WeightTensor c = t;
      c.Interleave(kRows, cols);
      return c;
    }();
    EXPECT_EQ(again, t);
    std::vector<float> a(kRows * cols), b(a.size());
    cpu::DequantizeWeightRows(rows.view(kRows, cols), 0, kRows, a.data());
    cpu::DequantizeWeightRows(t.view(kRows, cols), 0, kRows, b.data());
    EXPECT_EQ(a, b);
    const std::vector<float> x = Uniform(3 * cols, 6);
    std::vector<float> ya(3 * kRows), yb(ya.size());
    cpu::MatmulWeights(x.data(), rows.view(kRows, cols), ya.data(), 3);
    cpu::MatmulWeights(x.data(), t.view(kRows, cols), yb.data(), 3);
    EXPECT_EQ(ya, yb);
    const WeightFormat other = f == WeightFormat::kBF16 ? WeightFormat::kF16 : WeightFormat::kBF16;
    EXPECT_EQ(t.ConvertTo(other, kRows, cols), rows.ConvertTo(other, kRows, cols));
  }
}

// The kernels' loads of a row stay within cache lines: every way of making a tensor
// (values, bytes, zeros, conversion, interleaving, copying) keeps its bytes on a 64-byte
// boundary, at sizes large enough for glibc to map them (where it starts 16 bytes in).
TEST(WeightTensorTest, BytesStartOnACacheLine) {
  constexpr int64_t kRows = 64, kCols = 2048;  // 512 kB of fp32
  const std::vector<float> values = Uniform(kRows * kCols, 9);
  auto aligned = [](const WeightTensor& t) { return reinterpret_cast<uintptr_t>(t.bytes().data()) % 64 == 0; };
  EXPECT_TRUE(aligned(WeightTensor(values)));
  for (WeightFormat f : kEveryFormat) {
    SCOPED_TRACE(cpu::WeightFormatName(f));
    const WeightTensor from_bytes = WeightTensor::FromBytes(f, Quantized(f, values, kRows, kCols));
    EXPECT_TRUE(aligned(from_bytes));
    EXPECT_TRUE(aligned(WeightTensor::Zeros(f, kRows * cpu::WeightRowBytes(f, kCols))));
    EXPECT_TRUE(aligned(WeightTensor(values).ConvertTo(f, kRows, kCols)));
    WeightTensor interleaved = from_bytes;
    EXPECT_TRUE(aligned(interleaved));
    interleaved.Interleave(kRows, kCols);
    EXPECT_TRUE(aligned(interleaved));
  }
}

TEST(WeightTensorTest, ReadingAPackedTensorAsFp32IsABrokenInvariant) {
  const WeightTensor q8 = WeightTensor::FromBytes(WeightFormat::kQ8_0, std::vector<uint8_t>(34, 0));
  EXPECT_DEATH((void)q8.f32(), "q8_0 tensor read as fp32");
  EXPECT_DEATH((void)q8.view(2, 32), "viewed as \\[2, 32\\]");
}

// ConvertTo is the kernels' conversion: QuantizeWeightRows of the rows widened to fp32.
TEST(WeightTensorTest, ConvertToIsQuantizeOfTheWidenedRows) {
  const int64_t rows = 3, cols = 512;
  const std::vector<float> values = Uniform(rows * cols, 2);
  const WeightTensor f32(values);
  for (WeightFormat f : kEveryFormat) {
    SCOPED_TRACE(cpu::WeightFormatName(f));
    const WeightTensor t = f32.ConvertTo(f, rows, cols);
    EXPECT_EQ(t, WeightTensor::FromBytes(f, Quantized(f, values, rows, cols)));
    // And back: the dequantized values.
    std::vector<float> widened(rows * cols);
    cpu::DequantizeWeightRows(t.view(rows, cols), 0, rows, widened.data());
    EXPECT_EQ(t.ConvertTo(WeightFormat::kF32, rows, cols).f32(), widened);
    // A packed source converts through its widened values too (Q4_K -> Q8_0).
    const WeightTensor q8 = t.ConvertTo(WeightFormat::kQ8_0, rows, cols);
    EXPECT_EQ(q8, WeightTensor::FromBytes(WeightFormat::kQ8_0, Quantized(WeightFormat::kQ8_0, widened, rows, cols)));
  }
}

// More rows than one conversion chunk: chunking does not change the bytes.
TEST(WeightTensorTest, ChunkedConversionEqualsOneCall) {
  const int64_t cols = 256, rows = WeightTensor::kChunkValues / cols + 3;
  const std::vector<float> values = Uniform(rows * cols, 3);
  int calls = 0;
  Result<WeightTensor> t =
      WeightTensor::FromF32Rows(WeightFormat::kQ4_K, rows, cols, [&](int64_t begin, int64_t n, float* dst) {
        ++calls;
        std::copy_n(values.begin() + begin * cols, n * cols, dst);
        return Status::Ok();
      });
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(*t, WeightTensor::FromBytes(WeightFormat::kQ4_K, Quantized(WeightFormat::kQ4_K, values, rows, cols)));
  Result<WeightTensor> failed = WeightTensor::FromF32Rows(
      WeightFormat::kQ8_0, rows, cols, [](int64_t, int64_t, float*) { return IoError("disk gone"); });
  EXPECT_EQ(failed.status().ToString(), "IoError: disk gone");
}

ModelSpec Spec256() {
  ModelSpec s;
  s.dim = 256;
  s.hidden_dim = 512;
  s.n_layers = 1;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.vocab_size = 10;
  s.max_seq_len = 16;
  return s;
}

// Every tensor of `spec` in fp32 with random values, matrices then converted to `f`.
ModelWeights WeightsIn(const ModelSpec& spec, WeightFormat f) {
  ModelWeights w;
  w.spec = spec;
  w.layers.resize(spec.n_layers);
  uint32_t seed = 10;
  auto fill = [&](const auto& t, WeightTensor& out) {
    if (!t.present(spec)) return;
    out = WeightTensor(Uniform(t.size(spec), seed++));
    if (t.matrix) out = out.ConvertTo(f, t.rows(spec), t.cols(spec));
  };
  for (LayerWeights& l : w.layers)
    for (const auto& t : LayerTensors()) fill(t, l.*t.member);
  for (const auto& t : ModelTensors()) fill(t, w.*t.member);
  return w;
}

TEST(WeightTensorTest, ValidateChecksEveryFormatsBytes) {
  for (WeightFormat f : kEveryFormat) {
    SCOPED_TRACE(cpu::WeightFormatName(f));
    ModelWeights w = WeightsIn(Spec256(), f);
    ASSERT_TRUE(w.Validate().ok()) << w.Validate().ToString();
    ModelWeights short_row = w;
    std::vector<uint8_t> bytes(short_row.layers[0].w2.bytes().begin(), short_row.layers[0].w2.bytes().end() - 2);
    short_row.layers[0].w2 = WeightTensor::FromBytes(WeightFormat::kF16, bytes);
    EXPECT_THAT(short_row.Validate().ToString(), HasSubstr("tensor layers.0.w2 has"));
  }
  ModelWeights packed_norm = WeightsIn(Spec256(), WeightFormat::kF32);
  packed_norm.final_norm = packed_norm.final_norm.ConvertTo(WeightFormat::kF16, 256, 1);
  EXPECT_EQ(packed_norm.Validate().ToString(), "Corruption: tensor final_norm is fp16; vectors are fp32");
  // What the weights cost, by format: the matrices in Q4_K (144 bytes per 256 values),
  // the norms in fp32.
  ModelWeights w = WeightsIn(Spec256(), WeightFormat::kQ4_K);
  EXPECT_EQ(w.BytesByFormat().at(WeightFormat::kQ4_K),
            (256 * 256 * 2 + 128 * 256 * 2 + 512 * 256 * 3 + 10 * 256) / 256 * 144);
  EXPECT_THAT(w.FormatsString(), HasSubstr("q4_k "));
  EXPECT_THAT(w.FormatsString(), HasSubstr(" + fp32 "));
}

TEST(WeightTensorTest, ValidateNamesAMatrixWhoseRowsAreNotWholeBlocks) {
  ModelSpec spec = Spec256();
  spec.dim = 64;  // wq rows of 64 values: not a Q4_K block
  ModelWeights w = WeightsIn(spec, WeightFormat::kF32);
  w.layers[0].wq = WeightTensor::FromBytes(WeightFormat::kQ4_K, std::vector<uint8_t>(64 * 64 / 256 * 144 * 4, 0));
  EXPECT_EQ(w.Validate().ToString(),
            "Corruption: tensor layers.0.wq is q4_k with rows of 64 values, not whole blocks of 256");
}

// Sharded packed weights hold the bytes of their rows (row splits) and of each row's
// column range (column splits), in every format, TP 2 and 4.
TEST(ShardPackedTest, ShardsAreTheRowsAndColumnRangesOfTheBytes) {
  ModelSpec spec = Spec256();
  spec.dim = 512;
  spec.hidden_dim = 1024;
  spec.n_heads = 8;
  spec.n_kv_heads = 4;  // q_dim 512, each of 2 ranks: 256 columns of wo (one Q4_K block)
  spec.vocab_size = 13;
  spec.shared_classifier = true;
  for (WeightFormat f : kEveryFormat) {
    SCOPED_TRACE(cpu::WeightFormatName(f));
    const ModelWeights full = WeightsIn(spec, f);
    const ModelWeights as_f32 = WeightsIn(spec, WeightFormat::kF32);
    for (int world : {2}) {
      for (int rank = 0; rank < world; ++rank) {
        Result<ModelWeights> shard = ShardWeights(full, rank, world);
        ASSERT_TRUE(shard.ok()) << shard.status().ToString();
        ASSERT_TRUE(ValidateShard(*shard, {rank, world}).ok()) << ValidateShard(*shard, {rank, world}).ToString();
        // Converting the fp32 shard gives the same bytes: cutting packed rows commutes
        // with converting them (every cut falls on a block boundary).
        Result<ModelWeights> f32_shard = ShardWeights(as_f32, rank, world);
        ASSERT_TRUE(f32_shard.ok());
        const ShardDims d = ShardDimsFor(spec, {rank, world});
        for (const auto& t : LayerTensors()) {
          if (!t.matrix || !t.present(spec)) continue;
          const LocalShape shape = LocalShapeOf(t, spec, d, world);
          EXPECT_EQ(shard->layers[0].*t.member, (f32_shard->layers[0].*t.member).ConvertTo(f, shape.rows, shape.cols))
              << t.name;
        }
        // The LM head rows copied out of the shared embedding, padded with zero bytes.
        WeightTensor head = f32_shard->classifier.ConvertTo(f, d.vocab_per_rank, spec.dim);
        const int64_t real_rows = std::max(0, std::min(d.vocab_per_rank, spec.vocab_size - d.vocab_begin));
        head.ZeroRowsFrom(real_rows, spec.dim);
        EXPECT_EQ(shard->classifier, head);
        if (rank == world - 1) {
          EXPECT_LT(real_rows, d.vocab_per_rank) << "the last rank pads";
        }
        EXPECT_EQ(shard->token_embedding, full.token_embedding);
      }
    }
  }
}

TEST(ShardPackedTest, AColumnSplitInsideABlockIsAnErrorNamingTheTensor) {
  ModelSpec spec = Spec256();  // q_dim 256: over 2 ranks 128 columns of wo, half a Q4_K block
  const ModelWeights full = WeightsIn(spec, WeightFormat::kQ4_K);
  Result<ModelWeights> shard = ShardWeights(full, 0, 2);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().ToString(),
            "InvalidArgument: tensor layers.0.wo is q4_k in blocks of 256 values, but tensor parallel size 2 leaves "
            "each rank 128 of its 256 columns, not whole blocks; use a tensor parallel size of 1, or model.dtype "
            "q8_0, q4_0, fp16, bf16, fp32");
  // Q8_0's blocks of 32 divide 128: fine.
  EXPECT_TRUE(ShardWeights(WeightsIn(spec, WeightFormat::kQ8_0), 1, 2).ok());
}

TEST(RotaryLayoutTest, HalvesToPairsMovesWholePackedRows) {
  const int head_dim = 4, cols = 32, heads = 2;
  const std::vector<float> values = Uniform(heads * head_dim * cols, 5);
  std::vector<float> permuted = values;
  HalvesToPairs(permuted, head_dim, cols);
  WeightTensor q8 = WeightTensor(values).ConvertTo(WeightFormat::kQ8_0, heads * head_dim, cols);
  HalvesToPairs(q8.mutable_bytes(), head_dim, cpu::WeightRowBytes(WeightFormat::kQ8_0, cols));
  EXPECT_EQ(q8, WeightTensor(permuted).ConvertTo(WeightFormat::kQ8_0, heads * head_dim, cols));
  EXPECT_NE(permuted, values);
}

// ---- the format rule -------------------------------------------------------------

Result<MatrixFormat> Choose(const WeightPolicy& policy, std::optional<WeightFormat> native, const std::string& name,
                            int64_t cols, TensorSplit split = TensorSplit::kQRows, int world = 1) {
  return ChooseMatrixFormat(policy, WeightSource{native, native ? "native" : "Q6_K"}, name, cols, split, Spec256(),
                            world);
}

TEST(WeightPolicyTest, AutoKeepsNativeFormatsAndMakesTheOthersQ8_0) {
  for (WeightFormat f : kEveryFormat) {
    Result<MatrixFormat> chosen = Choose(WeightPolicy::Auto(), f, "wq", 256);
    ASSERT_TRUE(chosen.ok());
    EXPECT_EQ(chosen->format, f);
    EXPECT_EQ(chosen->note, "");
  }
  Result<MatrixFormat> q6 = Choose(WeightPolicy::Auto(), std::nullopt, "blk.0.ffn_down.weight", 256);
  ASSERT_TRUE(q6.ok());
  EXPECT_EQ(q6->format, WeightFormat::kQ8_0);
  EXPECT_EQ(q6->note, "Q6_K -> q8_0 (auto: no CPU kernel for Q6_K)");
}

TEST(WeightPolicyTest, AFormatIsKeptWhereRowsAreWholeBlocksElseTheNearestThatFits) {
  Result<MatrixFormat> q4k = Choose(WeightPolicy::Exactly(WeightFormat::kQ4_K), WeightFormat::kF16, "w", 512);
  ASSERT_TRUE(q4k.ok());
  EXPECT_EQ(q4k->format, WeightFormat::kQ4_K);
  Result<MatrixFormat> q8 = Choose(WeightPolicy::Exactly(WeightFormat::kQ4_K), WeightFormat::kF32, "w", 896);
  ASSERT_TRUE(q8.ok());
  EXPECT_EQ(q8->format, WeightFormat::kQ8_0);
  EXPECT_EQ(q8->note, "q8_0 instead of q4_k (rows of 896 values are not whole blocks of 256)");
  Result<MatrixFormat> f16 = Choose(WeightPolicy::Exactly(WeightFormat::kQ4_0), WeightFormat::kF32, "w", 172);
  ASSERT_TRUE(f16.ok());
  EXPECT_EQ(f16->format, WeightFormat::kF16);
  EXPECT_EQ(f16->note, "fp16 instead of q4_0 (rows of 172 values are not whole blocks of 32)");
  EXPECT_EQ(WeightPolicy::Auto().ToString(), "auto");
  EXPECT_EQ(WeightPolicy().ToString(), "fp32");
  EXPECT_EQ(WeightPolicyFor(WeightDType::kQ4_0).ToString(), "q4_0");
  EXPECT_EQ(WeightPolicyFor(std::nullopt).ToString(), "auto");
}

TEST(WeightPolicyTest, ColumnSplitsMustKeepWholeBlocks) {
  // Spec256 over 2 ranks: w2's 512 columns give each rank 256, one Q4_K block; wo's 256
  // give 128, half a block.
  EXPECT_TRUE(Choose(WeightPolicy::Auto(), WeightFormat::kQ4_K, "w2", 512, TensorSplit::kHiddenCols, 2).ok());
  Result<MatrixFormat> wo = Choose(WeightPolicy::Auto(), WeightFormat::kQ4_K, "blk.0.attn_output.weight", 256,
                                   TensorSplit::kQCols, 2);
  ASSERT_FALSE(wo.ok());
  EXPECT_EQ(wo.status().ToString(),
            "InvalidArgument: tensor blk.0.attn_output.weight is q4_k in blocks of 256 values, but tensor parallel "
            "size 2 leaves each rank 128 of its 256 columns, not whole blocks; use a tensor parallel size of 1, or "
            "model.dtype q8_0, q4_0, fp16, bf16, fp32");
  // An explicit format is checked the same way, after the fallback for whole rows.
  EXPECT_FALSE(Choose(WeightPolicy::Exactly(WeightFormat::kQ4_K), WeightFormat::kF32, "wo", 256, TensorSplit::kQCols,
                      2)
                   .ok());
  EXPECT_TRUE(Choose(WeightPolicy::Exactly(WeightFormat::kQ4_0), WeightFormat::kF32, "wo", 256, TensorSplit::kQCols,
                     2)
                  .ok());
  // Row splits cut whole rows: any width.
  EXPECT_TRUE(Choose(WeightPolicy::Auto(), WeightFormat::kQ4_K, "w1", 256, TensorSplit::kHiddenRows, 2).ok());
}

}  // namespace
}  // namespace flover
