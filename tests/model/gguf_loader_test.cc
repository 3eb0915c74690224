#include "worker/model/gguf_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "tests/model/gguf_writer.h"
#include "tests/model/test_model_files.h"
#include "tests/test_paths.h"
#include "worker/model/gguf_reader.h"
#include "worker/model/llama2c_loader.h"
#include "worker/model/model_loader.h"
#include "worker/model/shard.h"

namespace flover {
namespace {

using ::flover::testing::ExpectSameWeights;
using ::flover::testing::FloatToHalf;
using ::flover::testing::GgufWriter;
using ::flover::testing::LlamaGguf;
using ::flover::testing::RandomWeights;
using ::flover::testing::ScratchDir;
using ::flover::testing::SmallSpec;
using ::testing::HasSubstr;

std::string U32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string U64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }

float ReferenceHalf(uint16_t h) { return ::flover::testing::ReferenceHalfToFloat(h); }

ModelWeights RoundedToHalf(ModelWeights w) {
  auto round = [](WeightTensor& t) {
    for (float& x : t.f32()) x = ReferenceHalf(FloatToHalf(x));
  };
  round(w.token_embedding);
  for (LayerWeights& l : w.layers) {
    for (auto* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w1, &l.w2, &l.w3}) round(*t);
  }
  round(w.final_norm);
  round(w.classifier);
  return w;
}

// Writes `g` to a file in `dir` and loads it.
Result<GgufModel> WriteAndLoad(const ScratchDir& dir, const GgufWriter& g, const std::string& name = "m.gguf") {
  const std::string path = dir.Path(name);
  EXPECT_TRUE(g.WriteFile(path));
  return LoadGgufModel(path);
}

// Expects a failure with `code` whose message names the file and contains `needle`.
void ExpectError(const ScratchDir& dir, const GgufWriter& g, StatusCode code, const std::string& needle) {
  Result<GgufModel> m = WriteAndLoad(dir, g);
  ASSERT_FALSE(m.ok()) << "loaded although it should fail with " << needle;
  EXPECT_EQ(m.status().code(), code) << m.status().ToString();
  EXPECT_THAT(m.status().message(), HasSubstr(dir.Path("m.gguf")));
  EXPECT_THAT(m.status().message(), HasSubstr(needle));
}

TEST(HalfToFloatTest, MatchesTheDefinitionForAllInputs) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  std::vector<float> bulk(all.size());
  ConvertHalfToFloat(all.data(), bulk.data(), all.size());
  for (uint32_t h = 0; h < 65536; ++h) {
    const float scalar = HalfToFloat(static_cast<uint16_t>(h));
    const float ref = ReferenceHalf(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(scalar)) << std::hex << h;
    } else {
      ASSERT_EQ(std::bit_cast<uint32_t>(scalar), std::bit_cast<uint32_t>(ref)) << std::hex << h;
    }
    // The bulk (possibly F16C) path gives the same bits, NaNs included.
    ASSERT_EQ(std::bit_cast<uint32_t>(bulk[h]), std::bit_cast<uint32_t>(scalar)) << std::hex << h;
  }
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(std::bit_cast<uint32_t>(HalfToFloat(0x8000)), 0x80000000u);
  EXPECT_EQ(HalfToFloat(0xFC00), -INFINITY);
}

TEST(HalfToFloatTest, TestWriterRoundsToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;  // NaN
    ASSERT_EQ(FloatToHalf(ReferenceHalf(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);             // tie -> even (0)
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -26)), 0x0001);
}

TEST(GgufLoaderTest, Stories260kGgufEqualsTheBin) {
  const std::string gguf_path = ::flover::testing::Stories260kGguf();
  const std::string bin_path = ::flover::testing::Stories260kBin();
  ASSERT_TRUE(std::filesystem::exists(gguf_path)) << "missing test model " << gguf_path;
  ASSERT_TRUE(std::filesystem::exists(bin_path)) << "missing test model " << bin_path;
  Result<GgufModel> gguf = LoadGgufModel(gguf_path);
  ASSERT_TRUE(gguf.ok()) << gguf.status().ToString();
  Result<ModelWeights> bin = LoadLlama2cCheckpoint(bin_path);
  ASSERT_TRUE(bin.ok()) << bin.status().ToString();

  // output.weight is an explicit copy of token_embd: loaded as shared.
  EXPECT_TRUE(gguf->weights.spec.shared_classifier);
  ExpectSameWeights(*bin, gguf->weights);

  ASSERT_TRUE(gguf->tokenizer.has_value());
  const Tokenizer& tok = *gguf->tokenizer;
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.piece(0), "<unk>");
  EXPECT_EQ(tok.piece(3), "<0x00>");
  // README: "Sara" encodes to 1 301 295 412 with tok512 (same pieces and scores).
  EXPECT_EQ(tok.Encode("Sara"), (std::vector<int>{1, 301, 295, 412}));
}

