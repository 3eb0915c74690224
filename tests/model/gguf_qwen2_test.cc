// GGUF files of architecture qwen2 (gguf_loader.h, gguf_architecture.h): files the test
// writer builds (q/k/v biases, Q/K rows in half-split order, metadata under "qwen2.")
// load back to exactly the weights they were written from, whole and as each rank's
// shard; broken ones give errors that name what is wrong. Then the qwen2 fixture's GGUF
// (tests/fixtures/models/qwen2, converted by llama.cpp) and its tokenizer.json: both
// vocabularies encode and decode the fixture's text prompts as Hugging Face tokenizers
// did, and agree with each other on the tokenizer fixture's thousand texts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/tokenizer.h"
#include "common/tokenizer_loader.h"
#include "tests/hf_text_reference.h"
#include "tests/model/gguf_writer.h"
#include "tests/model/test_model_files.h"
#include "tests/test_paths.h"
#include "worker/model/gguf_loader.h"
#include "worker/model/gguf_reader.h"
#include "worker/model/shard.h"

namespace flover {
namespace {

using testing::ExpectSameWeights;
using ::testing::HasSubstr;
using testing::ScratchDir;

// SmallSpec (grouped-query attention, 4 heads of 4 dims) as Qwen2: q/k/v biases.
ModelSpec Qwen2Spec() {
  ModelSpec s = testing::SmallSpec(/*shared_classifier=*/true);
  s.arch = "qwen2";
  s.qkv_bias = true;
  return s;
}

Result<GgufModel> LoadWritten(const ScratchDir& dir, const testing::GgufWriter& g, const LoadTarget& target = {}) {
  EXPECT_TRUE(g.WriteFile(dir.Path("m.gguf")));
  return LoadGgufModel(dir.Path("m.gguf"), target);
}

void ExpectError(const ScratchDir& dir, const testing::GgufWriter& g, StatusCode code, const std::string& needle) {
  Result<GgufModel> m = LoadWritten(dir, g);
  ASSERT_FALSE(m.ok()) << "expected an error containing: " << needle;
  EXPECT_EQ(m.status().code(), code) << m.status().ToString();
  EXPECT_THAT(m.status().message(), HasSubstr(dir.Path("m.gguf")));
  EXPECT_THAT(m.status().message(), HasSubstr(needle));
}

TEST(GgufQwen2Test, LoadsBackTheWeightsItWasWrittenFrom) {
  ScratchDir dir;
  const ModelWeights w = testing::RandomWeights(Qwen2Spec(), 21);
  Result<GgufModel> m = LoadWritten(dir, testing::Qwen2Gguf(w));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ExpectSameWeights(w, m->weights);
  EXPECT_EQ(m->weights.spec.arch, "qwen2");
  EXPECT_TRUE(m->weights.spec.qkv_bias);
  EXPECT_TRUE(m->weights.spec.shared_classifier);
}

// What the round trip relies on: the file holds Q/K rows (and biases) in half-split
// order, as llama.cpp's converter writes qwen2: row i of a head is the model's row 2i,
// row i + head_dim/2 its row 2i + 1.
TEST(GgufQwen2Test, FileHoldsQkRowsInHalfSplitOrder) {
  ScratchDir dir;
  const ModelWeights w = testing::RandomWeights(Qwen2Spec(), 22);
  ASSERT_TRUE(testing::Qwen2Gguf(w).WriteFile(dir.Path("m.gguf")));
  Result<std::unique_ptr<GgufReader>> r = GgufReader::Open(dir.Path("m.gguf"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const int head_dim = w.spec.head_dim(), half = head_dim / 2, cols = w.spec.dim;
  auto read = [&](const std::string& name) {
    const GgufTensorInfo* info = (*r)->FindTensor(name);
    std::vector<float> out(info == nullptr ? 0 : info->n_elements);
    if (info != nullptr) {
      EXPECT_TRUE((*r)->ReadRowsAsFloat(*info, 0, info->layout->n_rows, out.data()).ok());
    }
    return out;
  };
  const std::vector<float> wk = read("blk.1.attn_k.weight"), bq = read("blk.0.attn_q.bias");
  ASSERT_EQ(wk.size(), w.layers[1].wk.f32().size());
  ASSERT_EQ(bq.size(), w.layers[0].bq.f32().size());
  for (int head = 0; head < w.spec.n_kv_heads; ++head) {
    for (int i = 0; i < half; ++i) {
      const int row = head * head_dim;
      for (int c = 0; c < cols; ++c) {
        EXPECT_EQ(wk[(row + i) * cols + c], w.layers[1].wk.f32()[(row + 2 * i) * cols + c]);
        EXPECT_EQ(wk[(row + half + i) * cols + c], w.layers[1].wk.f32()[(row + 2 * i + 1) * cols + c]);
      }
    }
  }
  for (int head = 0; head < w.spec.n_heads; ++head) {
    for (int i = 0; i < half; ++i) {
      EXPECT_EQ(bq[head * head_dim + i], w.layers[0].bq.f32()[head * head_dim + 2 * i]);
      EXPECT_EQ(bq[head * head_dim + half + i], w.layers[0].bq.f32()[head * head_dim + 2 * i + 1]);
    }
  }
}

// Each rank reads only its heads' rows of the half-split Q/K and biases and permutes
// them: exactly ShardWeights of the whole model, for 2 and (kv heads 4) 4 ranks.
TEST(GgufQwen2Test, EveryRankGetsItsShardOfTheWholeModel) {
  ScratchDir dir;
  for (int world : {2, 4}) {
    ModelSpec spec = Qwen2Spec();
    spec.n_kv_heads = world == 4 ? 4 : 2;
    const ModelWeights w = testing::RandomWeights(spec, 23);
    ASSERT_TRUE(testing::Qwen2Gguf(w).WriteFile(dir.Path("m.gguf")));
    for (int rank = 0; rank < world; ++rank) {
      SCOPED_TRACE("rank " + std::to_string(rank) + " of " + std::to_string(world));
      Result<ModelWeights> expected = ShardWeights(w, rank, world);
      ASSERT_TRUE(expected.ok()) << expected.status().ToString();
      Result<GgufModel> shard = LoadGgufModel(dir.Path("m.gguf"), LoadTarget{ShardInfo{rank, world}, nullptr});
      ASSERT_TRUE(shard.ok()) << shard.status().ToString();
      ExpectSameWeights(*expected, shard->weights);
    }
  }
}

TEST(GgufQwen2Test, MissingOrMisshapenBiasNamesTheTensor) {
  ScratchDir dir;
  const ModelWeights w = testing::RandomWeights(Qwen2Spec(), 24);
  testing::GgufWriter g = testing::Qwen2Gguf(w);
  g.RemoveTensor("blk.1.attn_k.bias");
  ExpectError(dir, g, StatusCode::kCorruption, "tensor blk.1.attn_k.bias is missing");
  g = testing::Qwen2Gguf(w);
  g.RemoveTensor("blk.0.attn_q.bias");
  g.AddTensorF32("blk.0.attn_q.bias", {8}, std::vector<float>(8, 0.0f));
  ExpectError(dir, g, StatusCode::kCorruption,
              "tensor blk.0.attn_q.bias has shape [8], expected [16] [n_heads*head_dim]");
}

TEST(GgufQwen2Test, MetadataIsReadUnderTheArchitecturesPrefix) {
  ScratchDir dir;
  const ModelWeights w = testing::RandomWeights(Qwen2Spec(), 25);
  testing::GgufWriter g = testing::Qwen2Gguf(w);
  g.RemoveKey("qwen2.embedding_length");
  g.SetUint32("llama.embedding_length", w.spec.dim);  // another architecture's key is not read
  ExpectError(dir, g, StatusCode::kCorruption, "metadata qwen2.embedding_length is missing");
  g = testing::Qwen2Gguf(w);
  g.SetUint32("qwen2.attention.head_count_kv", 3);
  ExpectError(dir, g, StatusCode::kCorruption, "n_kv_heads=3");
}

TEST(GgufQwen2Test, UnknownArchitectureNamesTheSupportedOnes) {
  ScratchDir dir;
  testing::GgufWriter g = testing::Qwen2Gguf(testing::RandomWeights(Qwen2Spec(), 26));
  g.SetString("general.architecture", "gemma2");
  ExpectError(dir, g, StatusCode::kInvalidArgument, "architecture is \"gemma2\"; supported: \"llama\", \"qwen2\"");
}

// --- The qwen2 fixture's GGUF and tokenizer.json ---

std::string Qwen2Fixture(const std::string& file) { return testing::FixturePath("models/qwen2/" + file); }

Tokenizer GgufTokenizer() {
  Result<GgufModel> m = LoadGgufModel(Qwen2Fixture("model-bf16.gguf"));
  if (!m.ok()) throw std::runtime_error(m.status().ToString());
  if (!m->tokenizer) throw std::runtime_error("model-bf16.gguf has no vocabulary");
  return *m->tokenizer;
}

Tokenizer FolderTokenizer() {
  Result<Tokenizer> t = LoadTokenizer(Qwen2Fixture(""));
  if (!t.ok()) throw std::runtime_error(t.status().ToString());
  return *t;
}

// Both vocabularies: byte-level BPE of the model's 512 ids, no BOS added, EOS <|im_end|>.
TEST(GgufQwen2VocabularyTest, BothVocabulariesDescribeTheSameTokenizer) {
  const Tokenizer gguf = GgufTokenizer(), folder = FolderTokenizer();
  for (const Tokenizer* t : {&gguf, &folder}) {
    EXPECT_EQ(t->kind(), Tokenizer::Kind::kBpe);
    EXPECT_EQ(t->vocab_size(), 512);
    EXPECT_FALSE(t->add_bos());
    EXPECT_EQ(t->eos_id(), 2);
    EXPECT_EQ(t->TokenToId("<|im_start|>"), 0);
    EXPECT_EQ(t->TokenToId("<|endoftext|>"), 1);
    EXPECT_EQ(t->TokenToId("<|im_end|>"), 2);
  }
  for (int id = 0; id < 512; ++id) EXPECT_EQ(gguf.piece(id), folder.piece(id)) << "id " << id;
}

TEST(GgufQwen2VocabularyTest, TextPromptsEncodeAndDecodeAsTokenizersDid) {
  const std::vector<testing::TextPrompt> prompts = testing::LoadTextReference("qwen2");
  const Tokenizer gguf = GgufTokenizer(), folder = FolderTokenizer();
  for (const auto& [name, t] : {std::pair{"GGUF", &gguf}, std::pair{"tokenizer.json", &folder}}) {
    for (const testing::TextPrompt& p : prompts) {
      SCOPED_TRACE(std::string(name) + ", " + p.kind + " prompt");
      EXPECT_EQ(t->Encode(p.text, /*add_bos=*/true), p.ids);
      EXPECT_EQ(t->Decode(p.ids, -1), p.text);
      EXPECT_EQ(t->Decode(p.greedy, -1), p.greedy_text);
      EXPECT_EQ(t->Decode(p.greedy, p.ids.back()), p.greedy_text);
    }
  }
}

// The texts of tests/fixtures/tokenizers/qwen2/cases.json (another vocabulary of the same
// pre-tokenizer: ASCII, scripts, emoji, whitespace, special-token look-alikes): the two
// vocabularies encode each to the same ids and decode those back to the same text, and
// decode the same random ids (incl. special and single-byte tokens) to the same text.
TEST(GgufQwen2VocabularyTest, GgufAndTokenizerJsonAgreeOnTheTokenizerFixtureTexts) {
  const std::string path = testing::FixturePath("tokenizers/qwen2/cases.json");
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  const nlohmann::json cases = nlohmann::json::parse(in);
  const Tokenizer gguf = GgufTokenizer(), folder = FolderTokenizer();
  size_t n = 0;
  for (const auto& c : cases.at("encode")) {
    const std::string text = c.at(0);
    const std::vector<int> ids = folder.Encode(text, true);
    EXPECT_EQ(gguf.Encode(text, true), ids) << nlohmann::json(text).dump();
    EXPECT_EQ(gguf.Decode(ids, -1), folder.Decode(ids, -1)) << nlohmann::json(text).dump();
    ++n;
  }
  EXPECT_GE(n, 1000u);
  for (const auto& c : cases.at("decode")) {
    std::vector<int> ids;
    for (int id : c.at(0).get<std::vector<int>>()) ids.push_back(id % 512);
    EXPECT_EQ(gguf.Decode(ids, -1), folder.Decode(ids, -1)) << nlohmann::json(ids).dump();
  }
}

}  // namespace
}  // namespace flover
