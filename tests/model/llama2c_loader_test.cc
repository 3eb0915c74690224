#include "worker/model/llama2c_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "tests/model/test_model_files.h"
#include "tests/test_paths.h"
#include "worker/model/model_loader.h"

namespace flover {
namespace {

using ::flover::testing::Llama2cBytes;
using ::flover::testing::RandomWeights;
using ::flover::testing::ScratchDir;
using ::flover::testing::SmallSpec;
using ::flover::testing::WriteBytes;
using ::testing::HasSubstr;

ModelWeights LoadOrDie(const std::string& path) {
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  if (!w.ok()) return ModelWeights{};
  return std::move(w).value();
}

void OverwriteInt(std::string& bytes, size_t index, int32_t value) {
  std::memcpy(bytes.data() + 4 * index, &value, 4);
}

TEST(Llama2cLoaderTest, Stories260kHasTheReadmeShape) {
  const std::string path = ::flover::testing::Stories260kBin();
  ASSERT_TRUE(std::filesystem::exists(path)) << "missing test model " << path << " (see scripts/download-models.sh)";
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const ModelSpec& s = w->spec;
  EXPECT_EQ(s.dim, 64);
  EXPECT_EQ(s.hidden_dim, 172);
  EXPECT_EQ(s.n_layers, 5);
  EXPECT_EQ(s.n_heads, 8);
  EXPECT_EQ(s.n_kv_heads, 4);
  EXPECT_EQ(s.vocab_size, 512);
  EXPECT_EQ(s.max_seq_len, 512);
  EXPECT_EQ(s.norm_eps, 1e-5f);
  EXPECT_EQ(s.rope_theta, 10000.0f);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_TRUE(s.shared_classifier);
  EXPECT_TRUE(w->classifier.empty());
  EXPECT_EQ(s.n_params(), 260032);  // README: 260,032 parameters
  EXPECT_TRUE(w->Validate().ok());

  // Read by hand from the file (little-endian float32 at byte offsets 28, 32, ...).
  EXPECT_EQ(std::bit_cast<uint32_t>(w->token_embedding.f32()[0]), 0xbe96e950u);  // -0.29474878
  EXPECT_EQ(std::bit_cast<uint32_t>(w->token_embedding.f32()[1]), 0x3f0fd864u);  // 0.5618956
  EXPECT_FLOAT_EQ(w->token_embedding.f32()[2], 0.1754225343465805f);
  EXPECT_FLOAT_EQ(w->token_embedding.f32()[3], 0.34057360887527466f);
  // First floats of layer 0's wq (after the embedding and the 5 rms_att rows).
  EXPECT_FLOAT_EQ(w->layers[0].wq.f32()[0], 0.04439278692007065f);
  EXPECT_FLOAT_EQ(w->layers[0].wq.f32()[1], 0.07974770665168762f);
  EXPECT_FLOAT_EQ(w->layers[0].wq.f32()[2], -0.008925346657633781f);
  // The last float before the freq_cis arrays.
  EXPECT_FLOAT_EQ(w->final_norm.f32()[63], 1.7077769041061401f);
}

TEST(Llama2cLoaderTest, RoundTripsSharedAndSeparateClassifier) {
  ScratchDir dir;
  for (bool shared : {true, false}) {
    const ModelWeights expected = RandomWeights(SmallSpec(shared), 7);
    const std::string path = dir.Path(shared ? "shared.bin" : "separate.bin");
    ASSERT_TRUE(WriteBytes(path, Llama2cBytes(expected)));
    const ModelWeights actual = LoadOrDie(path);
    ::flover::testing::ExpectSameWeights(expected, actual);
    EXPECT_EQ(actual.spec.shared_classifier, shared);
  }
}

TEST(Llama2cLoaderTest, MissingFileIsNotFound) {
  ScratchDir dir;
  const std::string path = dir.Path("nope.bin");
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(w.status().message(), HasSubstr(path));
}

TEST(Llama2cLoaderTest, EmptyFileIsCorruption) {
  ScratchDir dir;
  const std::string path = dir.Path("empty.bin");
  ASSERT_TRUE(WriteBytes(path, ""));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(w.status().message(), HasSubstr(path));
  EXPECT_THAT(w.status().message(), HasSubstr("0 bytes"));
}

TEST(Llama2cLoaderTest, DirectoryIsRejected) {
  ScratchDir dir;
  Result<ModelWeights> w = LoadLlama2cCheckpoint(dir.Path(""));
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("directory"));
}

TEST(Llama2cLoaderTest, TruncatedStories260kGivesBothSizes) {
  const std::string src = ::flover::testing::Stories260kBin();
  const std::string bytes = ::flover::testing::ReadBytes(src);
  ASSERT_EQ(bytes.size(), 1056540u) << "missing or wrong test model " << src;
  ScratchDir dir;
  const std::string path = dir.Path("cut.bin");
  ASSERT_TRUE(WriteBytes(path, bytes.substr(0, bytes.size() - 100)));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(w.status().message(), HasSubstr(path));
  EXPECT_THAT(w.status().message(), HasSubstr("file has 1056440 bytes"));
  EXPECT_THAT(w.status().message(), HasSubstr("implies 1056540"));
  EXPECT_THAT(w.status().message(), HasSubstr("dim=64"));
}

TEST(Llama2cLoaderTest, ExtraTrailingBytesAreCorruption) {
  ScratchDir dir;
  const std::string path = dir.Path("long.bin");
  ASSERT_TRUE(WriteBytes(path, Llama2cBytes(RandomWeights(SmallSpec(), 1)) + std::string(4, '\0')));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
}

TEST(Llama2cLoaderTest, HeaderOnlyFileIsCorruption) {
  ScratchDir dir;
  const std::string path = dir.Path("header.bin");
  ASSERT_TRUE(WriteBytes(path, Llama2cBytes(RandomWeights(SmallSpec(), 1)).substr(0, 28)));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(w.status().message(), HasSubstr("file has 28 bytes"));
}

TEST(Llama2cLoaderTest, HeadsNotDividingDimIsCorruption) {
  ScratchDir dir;
  std::string bytes = Llama2cBytes(RandomWeights(SmallSpec(), 1));
  OverwriteInt(bytes, 3, 3);  // n_heads = 3 does not divide dim = 16
  const std::string path = dir.Path("heads.bin");
  ASSERT_TRUE(WriteBytes(path, bytes));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(w.status().message(), HasSubstr(path));
  EXPECT_THAT(w.status().message(), HasSubstr("n_heads=3"));
}

TEST(Llama2cLoaderTest, MoreLayersThanBytesIsCorruption) {
  ScratchDir dir;
  std::string bytes = Llama2cBytes(RandomWeights(SmallSpec(), 1));
  OverwriteInt(bytes, 2, 3);  // 3 layers, the file holds 2
  const std::string path = dir.Path("layers.bin");
  ASSERT_TRUE(WriteBytes(path, bytes));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(w.status().message(), HasSubstr("n_layers=3"));
  EXPECT_THAT(w.status().message(), HasSubstr("file has " + std::to_string(bytes.size()) + " bytes"));
}

TEST(Llama2cLoaderTest, AbsurdHeaderDoesNotOverflowOrAllocate) {
  ScratchDir dir;
  std::string bytes = Llama2cBytes(RandomWeights(SmallSpec(), 1));
  OverwriteInt(bytes, 0, 1 << 30);         // dim
  OverwriteInt(bytes, 1, INT32_MAX);  // hidden_dim
  OverwriteInt(bytes, 2, INT32_MAX);  // n_layers
  OverwriteInt(bytes, 3, 1 << 20);         // n_heads
  OverwriteInt(bytes, 4, 1 << 20);         // n_kv_heads
  const std::string path = dir.Path("absurd.bin");
  ASSERT_TRUE(WriteBytes(path, bytes));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(w.status().message(), HasSubstr("implies more than"));
}

TEST(Llama2cLoaderTest, NegativeOrZeroFieldsAreCorruption) {
  ScratchDir dir;
  for (int field = 0; field < 7; ++field) {
    std::string bytes = Llama2cBytes(RandomWeights(SmallSpec(), 1));
    OverwriteInt(bytes, field, field == 5 ? 0 : -4);  // vocab may be negative, not 0
    const std::string path = dir.Path("field" + std::to_string(field) + ".bin");
    ASSERT_TRUE(WriteBytes(path, bytes));
    Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
    ASSERT_FALSE(w.ok()) << "field " << field;
    EXPECT_EQ(w.status().code(), StatusCode::kCorruption) << w.status().ToString();
  }
}

TEST(Llama2cLoaderTest, VersionOneExportIsExplained) {
  ScratchDir dir;
  std::string bytes = Llama2cBytes(RandomWeights(SmallSpec(), 1));
  std::memcpy(bytes.data(), "24ka", 4);  // 0x616b3432 little-endian
  const std::string path = dir.Path("v1.bin");
  ASSERT_TRUE(WriteBytes(path, bytes));
  Result<ModelWeights> w = LoadLlama2cCheckpoint(path);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("version-0"));
}