TEST(GgufLoaderTest, ReaderSeesTheReadmeLayout) {
  Result<std::unique_ptr<GgufReader>> r = GgufReader::Open(::flover::testing::Stories260kGguf());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->version(), 3u);
  EXPECT_EQ((*r)->tensors().size(), 48u);
  EXPECT_EQ((*r)->alignment(), 32u);
  const GgufValue* tokens = (*r)->Find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->strings.size(), 512u);
  const GgufTensorInfo* emb = (*r)->FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ne, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(emb->ggml_type, kGgmlTypeF32);
}

TEST(GgufLoaderTest, F32RoundTripWithSeparateOutput) {
  ScratchDir dir;
  const ModelWeights w = RandomWeights(SmallSpec(/*shared_classifier=*/false), 3);
  Result<GgufModel> m = WriteAndLoad(dir, LlamaGguf(w));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->weights.spec.shared_classifier);
  ExpectSameWeights(w, m->weights);
  ASSERT_TRUE(m->tokenizer.has_value());
  EXPECT_EQ(m->tokenizer->vocab_size(), w.spec.vocab_size);
}

TEST(GgufLoaderTest, F16RoundTripEqualsHalfRoundedValues) {
  ScratchDir dir;
  for (bool shared : {true, false}) {
    const ModelWeights w = RandomWeights(SmallSpec(shared), 4);
    Result<GgufModel> m = WriteAndLoad(dir, LlamaGguf(w, /*f16=*/true));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ExpectSameWeights(RoundedToHalf(w), m->weights);
    // Rounding did change values, so the comparison above is not vacuous.
    EXPECT_NE(m->weights.layers[0].wq, w.layers[0].wq);
  }
}

TEST(GgufLoaderTest, OutputEqualToEmbeddingIsShared) {
  ScratchDir dir;
  const ModelWeights w = RandomWeights(SmallSpec(true), 5);
  GgufWriter g = LlamaGguf(w);
  g.AddTensorF32("output.weight", {16, 40}, w.token_embedding.f32());
  Result<GgufModel> m = WriteAndLoad(dir, g);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->weights.spec.shared_classifier);
  EXPECT_TRUE(m->weights.classifier.empty());
  ExpectSameWeights(w, m->weights);
}

TEST(GgufLoaderTest, VersionTwoAlignment64AndNoVocabLoad) {
  ScratchDir dir;
  ModelWeights w = RandomWeights(SmallSpec(), 6);
  GgufWriter g = LlamaGguf(w);
  g.SetVersion(2);
  g.SetAlignment(64);
  for (const char* k : {"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                        "llama.rope.freq_base", "llama.attention.head_count_kv"})
    g.RemoveKey(k);
  // head_count_kv defaults to head_count: make the file a multi-head-attention model.
  w.spec.n_kv_heads = w.spec.n_heads;
  for (LayerWeights& l : w.layers) {
    l.wk.f32().resize(w.spec.dim * w.spec.dim, 0.25f);
    l.wv.f32().resize(w.spec.dim * w.spec.dim, -0.5f);
  }
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    g.RemoveTensor(p + "attn_k.weight");
    g.RemoveTensor(p + "attn_v.weight");
    g.AddTensorF32(p + "attn_k.weight", {16, 16}, w.layers[l].wk.f32());
    g.AddTensorF32(p + "attn_v.weight", {16, 16}, w.layers[l].wv.f32());
  }
  Result<GgufModel> m = WriteAndLoad(dir, g);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->tokenizer.has_value());
  EXPECT_EQ(m->weights.spec.rope_theta, 10000.0f);
  ExpectSameWeights(w, m->weights);
}

