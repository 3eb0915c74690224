#include "worker/model/dummy_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "worker/model/model_loader.h"

namespace flover {
namespace {

using ::testing::HasSubstr;

struct Expected {
  const char* name;
  int dim, hidden, layers, heads, kv_heads, vocab, seq;
  bool shared;
};

constexpr Expected kPresets[] = {
    {"tiny", 64, 172, 5, 8, 4, 512, 512, true},
    {"stories260k", 64, 172, 5, 8, 4, 512, 512, true},
    {"stories15m", 288, 768, 6, 6, 6, 32000, 1024, true},
    {"stories110m", 768, 2048, 12, 12, 12, 32000, 1024, true},
    {"llama-110m", 768, 2048, 12, 12, 12, 32000, 1024, true},
    {"llama-7b", 4096, 11008, 32, 32, 32, 32000, 4096, false},
    {"llama-13b", 5120, 13824, 40, 40, 40, 32000, 4096, false},
    {"llama3-1b", 2048, 8192, 16, 32, 8, 128256, 8192, true},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, false},
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, false},
    {"mistral-7b", 4096, 14336, 32, 32, 8, 32000, 8192, false},
    {"qwen2-0.5b", 896, 4864, 24, 14, 2, 151936, 8192, true},
    {"gptj-6b", 4096, 16384, 28, 16, 16, 50400, 2048, false},
};

bool SameBytes(const WeightTensor& a, const WeightTensor& b) { return a == b; }

bool SameWeights(const ModelWeights& a, const ModelWeights& b) {
  if (!SameBytes(a.token_embedding, b.token_embedding) || !SameBytes(a.final_norm, b.final_norm) ||
      !SameBytes(a.classifier, b.classifier) || a.layers.size() != b.layers.size())
    return false;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerWeights &x = a.layers[i], &y = b.layers[i];
    if (!SameBytes(x.attn_norm, y.attn_norm) || !SameBytes(x.wq, y.wq) || !SameBytes(x.wk, y.wk) ||
        !SameBytes(x.wv, y.wv) || !SameBytes(x.wo, y.wo) || !SameBytes(x.ffn_norm, y.ffn_norm) ||
        !SameBytes(x.w1, y.w1) || !SameBytes(x.w2, y.w2) || !SameBytes(x.w3, y.w3))
      return false;
  }
  return true;
}

TEST(DummyModelTest, PresetsHaveTheirShapes) {
  std::vector<std::string> names;
  for (const Expected& e : kPresets) {
    names.push_back(e.name);
    std::optional<ModelSpec> s = DummyPreset(e.name);
    ASSERT_TRUE(s.has_value()) << e.name;
    EXPECT_EQ(s->dim, e.dim) << e.name;
    EXPECT_EQ(s->hidden_dim, e.hidden) << e.name;
    EXPECT_EQ(s->n_layers, e.layers) << e.name;
    EXPECT_EQ(s->n_heads, e.heads) << e.name;
    EXPECT_EQ(s->n_kv_heads, e.kv_heads) << e.name;
    EXPECT_EQ(s->vocab_size, e.vocab) << e.name;
    EXPECT_EQ(s->max_seq_len, e.seq) << e.name;
    EXPECT_EQ(s->shared_classifier, e.shared) << e.name;
    EXPECT_TRUE(s->Validate().ok()) << e.name;
  }
  EXPECT_EQ(DummyPresetNames(), names);
  // Known parameter counts: LLaMA-7B is 6.74e9 parameters, stories15M 15.2e6, and the
  // checkpoints of the other shapes (their Hugging Face model cards' totals).
  EXPECT_EQ(DummyPreset("llama-7b")->n_params(), 6738415616);
  EXPECT_EQ(DummyPreset("stories15m")->n_params(), 15191712);
  EXPECT_EQ(DummyPreset("llama3-1b")->n_params(), 1235814400);
  EXPECT_EQ(DummyPreset("llama3-8b")->n_params(), 8030261248);
  EXPECT_EQ(DummyPreset("tinyllama-1.1b")->n_params(), 1100048384);
  EXPECT_EQ(DummyPreset("mistral-7b")->n_params(), 7241732096);
  EXPECT_EQ(DummyPreset("qwen2-0.5b")->n_params(), 494032768);
}