TEST(ModelLoaderTest, DispatchesBinToLlama2c) {
  const std::string path = ::flover::testing::Stories260kBin();
  Result<LoadedModel> m = LoadModel(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->weights.spec.dim, 64);
  EXPECT_FALSE(m->tokenizer.has_value());
  EXPECT_THAT(m->description, HasSubstr("llama2.c"));
  EXPECT_THAT(m->description, HasSubstr("stories260K.bin"));
}

TEST(Llama2cLoaderTest, LoadsFromAStreamInMemory) {
  const ModelWeights expected = RandomWeights(SmallSpec(false), 3);
  std::string bytes = Llama2cBytes(expected);
  std::FILE* file = fmemopen(bytes.data(), bytes.size(), "rb");
  ASSERT_NE(file, nullptr);
  Result<ModelWeights> w = LoadLlama2cCheckpoint(file, "in memory");
  std::fclose(file);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ::flover::testing::ExpectSameWeights(expected, *w);

  std::string cut = bytes.substr(0, bytes.size() - 4);
  file = fmemopen(cut.data(), cut.size(), "rb");
  ASSERT_NE(file, nullptr);
  w = LoadLlama2cCheckpoint(file, "cut in memory");
  std::fclose(file);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(w.status().message(), HasSubstr("cut in memory: file has"));
}

TEST(ModelLoaderTest, MissingFileNamesThePath) {
  Result<LoadedModel> m = LoadModel("/nonexistent/model.bin");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr("/nonexistent/model.bin"));
  Result<LoadedModel> g = LoadModel("/nonexistent/model.gguf");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace flover