TEST(GgufLoaderTest, RopeThetaAndEpsilonComeFromMetadata) {
  ScratchDir dir;
  ModelWeights w = RandomWeights(SmallSpec(), 6);
  w.spec.rope_theta = 500000.0f;
  w.spec.norm_eps = 1e-6f;
  Result<GgufModel> m = WriteAndLoad(dir, LlamaGguf(w));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->weights.spec.rope_theta, 500000.0f);
  EXPECT_EQ(m->weights.spec.norm_eps, 1e-6f);
}

// LLaMA 3.1+ GGUF files carry the rescaled rotary frequencies as divisors
// (rope_freqs.weight, [head_dim / 2]); each frequency is divided by its factor.
TEST(GgufLoaderTest, RopeFreqsTensorDividesTheFrequencies) {
  ScratchDir dir;
  ModelWeights w = RandomWeights(SmallSpec(), 6);
  const int pairs = w.spec.head_dim() / 2;
  std::vector<float> factors(pairs);
  for (int i = 0; i < pairs; ++i) factors[i] = 1.0f + 3.0f * i;
  const std::vector<float> plain = w.spec.RopeFrequencies();
  GgufWriter g = LlamaGguf(w);
  g.AddTensorF32("rope_freqs.weight", {static_cast<uint64_t>(pairs)}, factors);
  Result<GgufModel> m = WriteAndLoad(dir, g);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->weights.spec.rope_freq_factors, factors);
  const std::vector<float> scaled = m->weights.spec.RopeFrequencies();
  ASSERT_EQ(scaled.size(), plain.size());
  for (int i = 0; i < pairs; ++i) EXPECT_FLOAT_EQ(scaled[i], plain[i] / factors[i]) << i;

  GgufWriter wrong_size = LlamaGguf(w);
  wrong_size.AddTensorF32("rope_freqs.weight", {static_cast<uint64_t>(pairs + 1)}, std::vector<float>(pairs + 1, 1.0f));
  ExpectError(dir, wrong_size, StatusCode::kCorruption, "rope_freqs.weight has shape");
  GgufWriter zero = LlamaGguf(w);
  zero.AddTensorF32("rope_freqs.weight", {static_cast<uint64_t>(pairs)}, std::vector<float>(pairs, 0.0f));
  ExpectError(dir, zero, StatusCode::kCorruption, "rope_freq_factors must be positive");
}

TEST(GgufLoaderTest, ChatTemplateComesFromMetadata) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 7));
  Result<GgufModel> m = WriteAndLoad(dir, g);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->weights.spec.chat_template, "") << "none in the file";
  const std::string jinja = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}";
  g.SetString("tokenizer.chat_template", jinja);
  m = WriteAndLoad(dir, g);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->weights.spec.chat_template, jinja);
  g.SetUint32("tokenizer.chat_template", 3);
  ExpectError(dir, g, StatusCode::kCorruption, "metadata tokenizer.chat_template must be a string");
}

TEST(GgufLoaderTest, LoadsFromAStreamInMemory) {
  const ModelWeights expected = RandomWeights(SmallSpec(false), 5);
  std::string bytes = LlamaGguf(expected).Serialize();
  Result<std::unique_ptr<GgufReader>> reader =
      GgufReader::FromStream(fmemopen(bytes.data(), bytes.size(), "rb"), "in memory");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->path(), "in memory");
  EXPECT_EQ((*reader)->file_size(), bytes.size());
  Result<GgufModel> m = LoadGgufModel(**reader);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ExpectSameWeights(expected, m->weights);

  bytes[0] = 'X';
  reader = GgufReader::FromStream(fmemopen(bytes.data(), bytes.size(), "rb"), "not gguf in memory");
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(reader.status().message(), HasSubstr("not gguf in memory: not a GGUF file"));
}

TEST(GgufLoaderTest, MissingFileIsNotFound) {
  Result<GgufModel> m = LoadGgufModel("/nonexistent/x.gguf");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr("/nonexistent/x.gguf"));
}

TEST(GgufLoaderTest, EmptyFileIsRejected) {
  ScratchDir dir;
  ASSERT_TRUE(::flover::testing::WriteBytes(dir.Path("m.gguf"), ""));
  Result<GgufModel> m = LoadGgufModel(dir.Path("m.gguf"));
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr(dir.Path("m.gguf")));
  EXPECT_THAT(m.status().message(), HasSubstr("0 bytes"));
}

TEST(GgufLoaderTest, WrongMagic) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetMagic("GGML");
  ExpectError(dir, g, StatusCode::kInvalidArgument, "not a GGUF file");
}

