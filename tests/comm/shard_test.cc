// ShardWeights / CheckTensorParallel / ValidateShard (worker/model/shard.h): shapes,
// and that the shards put back together are exactly the full model.
#include "worker/model/shard.h"

#include <gtest/gtest.h>

#include "tests/comm/tp_models.h"

namespace flover {
namespace {

ModelSpec Stories260kSpec() {
  ModelSpec s;  // the shape of stories260K
  s.dim = 64;
  s.hidden_dim = 172;
  s.n_layers = 5;
  s.n_heads = 8;
  s.n_kv_heads = 4;
  s.vocab_size = 512;
  s.max_seq_len = 512;
  return s;
}

TEST(CheckTensorParallelTest, AcceptsSizesThatDivideHeadsKvHeadsAndHidden) {
  for (int world : {1, 2, 4}) EXPECT_TRUE(CheckTensorParallel(Stories260kSpec(), world).ok()) << world;
}

TEST(CheckTensorParallelTest, NamesTheDimensionThatDoesNotDivide) {
  const ModelSpec s = Stories260kSpec();
  EXPECT_EQ(CheckTensorParallel(s, 3).ToString(), "InvalidArgument: tensor parallel size 3 does not divide n_heads=8");
  EXPECT_EQ(CheckTensorParallel(s, 8).ToString(),
            "InvalidArgument: tensor parallel size 8 does not divide n_kv_heads=4");
  ModelSpec mha = s;
  mha.n_kv_heads = 8;
  EXPECT_EQ(CheckTensorParallel(mha, 8).ToString(),
            "InvalidArgument: tensor parallel size 8 does not divide hidden_dim=172");
  EXPECT_EQ(CheckTensorParallel(s, 0).ToString(), "InvalidArgument: tensor parallel size must be >= 1, got 0");
  EXPECT_EQ(CheckTensorParallel(s, -2).code(), StatusCode::kInvalidArgument);
}

TEST(ShardDimsTest, LocalSizesAndVocabularySlices) {
  const ModelSpec s = testing::SmallTpSpec(true);  // vocab 11
  const ShardDims d = ShardDimsFor(s, {3, 4});
  EXPECT_EQ(d.n_heads, 2);
  EXPECT_EQ(d.n_kv_heads, 1);
  EXPECT_EQ(d.q_dim, 8);
  EXPECT_EQ(d.kv_dim, 4);
  EXPECT_EQ(d.hidden_dim, 6);
  EXPECT_EQ(d.vocab_per_rank, 3);  // ceil(11 / 4)
  EXPECT_EQ(d.vocab_begin, 9);     // ids 9, 10 and one padding row
  const ShardDims one = ShardDimsFor(s, {});
  EXPECT_EQ(one.q_dim, s.q_dim());
  EXPECT_EQ(one.vocab_per_rank, 11);
}

// Rows [begin, begin + n) of a [rows, cols] matrix.
std::vector<float> Rows(const std::vector<float>& m, int cols, int begin, int n) {
  return std::vector<float>(m.begin() + static_cast<size_t>(begin) * cols,
                            m.begin() + static_cast<size_t>(begin + n) * cols);
}

// Puts the column slices [rows, cols/world] of every rank side by side.
std::vector<float> JoinColumns(const std::vector<std::vector<float>>& parts, int rows) {
  std::vector<float> out;
  for (int r = 0; r < rows; ++r)
    for (const std::vector<float>& p : parts) {
      const size_t cols = p.size() / rows;
      out.insert(out.end(), p.begin() + r * cols, p.begin() + (r + 1) * cols);
    }
  return out;
}

std::vector<float> JoinRows(const std::vector<std::vector<float>>& parts) {
  std::vector<float> out;
  for (const std::vector<float>& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void ExpectShardsRebuildTheModel(bool shared_classifier, int world) {
  const ModelSpec spec = testing::SmallTpSpec(shared_classifier);
  const ModelWeights full = testing::RandomWeights(spec, 7);
  ASSERT_TRUE(full.Validate().ok());
  std::vector<ModelWeights> shards;
  for (int rank = 0; rank < world; ++rank) {
    Result<ModelWeights> s = ShardWeights(full, rank, world);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(ValidateShard(*s, {rank, world}).ok()) << ValidateShard(*s, {rank, world}).ToString();
    EXPECT_EQ(s->spec.dim, spec.dim) << "the spec stays the full model's";
    EXPECT_EQ(s->spec.n_heads, spec.n_heads);
    shards.push_back(std::move(s).value());
  }
  const ShardDims d = ShardDimsFor(spec, {0, world});
  auto gather = [&](auto field) {
    std::vector<std::vector<float>> parts;
    for (const ModelWeights& s : shards) {
      const auto& part = field(s);
      parts.emplace_back(part.begin(), part.end());
    }
    return parts;
  };
  for (int l = 0; l < spec.n_layers; ++l) {
    const LayerWeights& f = full.layers[l];
    for (const ModelWeights& s : shards) {
      const LayerWeights& p = s.layers[l];
      EXPECT_EQ(p.wq.f32().size(), static_cast<size_t>(d.q_dim) * spec.dim);
      EXPECT_EQ(p.wk.f32().size(), static_cast<size_t>(d.kv_dim) * spec.dim);
      EXPECT_EQ(p.wo.f32().size(), static_cast<size_t>(spec.dim) * d.q_dim);
      EXPECT_EQ(p.w1.f32().size(), static_cast<size_t>(d.hidden_dim) * spec.dim);
      EXPECT_EQ(p.w2.f32().size(), static_cast<size_t>(spec.dim) * d.hidden_dim);
      EXPECT_EQ(p.attn_norm, f.attn_norm);
      EXPECT_EQ(p.ffn_norm, f.ffn_norm);
    }
    EXPECT_EQ(JoinRows(gather([&](const ModelWeights& s) { return s.layers[l].wq.f32(); })), f.wq.f32()) << "layer " << l;
    EXPECT_EQ(JoinRows(gather([&](const ModelWeights& s) { return s.layers[l].wk.f32(); })), f.wk.f32());
    EXPECT_EQ(JoinRows(gather([&](const ModelWeights& s) { return s.layers[l].wv.f32(); })), f.wv.f32());
    EXPECT_EQ(JoinRows(gather([&](const ModelWeights& s) { return s.layers[l].w1.f32(); })), f.w1.f32());
    EXPECT_EQ(JoinRows(gather([&](const ModelWeights& s) { return s.layers[l].w3.f32(); })), f.w3.f32());
    EXPECT_EQ(JoinColumns(gather([&](const ModelWeights& s) { return s.layers[l].wo.f32(); }), spec.dim), f.wo.f32());
    EXPECT_EQ(JoinColumns(gather([&](const ModelWeights& s) { return s.layers[l].w2.f32(); }), spec.dim), f.w2.f32());
  }
  // LM head: rank-major rows, padded with zero rows up to world * vocab_per_rank.
  std::vector<float> head = JoinRows(gather([](const ModelWeights& s) { return s.classifier.f32(); }));
  ASSERT_EQ(head.size(), static_cast<size_t>(world) * d.vocab_per_rank * spec.dim);
  EXPECT_EQ(Rows(head, spec.dim, 0, spec.vocab_size), full.lm_head().f32());
  for (size_t i = static_cast<size_t>(spec.vocab_size) * spec.dim; i < head.size(); ++i) ASSERT_EQ(head[i], 0.0f);
  for (const ModelWeights& s : shards) {
    EXPECT_EQ(s.token_embedding, full.token_embedding) << "the embedding stays whole for the lookup";
    EXPECT_EQ(s.final_norm, full.final_norm);
  }
}

TEST(ShardWeightsTest, TwoShardsRebuildTheModelSharedClassifier) { ExpectShardsRebuildTheModel(true, 2); }
TEST(ShardWeightsTest, FourShardsRebuildTheModelSharedClassifier) { ExpectShardsRebuildTheModel(true, 4); }
TEST(ShardWeightsTest, TwoShardsRebuildTheModelSeparateClassifier) { ExpectShardsRebuildTheModel(false, 2); }
TEST(ShardWeightsTest, FourShardsRebuildTheModelSeparateClassifier) { ExpectShardsRebuildTheModel(false, 4); }

TEST(ShardWeightsTest, OneShardIsTheModelUnchanged) {
  const ModelWeights full = testing::RandomWeights(testing::SmallTpSpec(true), 3);
  Result<ModelWeights> s = ShardWeights(full, 0, 1);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->token_embedding, full.token_embedding);
  EXPECT_TRUE(s->classifier.empty());
  EXPECT_EQ(s->layers[1].wo, full.layers[1].wo);
  EXPECT_TRUE(ValidateShard(*s, {}).ok());
}

TEST(ShardWeightsTest, RejectsBadRankOrSize) {
  const ModelWeights full = testing::RandomWeights(testing::SmallTpSpec(true), 3);
  EXPECT_EQ(ShardWeights(full, 0, 3).status().ToString(),
            "InvalidArgument: tensor parallel size 3 does not divide n_heads=8");
  EXPECT_EQ(ShardWeights(full, 2, 2).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardWeights(full, -1, 2).status().code(), StatusCode::kInvalidArgument);
  ModelWeights broken = full;
  broken.layers[0].wq.f32().pop_back();
  EXPECT_EQ(ShardWeights(broken, 0, 2).status().code(), StatusCode::kCorruption);
}

TEST(ValidateShardTest, RejectsAShardOfAnotherSizeOrTheFullModel) {
  const ModelWeights full = testing::RandomWeights(testing::SmallTpSpec(true), 3);
  Result<ModelWeights> half = ShardWeights(full, 1, 2);
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(ValidateShard(*half, {1, 4}).code(), StatusCode::kCorruption);
  EXPECT_EQ(ValidateShard(*half, {}).code(), StatusCode::kCorruption);
  EXPECT_EQ(ValidateShard(full, {0, 2}).code(), StatusCode::kCorruption);
  EXPECT_EQ(ValidateShard(*half, {2, 2}).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flover
