// Loading only one tensor-parallel rank's shard (LoadModel with a LoadTarget): for every
// format (llama2.c, GGUF, dummy weights) and rank, exactly ShardWeights of the whole
// model, and the shape check runs before any tensor is read.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/model/gguf_writer.h"
#include "tests/model/test_model_files.h"
#include "tests/test_paths.h"
#include "worker/model/dummy_model.h"
#include "worker/model/model_loader.h"
#include "worker/model/shard.h"

namespace flover {
namespace {

using testing::ExpectSameWeights;
using testing::ScratchDir;

// Every rank of `world`: the sharded load equals the shard of the whole load, and holds
// ShardParams floats.
void ExpectShardedLoadsMatch(const std::string& path, int world) {
  Result<LoadedModel> whole = LoadModel(path);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  for (int rank = 0; rank < world; ++rank) {
    SCOPED_TRACE(path + ", rank " + std::to_string(rank) + " of " + std::to_string(world));
    Result<ModelWeights> expected = ShardWeights(whole->weights, rank, world);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    Result<LoadedModel> shard = LoadModel(path, 0, LoadTarget{ShardInfo{rank, world}, nullptr});
    ASSERT_TRUE(shard.ok()) << shard.status().ToString();
    ExpectSameWeights(*expected, shard->weights);
    EXPECT_TRUE(ValidateShard(shard->weights, ShardInfo{rank, world}).ok());

    int64_t floats = shard->weights.token_embedding.f32().size() + shard->weights.final_norm.f32().size() +
                     shard->weights.classifier.f32().size();
    for (const LayerWeights& l : shard->weights.layers)
      for (const WeightTensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w1, &l.w2, &l.w3})
        floats += static_cast<int64_t>(t->f32().size());
    EXPECT_EQ(floats, ShardParams(whole->weights.spec, world));
  }
}

TEST(ShardedLoadTest, Stories260kBinEveryRankOfTwoAndFour) {
  for (int world : {2, 4}) ExpectShardedLoadsMatch(testing::Stories260kBin(), world);
}

// A separate classifier and a vocabulary that does not split evenly (the last rank's LM
// head is padded), from llama2.c and from GGUF files (F32 and F16).
TEST(ShardedLoadTest, SeparateClassifierWithUnevenVocabularyInEveryFormat) {
  ScratchDir dir;
  ModelSpec spec = testing::SmallSpec(/*shared_classifier=*/false);
  spec.vocab_size = 41;
  const ModelWeights w = testing::RandomWeights(spec, 11);
  ASSERT_TRUE(testing::WriteBytes(dir.Path("m.bin"), testing::Llama2cBytes(w)));
  ASSERT_TRUE(testing::LlamaGguf(w).WriteFile(dir.Path("m.gguf")));
  ASSERT_TRUE(testing::LlamaGguf(w, /*f16=*/true).WriteFile(dir.Path("m16.gguf")));
  for (const char* name : {"m.bin", "m.gguf", "m16.gguf"}) ExpectShardedLoadsMatch(dir.Path(name), 2);
}

TEST(ShardedLoadTest, SharedClassifierGguf) {
  ScratchDir dir;
  const ModelWeights w = testing::RandomWeights(testing::SmallSpec(/*shared_classifier=*/true), 12);
  ASSERT_TRUE(testing::LlamaGguf(w).WriteFile(dir.Path("m.gguf")));
  ExpectShardedLoadsMatch(dir.Path("m.gguf"), 2);
}

// Q8_0 matrices: each rank reads and dequantizes only its rows (or, for wo and w2, its
// columns of every row), and gets exactly the shard of the dequantized model.
TEST(ShardedLoadTest, Q8_0GgufEveryRankOfTwo) {
  ScratchDir dir;
  for (bool shared : {true, false}) {
    const ModelWeights w = testing::RandomWeights(testing::Q8Spec(shared), 14);
    ModelWeights dequantized;
    ASSERT_TRUE(testing::LlamaGgufQ8_0(w, &dequantized).WriteFile(dir.Path("q8.gguf")));
    ExpectShardedLoadsMatch(dir.Path("q8.gguf"), 2);
    for (int rank = 0; rank < 2; ++rank) {
      Result<ModelWeights> expected = ShardWeights(dequantized, rank, 2);
      Result<LoadedModel> shard = LoadModel(dir.Path("q8.gguf"), 0, LoadTarget{ShardInfo{rank, 2}, nullptr});
      ASSERT_TRUE(expected.ok() && shard.ok()) << shard.status().ToString();
      ExpectSameWeights(*expected, shard->weights);
    }
  }
}

// vocab 5 over 4 ranks: 2 LM head rows per rank, so the last rank's rows begin past the
// vocabulary (all padding) and it reads none.
TEST(ShardedLoadTest, RankWhoseLmHeadRowsAreAllPadding) {
  ScratchDir dir;
  ModelSpec spec = testing::SmallSpec(/*shared_classifier=*/false);
  spec.n_kv_heads = 4;
  spec.vocab_size = 5;
  const ModelWeights w = testing::RandomWeights(spec, 15);
  ASSERT_TRUE(testing::LlamaGguf(w).WriteFile(dir.Path("m.gguf")));
  ExpectShardedLoadsMatch(dir.Path("m.gguf"), 4);
}

TEST(ShardedLoadTest, DummyPresetsShardTheSameValues) {
  ExpectShardedLoadsMatch("dummy:tiny", 2);
  ExpectShardedLoadsMatch("dummy:tiny", 4);
  ModelSpec spec = testing::SmallSpec(/*shared_classifier=*/false);
  spec.vocab_size = 41;
  Result<ModelWeights> whole = MakeDummyWeights(spec, 5);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  for (int rank = 0; rank < 2; ++rank) {
    Result<ModelWeights> expected = ShardWeights(*whole, rank, 2);
    Result<ModelWeights> shard = MakeDummyWeights(spec, 5, LoadTarget{ShardInfo{rank, 2}, nullptr});
    ASSERT_TRUE(expected.ok() && shard.ok()) << shard.status().ToString();
    ExpectSameWeights(*expected, *shard);
  }
}

// The shape check sees the model's spec and its error is returned as is, before any
// tensor is read.
TEST(ShardedLoadTest, ShapeCheckRunsFirstAndItsErrorIsReturned) {
  ScratchDir dir;
  const ModelWeights w = testing::RandomWeights(testing::SmallSpec(), 13);
  const std::string bytes = testing::Llama2cBytes(w);
  ASSERT_TRUE(testing::WriteBytes(dir.Path("m.bin"), bytes));
  ASSERT_TRUE(testing::LlamaGguf(w).WriteFile(dir.Path("m.gguf")));
  for (const std::string& path : {dir.Path("m.bin"), dir.Path("m.gguf"), std::string("dummy:tiny")}) {
    ModelSpec seen;
    LoadTarget target{ShardInfo{0, 2}, [&](const ModelSpec& spec) {
                        seen = spec;
                        return InvalidArgument("cluster.yaml: model does not fit");
                      }};
    Result<LoadedModel> m = LoadModel(path, 0, target);
    ASSERT_FALSE(m.ok()) << path;
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << path;
    EXPECT_NE(m.status().message().find("cluster.yaml: model does not fit"), std::string::npos)
        << m.status().ToString();
    EXPECT_GT(seen.dim, 0) << path;
  }
}

TEST(ShardedLoadTest, TensorParallelThatDoesNotDivideIsInvalidArgument) {
  Result<LoadedModel> m = LoadModel(testing::Stories260kBin(), 0, LoadTarget{ShardInfo{0, 3}, nullptr});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("tensor parallel size 3 does not divide"), std::string::npos)
      << m.status().ToString();
  m = LoadModel("dummy:tiny", 0, LoadTarget{ShardInfo{2, 2}, nullptr});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << m.status().ToString();
}

// A rank of a large dummy model needs only its shard's memory: the check counts
// ShardParams, so llama-13b (52 GB of fp32) fits 8 ranks of a 24 GB machine.
TEST(ShardedLoadTest, DummyMemoryCheckCountsTheShard) {
  const ModelSpec spec = *DummyPreset("llama-13b");
  const int64_t available = int64_t{23'400'000'000};
  EXPECT_FALSE(CheckDummyWeightsFit("llama-13b", spec, available, 1).ok());
  Status s = CheckDummyWeightsFit("llama-13b", spec, available, 8);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_LT(ShardParams(spec, 8), spec.n_params() / 4);
}

}  // namespace
}  // namespace flover