// The architecture fields of the presets that are not LLaMA 2.
TEST(DummyModelTest, PresetsHaveTheirArchitectures) {
  for (const char* name : {"tiny", "llama-7b", "tinyllama-1.1b"}) {
    const ModelSpec s = *DummyPreset(name);
    EXPECT_EQ(s.arch, "llama") << name;
    EXPECT_EQ(s.rope_theta, 10000.0f) << name;
    EXPECT_EQ(s.rope_scaling.kind, RopeScaling::Kind::kNone) << name;
  }
  for (const auto& [name, factor] : {std::pair{"llama3-1b", 32.0f}, std::pair{"llama3-8b", 8.0f}}) {
    const ModelSpec s = *DummyPreset(name);
    EXPECT_EQ(s.rope_theta, 500000.0f) << name;
    EXPECT_EQ(s.rope_scaling.kind, RopeScaling::Kind::kLlama3) << name;
    EXPECT_EQ(s.rope_scaling.factor, factor) << name;
    EXPECT_EQ(s.rope_scaling.low_freq_factor, 1.0f) << name;
    EXPECT_EQ(s.rope_scaling.high_freq_factor, 4.0f) << name;
    EXPECT_EQ(s.rope_scaling.original_max_position, 8192) << name;
    EXPECT_EQ(s.eos_id, 128001) << name;
  }
  const ModelSpec mistral = *DummyPreset("mistral-7b");
  EXPECT_EQ(mistral.rope_theta, 1000000.0f);
  EXPECT_EQ(mistral.sliding_window, 0);
  const ModelSpec qwen2 = *DummyPreset("qwen2-0.5b");
  EXPECT_TRUE(qwen2.qkv_bias);
  EXPECT_FALSE(qwen2.ffn_bias || qwen2.classifier_bias);
  EXPECT_EQ(qwen2.rope_theta, 1000000.0f);
  EXPECT_TRUE(CheckTensorParallel(qwen2, 2).ok());
  const ModelSpec gptj = *DummyPreset("gptj-6b");
  EXPECT_EQ(gptj.norm, NormKind::kLayer);
  EXPECT_EQ(gptj.ffn, FfnKind::kGelu);
  EXPECT_TRUE(gptj.parallel_residual && gptj.ffn_bias && gptj.classifier_bias);
  EXPECT_FALSE(gptj.qkv_bias);
  EXPECT_EQ(gptj.rotary_dim, 64);
  EXPECT_EQ(gptj.head_dim(), 256);
  EXPECT_EQ(gptj.n_params(), 6050882784);  // 6.05e9, a separate LM head with its bias
}

// The generator makes every tensor the spec has, biases and norm biases included.
TEST(DummyModelTest, ArchitectureTensorsArePresentAndScaled) {
  ModelSpec spec = *DummyPreset("tiny");
  spec.norm = NormKind::kLayer;
  spec.qkv_bias = spec.ffn_bias = spec.classifier_bias = true;
  Result<ModelWeights> w = MakeDummyWeights(spec, 5);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  for (float x : w->final_norm_bias.f32()) ASSERT_EQ(x, 0.0f);
  for (float x : w->layers[0].ffn_norm_bias.f32()) ASSERT_EQ(x, 0.0f);
  for (const WeightTensor* bias : {&w->layers[0].bq, &w->layers[1].b1, &w->classifier_bias}) {
    ASSERT_FALSE(bias->empty());
    float largest = 0.0f;
    for (float x : bias->f32()) largest = std::max(largest, std::fabs(x));
    EXPECT_LE(largest, 0.1f);
    EXPECT_GT(largest, 0.05f);
  }
}

TEST(DummyModelTest, TinyWeightsAreCompleteAndScaled) {
  Result<ModelWeights> w = MakeDummyWeights("tiny", 0);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_TRUE(w->Validate().ok());
  EXPECT_EQ(w->spec.ToString(), DummyPreset("tiny")->ToString());
  for (float x : w->final_norm.f32()) ASSERT_EQ(x, 1.0f);
  for (float x : w->layers[0].attn_norm.f32()) ASSERT_EQ(x, 1.0f);
  // Uniform in [-a, a] with a = sqrt(3 / in): variance 1/in.
  auto check = [](const WeightTensor& tensor, float in, const char* name) {
    const auto& t = tensor.f32();
    const float a = std::sqrt(3.0f / in);
    double sum = 0, sum_sq = 0;
    for (float x : t) {
      ASSERT_LE(std::fabs(x), a) << name;
      sum += x;
      sum_sq += double{x} * x;
    }
    const double mean = sum / t.size(), var = sum_sq / t.size() - mean * mean;
    EXPECT_NEAR(mean, 0.0, 4 * a / std::sqrt(3.0 * t.size())) << name;
    EXPECT_NEAR(var * in, 1.0, 0.05) << name;
  };
  check(w->token_embedding, 3.0f, "embedding");  // a = 1
  check(w->layers[0].wq, 64, "wq");
  check(w->layers[1].w2, 172, "w2");
}