TEST(GgufLoaderTest, WrongVersion) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetVersion(7);
  ExpectError(dir, g, StatusCode::kInvalidArgument, "version 7");
  g.SetVersion(1);
  ExpectError(dir, g, StatusCode::kInvalidArgument, "version 1");
  g.SetVersion(0x03000000);
  ExpectError(dir, g, StatusCode::kInvalidArgument, "big-endian");
}

TEST(GgufLoaderTest, TruncatedTensorData) {
  ScratchDir dir;
  const std::string bytes = LlamaGguf(RandomWeights(SmallSpec(), 1)).Serialize();
  ASSERT_TRUE(::flover::testing::WriteBytes(dir.Path("m.gguf"), bytes.substr(0, bytes.size() - 10)));
  Result<GgufModel> m = LoadGgufModel(dir.Path("m.gguf"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(m.status().message(), HasSubstr("blk.1.ffn_norm.weight"));  // the last tensor
  EXPECT_THAT(m.status().message(), HasSubstr("truncated"));
}

TEST(GgufLoaderTest, EveryTruncationIsAnErrorNotACrash) {
  ScratchDir dir;
  const std::string bytes = LlamaGguf(RandomWeights(SmallSpec(), 1)).Serialize();
  for (size_t len = 0; len < bytes.size(); len += 37) {
    ASSERT_TRUE(::flover::testing::WriteBytes(dir.Path("m.gguf"), bytes.substr(0, len)));
    Result<GgufModel> m = LoadGgufModel(dir.Path("m.gguf"));
    ASSERT_FALSE(m.ok()) << "length " << len;
    EXPECT_THAT(m.status().message(), HasSubstr(dir.Path("m.gguf")));
  }
}

TEST(GgufLoaderTest, RandomHeaderCorruptionNeverCrashes) {
  ScratchDir dir;
  const std::string good = LlamaGguf(RandomWeights(SmallSpec(), 1)).Serialize();
  uint64_t state = 12345;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  const size_t header_end = 2048;  // metadata and tensor infos of the small model
  ASSERT_GT(good.size(), header_end);
  int n_failed = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string bytes = good;
    const int n_flips = 1 + static_cast<int>(next() % 4);
    for (int f = 0; f < n_flips; ++f) bytes[next() % header_end] = static_cast<char>(next());
    ASSERT_TRUE(::flover::testing::WriteBytes(dir.Path("m.gguf"), bytes));
    Result<GgufModel> m = LoadGgufModel(dir.Path("m.gguf"));  // must return, not crash or throw
    if (!m.ok()) {
      ++n_failed;
      EXPECT_THAT(m.status().message(), HasSubstr(dir.Path("m.gguf")));
    }
  }
  EXPECT_GT(n_failed, 0);
}

TEST(GgufLoaderTest, AbsurdStringLength) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetRaw("general.name", 8, U64(uint64_t{1} << 62));
  ExpectError(dir, g, StatusCode::kCorruption, "claims a length of 4611686018427387904 bytes");
}

TEST(GgufLoaderTest, AbsurdArrayCounts) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetRaw("tokenizer.ggml.scores", 9, U32(6) + U64(uint64_t{1} << 60));
  ExpectError(dir, g, StatusCode::kCorruption, "tokenizer.ggml.scores claims 1152921504606846976 float32");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetRaw("tokenizer.ggml.tokens", 9, U32(8) + U64(~uint64_t{0}));
  ExpectError(dir, g, StatusCode::kCorruption, "tokenizer.ggml.tokens claims");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetRaw("nested", 9, U32(9) + U64(1));
  ExpectError(dir, g, StatusCode::kInvalidArgument, "array of arrays");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetRaw("weird", 13, "");
  ExpectError(dir, g, StatusCode::kCorruption, "unknown value type 13");
}

TEST(GgufLoaderTest, AbsurdHeaderCounts) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.ForgeTensorCount(uint64_t{1} << 55);
  ExpectError(dir, g, StatusCode::kCorruption, "tensors");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.ForgeKvCount(~uint64_t{0});
  ExpectError(dir, g, StatusCode::kCorruption, "metadata entries");
}

TEST(GgufLoaderTest, AbsurdTensorDimensions) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.AddTensorRaw("huge", {uint64_t{1} << 40, uint64_t{1} << 20}, 0, "");
  ExpectError(dir, g, StatusCode::kCorruption, "huge");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.AddTensorRaw("overflow", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, "");
  ExpectError(dir, g, StatusCode::kCorruption, "absurd dimensions");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.AddTensorRaw("five_dims", {1, 1, 1, 1, 1}, 0, std::string(4, '\0'));
  ExpectError(dir, g, StatusCode::kCorruption, "5 dimensions");
}

TEST(GgufLoaderTest, UnsupportedTensorType) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.RemoveTensor("blk.0.attn_q.weight");
  g.AddTensorRaw("blk.0.attn_q.weight", {16, 16}, /*F64=*/28, std::string(16 * 16 * 8, '\0'));
  ExpectError(dir, g, StatusCode::kInvalidArgument,
              "tensor blk.0.attn_q.weight: GGUF type F64 is not supported (supported: F32, F16, BF16, Q8_0, Q6_K, "
              "Q5_K, Q5_1, Q5_0, Q4_K, Q4_1, Q4_0)");
  // A quantized type without a dequantizer here.
  ModelSpec spec = testing::Q8Spec();
  spec.dim = 256;
  g = LlamaGguf(RandomWeights(spec, 1));
  g.RemoveTensor("blk.1.attn_v.weight");
  g.AddTensorRaw("blk.1.attn_v.weight", {256, 128}, /*IQ2_XXS=*/16, std::string(128 * 66, '\0'));
  ExpectError(dir, g, StatusCode::kInvalidArgument, "tensor blk.1.attn_v.weight: GGUF type IQ2_XXS is not supported");
  // A type id ggml does not know.
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.RemoveTensor("blk.1.ffn_up.weight");
  g.AddTensorRaw("blk.1.ffn_up.weight", {16, 40}, 99, std::string(16, '\0'));
  ExpectError(dir, g, StatusCode::kInvalidArgument,
              "tensor blk.1.ffn_up.weight: GGUF type id 99 (unknown to this version) is not supported (supported: F32");
}

// Matrices Q8_0 and norms F32, as llama.cpp writes a Q8_0 model: the weights are exactly
// the Q8_0 values (q * d, computed by the test writer from the bytes it wrote).
TEST(GgufLoaderTest, Q8_0ModelLoadsToItsDequantizedValues) {
  ScratchDir dir;
  for (bool shared : {true, false}) {
    SCOPED_TRACE(shared ? "shared classifier" : "separate classifier");
    const ModelWeights w = RandomWeights(testing::Q8Spec(shared), 21);
    ModelWeights expected;
    Result<GgufModel> m = WriteAndLoad(dir, testing::LlamaGgufQ8_0(w, &expected));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ExpectSameWeights(expected, m->weights);
    // Quantization did change values (so the comparison is not vacuous), by at most
    // half a step of the block's scale.
    EXPECT_NE(m->weights.layers[0].wq, w.layers[0].wq);
    EXPECT_EQ(m->weights.layers[1].ffn_norm, w.layers[1].ffn_norm) << "norms stay F32";
    for (size_t i = 0; i < w.layers[0].w2.f32().size(); ++i)
      ASSERT_NEAR(m->weights.layers[0].w2.f32()[i], w.layers[0].w2.f32()[i], 1.0f / 254 + 1e-3f) << i;
  }
}

TEST(GgufLoaderTest, Q8_0OutputEqualToTheEmbeddingIsShared) {
  ScratchDir dir;
  const ModelWeights w = RandomWeights(testing::Q8Spec(true), 22);
  ModelWeights expected;
  GgufWriter g = testing::LlamaGgufQ8_0(w, &expected);
  g.AddTensorQ8_0("output.weight", {64, 41}, w.token_embedding.f32());
  Result<GgufModel> m = WriteAndLoad(dir, g);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->weights.spec.shared_classifier);
  EXPECT_TRUE(m->weights.classifier.empty());
  ExpectSameWeights(expected, m->weights);
  // One changed block makes it a separate classifier.
  std::vector<float> output(w.token_embedding.f32().begin(), w.token_embedding.f32().end());
  output[40 * 64 + 5] += 0.5f;
  g.RemoveTensor("output.weight");
  g.AddTensorQ8_0("output.weight", {64, 41}, output);
  m = WriteAndLoad(dir, g);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->weights.spec.shared_classifier);
  std::vector<float> output_read_back;
  testing::QuantizeQ8_0(output, &output_read_back);
  EXPECT_EQ(m->weights.classifier.f32(), output_read_back);
}