TEST(DummyModelTest, SameSeedSameBytesOtherSeedOtherBytes) {
  Result<ModelWeights> a = MakeDummyWeights("tiny", 42);
  Result<ModelWeights> b = MakeDummyWeights("tiny", 42);
  Result<ModelWeights> c = MakeDummyWeights("tiny", 43);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(SameWeights(*a, *b));
  EXPECT_FALSE(SameWeights(*a, *c));
  EXPECT_FALSE(SameBytes(a->layers[0].wq, c->layers[0].wq));
  // Tensors of the same shape within one model differ too.
  EXPECT_FALSE(SameBytes(a->layers[0].wq, a->layers[1].wq));
  EXPECT_FALSE(SameBytes(a->layers[0].w1, a->layers[0].w3));
}

TEST(DummyModelTest, IndependentOfThreadCount) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  Result<ModelWeights> one = MakeDummyWeights("stories15m", 9);
  omp_set_num_threads(3);
  Result<ModelWeights> three = MakeDummyWeights("stories15m", 9);
  omp_set_num_threads(saved);
  ASSERT_TRUE(one.ok() && three.ok());
  EXPECT_TRUE(SameWeights(*one, *three));
}

TEST(DummyModelTest, SeparateClassifierForLlamaShapes) {
  // Built only as a spec: llama-7b does not fit every test machine.
  EXPECT_FALSE(DummyPreset("llama-7b")->shared_classifier);
  Result<ModelWeights> w = MakeDummyWeights("stories110m", 1);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_TRUE(w->classifier.empty());
  EXPECT_EQ(w->token_embedding.f32().size(), 32000u * 768u);
}

TEST(DummyModelTest, UnknownPresetListsThePresets) {
  Result<ModelWeights> w = MakeDummyWeights("gpt5", 0);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("dummy:gpt5"));
  EXPECT_THAT(w.status().message(), HasSubstr("tiny, stories260k, stories15m"));
  EXPECT_THAT(w.status().message(), HasSubstr("llama-13b"));
}

TEST(DummyModelTest, FitCheckMessage) {
  Status s = CheckDummyWeightsFit("llama-13b", *DummyPreset("llama-13b"), int64_t{23'400'000'000});
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "dummy:llama-13b needs 52.1 GB of fp32 weights; this machine has 23.4 GB available");
  EXPECT_TRUE(CheckDummyWeightsFit("tiny", *DummyPreset("tiny"), int64_t{23'400'000'000}).ok());
  // 90% threshold: 100 bytes of weights need more than 111 available.
  ModelSpec tiny = *DummyPreset("tiny");
  const int64_t bytes = tiny.n_params() * 4;
  EXPECT_FALSE(CheckDummyWeightsFit("tiny", tiny, bytes).ok());
  EXPECT_TRUE(CheckDummyWeightsFit("tiny", tiny, bytes * 10 / 9 + 16).ok());
}

TEST(DummyModelTest, Llama13bIsRefusedBeforeAllocatingWhenItDoesNotFit) {
  const int64_t available = AvailableMemoryBytes();
  ASSERT_GT(available, 0);
  const int64_t needed = DummyPreset("llama-13b")->n_params() * 4;
  if (needed <= 0.9 * static_cast<double>(available)) {
    // A machine this large would really allocate 52 GB; check the decision only.
    EXPECT_TRUE(CheckDummyWeightsFit("llama-13b", *DummyPreset("llama-13b"), available).ok());
    return;
  }
  Result<LoadedModel> m = LoadModel("dummy:llama-13b");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(m.status().message(), HasSubstr("dummy:llama-13b needs 52.1 GB of fp32 weights"));
}

TEST(ModelLoaderTest, DummyNamesDispatch) {
  Result<LoadedModel> m = LoadModel("dummy:tiny", 5);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->description, "dummy:tiny (seed 5)");
  EXPECT_FALSE(m->tokenizer.has_value());
  Result<ModelWeights> direct = MakeDummyWeights("tiny", 5);
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(SameWeights(m->weights, *direct));
  Result<LoadedModel> bad = LoadModel("dummy:nope");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("dummy:nope"));
}

}  // namespace
}  // namespace flover