// dim 256 so that every loadable type fits a row; random blocks (valid scales) of each
// type in one model, each tensor read back as DequantizeGgml of its bytes (which
// gguf_quant_test checks against gguf-py), whole and as 2 tensor-parallel shards.
TEST(GgufLoaderTest, EveryLoadableTypeInOneModelWholeAndSharded) {
  ModelSpec spec = testing::Q8Spec(/*shared_classifier=*/false);
  spec.dim = 256;
  spec.hidden_dim = 256;  // ffn_down rows are one 256-value block; tensor parallel 2 cuts it in half
  spec.n_layers = 2;
  const ModelWeights w = RandomWeights(spec, 23);
  const std::map<std::string, uint32_t> types = {
      {"token_embd.weight", kGgmlTypeQ6_K},         {"output.weight", kGgmlTypeQ8_0},
      {"output_norm.weight", kGgmlTypeF32},         {"blk.0.attn_q.weight", kGgmlTypeQ4_K},
      {"blk.0.attn_k.weight", kGgmlTypeQ5_K},       {"blk.0.attn_v.weight", kGgmlTypeQ6_K},
      {"blk.0.attn_output.weight", kGgmlTypeQ5_0},  {"blk.0.ffn_gate.weight", kGgmlTypeQ4_1},
      {"blk.0.ffn_down.weight", kGgmlTypeQ4_K},     {"blk.0.ffn_up.weight", kGgmlTypeBF16},
      {"blk.0.attn_norm.weight", kGgmlTypeF16},     {"blk.0.ffn_norm.weight", kGgmlTypeBF16},
      {"blk.1.attn_q.weight", kGgmlTypeQ5_1},       {"blk.1.attn_k.weight", kGgmlTypeQ4_0},
      {"blk.1.attn_v.weight", kGgmlTypeQ8_0},       {"blk.1.attn_output.weight", kGgmlTypeQ6_K},
      {"blk.1.ffn_gate.weight", kGgmlTypeF16},      {"blk.1.ffn_down.weight", kGgmlTypeQ5_K},
      {"blk.1.ffn_up.weight", kGgmlTypeQ4_0},       {"blk.1.attn_norm.weight", kGgmlTypeF32},
      {"blk.1.ffn_norm.weight", kGgmlTypeF32}};
  uint64_t seed = 100;
  ModelWeights expected;
  const GgufWriter g = testing::LlamaGgufWith(
      w,
      [&](GgufWriter& g, const std::string& name, const std::vector<uint64_t>& ne, const std::vector<float>& data) {
        const uint32_t type = types.at(name);
        const std::string bytes = testing::RandomGgmlBlocks(type, data.size(), ++seed);
        g.AddTensorRaw(name, ne, type, bytes);
        std::vector<float> values(data.size());
        DequantizeGgml(type, reinterpret_cast<const uint8_t*>(bytes.data()), values.data(), values.size());
        return values;
      },
      &expected);
  ScratchDir dir;
  const std::string path = dir.Path("mixed.gguf");
  ASSERT_TRUE(g.WriteFile(path));
  Result<GgufModel> whole = LoadGgufModel(path);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  ExpectSameWeights(expected, whole->weights);
  EXPECT_NE(whole->weights.layers[0].w2, w.layers[0].w2);
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    Result<ModelWeights> expected_shard = ShardWeights(expected, rank, 2);
    ASSERT_TRUE(expected_shard.ok()) << expected_shard.status().ToString();
    Result<GgufModel> shard = LoadGgufModel(path, LoadTarget{ShardInfo{rank, 2}, nullptr});
    ASSERT_TRUE(shard.ok()) << shard.status().ToString();
    ExpectSameWeights(*expected_shard, shard->weights);
  }
}

TEST(GgufLoaderTest, TruncatedQuantizedTensorData) {
  ScratchDir dir;
  const std::string bytes = testing::LlamaGgufQ8_0(RandomWeights(testing::Q8Spec(), 24)).Serialize();
  // The last tensor is blk.1.ffn_norm.weight (F32, 64 values); cut into the Q8_0 tensor
  // before it, blk.1.ffn_up.weight (96 rows of 68 bytes), so its bytes run past the end.
  ASSERT_TRUE(::flover::testing::WriteBytes(dir.Path("m.gguf"), bytes.substr(0, bytes.size() - 64 * 4 - 100)));
  Result<GgufModel> m = LoadGgufModel(dir.Path("m.gguf"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(m.status().message(), HasSubstr("tensor blk.1.ffn_up.weight [64, 96] Q8_0 (8) needs bytes"));
  EXPECT_THAT(m.status().message(), HasSubstr("truncated"));
  for (size_t len = 0; len < bytes.size(); len += 331) {
    ASSERT_TRUE(::flover::testing::WriteBytes(dir.Path("m.gguf"), bytes.substr(0, len)));
    m = LoadGgufModel(dir.Path("m.gguf"));
    ASSERT_FALSE(m.ok()) << "length " << len;
    EXPECT_THAT(m.status().message(), HasSubstr(dir.Path("m.gguf")));
  }
}

TEST(GgufLoaderTest, QuantizedRowsMustBeWholeBlocks) {
  ScratchDir dir;
  // Q4_K packs 256 values in 144 bytes; attn_q rows have dim = 64 values.
  GgufWriter g = testing::LlamaGgufQ8_0(RandomWeights(testing::Q8Spec(), 25));
  g.RemoveTensor("blk.0.attn_q.weight");
  g.AddTensorRaw("blk.0.attn_q.weight", {64, 64}, /*Q4_K=*/12, std::string(64 * 144 / 4, '\0'));
  ExpectError(dir, g, StatusCode::kCorruption,
              "tensor blk.0.attn_q.weight [64, 64] Q4_K (12): row length ne[0]=64 of type Q4_K is not a multiple of "
              "its block size 256");
}

// Type ids, dimensions and offsets of a quantized model's tensor infos changed at random:
// errors, never a crash or an out-of-bounds read.
TEST(GgufLoaderTest, RandomCorruptionOfAQuantizedModelNeverCrashes) {
  ScratchDir dir;
  const std::string good = testing::LlamaGgufQ8_0(RandomWeights(testing::Q8Spec(false), 26)).Serialize();
  const size_t infos_begin = good.find("token_embd.weight");
  ASSERT_NE(infos_begin, std::string::npos);
  uint64_t state = 777;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  int n_failed = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes = good;
    const int n_flips = 1 + static_cast<int>(next() % 3);
    for (int f = 0; f < n_flips; ++f) bytes[infos_begin + next() % 1500] = static_cast<char>(next());
    ASSERT_TRUE(::flover::testing::WriteBytes(dir.Path("m.gguf"), bytes));
    Result<GgufModel> m = LoadGgufModel(dir.Path("m.gguf"));
    if (!m.ok()) {
      ++n_failed;
      EXPECT_THAT(m.status().message(), HasSubstr(dir.Path("m.gguf")));
    }
  }
  EXPECT_GT(n_failed, 0);
}

TEST(GgufLoaderTest, QuantizedTensorSizesAreChecked) {
  ScratchDir dir;
  // Q8_0 packs 32 values in 34 bytes: ne0 = 16 cannot be stored.
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.AddTensorRaw("extra", {16, 2}, /*Q8_0=*/8, std::string(34, '\0'));
  ExpectError(dir, g, StatusCode::kCorruption, "not a multiple of its block size 32");
  // An unused quantized tensor of a valid size does not stop the model from loading.
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.AddTensorRaw("extra", {64, 2}, /*Q8_0=*/8, std::string(4 * 34, '\0'));
  Result<GgufModel> m = WriteAndLoad(dir, g);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  // ...but one whose bytes run past the end of the file does.
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.AddTensorRaw("extra", {64, 2}, /*Q8_0=*/8, std::string(3 * 34, '\0'));
  ExpectError(dir, g, StatusCode::kCorruption, "tensor extra [64, 2] Q8_0 (8) needs bytes");
}

TEST(GgufLoaderTest, MissingTensor) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.RemoveTensor("blk.1.ffn_up.weight");
  ExpectError(dir, g, StatusCode::kCorruption, "tensor blk.1.ffn_up.weight is missing");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.RemoveTensor("token_embd.weight");
  ExpectError(dir, g, StatusCode::kCorruption, "token_embd.weight is missing");
}

TEST(GgufLoaderTest, WrongTensorShape) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.RemoveTensor("blk.0.attn_k.weight");
  // [q_dim=16, dim=16] where [dim=16, kv_dim=8] belongs.
  g.AddTensorF32("blk.0.attn_k.weight", {16, 16}, std::vector<float>(256, 0.0f));
  ExpectError(dir, g, StatusCode::kCorruption, "tensor blk.0.attn_k.weight has shape [16, 16], expected [16, 8]");
  // Transposed down projection.
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.RemoveTensor("blk.1.ffn_down.weight");
  g.AddTensorF32("blk.1.ffn_down.weight", {16, 40}, std::vector<float>(640, 0.0f));
  ExpectError(dir, g, StatusCode::kCorruption, "expected [40, 16]");
}

TEST(GgufLoaderTest, ArchitectureMustBeLlama) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetString("general.architecture", "gpt2");
  ExpectError(dir, g, StatusCode::kInvalidArgument, "\"gpt2\"");
  g.RemoveKey("general.architecture");
  ExpectError(dir, g, StatusCode::kCorruption, "general.architecture is missing");
}

TEST(GgufLoaderTest, BadMetadata) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.RemoveKey("llama.embedding_length");
  ExpectError(dir, g, StatusCode::kCorruption, "llama.embedding_length is missing");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetString("llama.block_count", "two");
  ExpectError(dir, g, StatusCode::kCorruption, "llama.block_count must be an integer");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetUint64("llama.context_length", uint64_t{1} << 40);
  ExpectError(dir, g, StatusCode::kCorruption, "out of range");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetUint32("llama.block_count", 1 << 28);  // must fail on the first missing layer, not allocate
  ExpectError(dir, g, StatusCode::kCorruption, "tensor blk.2.attn_norm.weight is missing");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetUint32("llama.attention.head_count", 3);
  ExpectError(dir, g, StatusCode::kCorruption, "n_heads=3");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetUint32("llama.rope.dimension_count", 2);
  ExpectError(dir, g, StatusCode::kInvalidArgument, "partial rotary");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetUint32("llama.vocab_size", 41);
  ExpectError(dir, g, StatusCode::kCorruption, "llama.vocab_size is 41");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetUint32("tokenizer.ggml.bos_token_id", 40);
  ExpectError(dir, g, StatusCode::kCorruption, "bos_id");
}

TEST(GgufLoaderTest, BadVocabulary) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"});
  ExpectError(dir, g, StatusCode::kCorruption, "tokenizer.ggml.tokens has 3 tokens");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetFloat32Array("tokenizer.ggml.scores", {1.0f});
  ExpectError(dir, g, StatusCode::kCorruption, "tokenizer.ggml.scores has 1 entries");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetInt32Array("tokenizer.ggml.scores", std::vector<int32_t>(40, 0));
  ExpectError(dir, g, StatusCode::kInvalidArgument, "array of floats");
  g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.SetString("tokenizer.ggml.model", "bert");
  ExpectError(dir, g, StatusCode::kInvalidArgument, "tokenizer.ggml.model is \"bert\"");
}

TEST(GgufLoaderTest, DuplicateKeysAndTensorsAreCorruption) {
  ScratchDir dir;
  GgufWriter g = LlamaGguf(RandomWeights(SmallSpec(), 1));
  g.AddTensorF32("output_norm.weight", {16}, std::vector<float>(16, 1.0f));
  ExpectError(dir, g, StatusCode::kCorruption, "tensor output_norm.weight appears twice");
}

TEST(ModelLoaderTest, DispatchesGgufByExtensionAndByMagic) {
  const std::string src = ::flover::testing::Stories260kGguf();
  Result<LoadedModel> m = LoadModel(src);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->tokenizer.has_value());
  EXPECT_THAT(m->description, HasSubstr("GGUF"));

  ScratchDir dir;
  const std::string disguised = dir.Path("model.bin");
  ASSERT_TRUE(::flover::testing::WriteBytes(disguised, ::flover::testing::ReadBytes(src)));
  Result<LoadedModel> d = LoadModel(disguised);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->weights.spec.ToString(), m->weights.spec.ToString());
  EXPECT_TRUE(d->tokenizer.has_value());

  // A .gguf name on a file that is not GGUF gives the GGUF error, naming the file.
  const std::string fake = dir.Path("fake.gguf");
  ASSERT_TRUE(::flover::testing::WriteBytes(fake, ::flover::testing::ReadBytes(::flover::testing::Stories260kBin())));
  Result<LoadedModel> f = LoadModel(fake);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr(fake));
  EXPECT_THAT(f.status().message(), HasSubstr("not a GGUF file"));
}

}  // namespace
}  // namespace flover
