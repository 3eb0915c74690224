// GGUF vocabularies (worker/model/gguf_vocab.h). The "gpt2" ones are built from the
// reference fixtures' tokenizer.json (tests/fixtures/tokenizers/) the way llama.cpp's
// converter writes them (tokens by id, merges "a b", token types, tokenizer.ggml.pre),
// and must encode the fixtures' texts as Hugging Face tokenizers does.
#include "worker/model/gguf_vocab.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/model/gguf_writer.h"
#include "tests/test_paths.h"
#include "worker/model/gguf_loader.h"

namespace flover {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

Json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::parse(ss.str());
}

std::string FixtureDir(const std::string& name) {
  return std::string(FLOVER_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + name;
}

// The vocabulary keys of a GGUF converted from tokenizer.json `tok`.
struct ByteLevelGguf {
  testing::GgufWriter writer;
  ModelSpec spec;
};

ByteLevelGguf FromTokenizerJson(const Json& tok, const std::string& pre, int bos_id, int eos_id) {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  auto put = [&](int id, const std::string& text, int type) {
    if (static_cast<int>(tokens.size()) <= id) tokens.resize(id + 1), types.resize(id + 1, 5);  // unused
    tokens[id] = text;
    types[id] = type;
  };
  for (const auto& [text, id] : tok["model"]["vocab"].items()) put(id.get<int>(), text, 1);
  for (const Json& t : tok["added_tokens"]) put(t["id"].get<int>(), t["content"].get<std::string>(), 3);
  std::vector<std::string> merges;
  for (const Json& m : tok["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  ByteLevelGguf g;
  g.writer.SetString("tokenizer.ggml.model", "gpt2");
  g.writer.SetString("tokenizer.ggml.pre", pre);
  g.writer.SetStringArray("tokenizer.ggml.tokens", tokens);
  g.writer.SetInt32Array("tokenizer.ggml.token_type", types);
  g.writer.SetStringArray("tokenizer.ggml.merges", merges);
  if (bos_id >= 0) g.writer.SetUint32("tokenizer.ggml.bos_token_id", bos_id);
  g.writer.SetUint32("tokenizer.ggml.eos_token_id", eos_id);
  g.spec.vocab_size = static_cast<int>(tokens.size());
  g.spec.bos_id = bos_id;
  g.spec.eos_id = eos_id;
  return g;
}

Result<std::optional<Tokenizer>> Read(const testing::GgufWriter& writer, const ModelSpec& spec) {
  const std::string bytes = writer.Serialize();
  std::FILE* f = fmemopen(const_cast<char*>(bytes.data()), bytes.size(), "rb");
  EXPECT_NE(f, nullptr);
  Result<std::unique_ptr<GgufReader>> reader = GgufReader::FromStream(f, "test.gguf");
  if (!reader.ok()) return reader.status();
  return ReadGgufVocab(**reader, spec);
}

struct Case {
  const char* fixture;
  const char* pre;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.fixture << " as tokenizer.ggml.pre " << c.pre; }

class GgufByteLevelVocabTest : public ::testing::TestWithParam<Case> {};

TEST_P(GgufByteLevelVocabTest, EncodesTheFixtureTextsAsTokenizers) {
  const Json tok = ReadJson(FixtureDir(GetParam().fixture) + "/tokenizer.json");
  const Json cases = ReadJson(FixtureDir(GetParam().fixture) + "/cases.json");
  const int bos = cases["bos_id"].is_null() ? -1 : cases["bos_id"].get<int>();
  ByteLevelGguf g = FromTokenizerJson(tok, GetParam().pre, bos, cases["eos_id"].get<int>());
  Result<std::optional<Tokenizer>> t = Read(g.writer, g.spec);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE(t->has_value());
  const Tokenizer& tokenizer = **t;
  EXPECT_EQ(tokenizer.kind(), Tokenizer::Kind::kBpe);
  EXPECT_EQ(tokenizer.bos_id(), bos);
  EXPECT_FALSE(tokenizer.add_bos());  // no tokenizer.ggml.add_bos_token
  // GGUF keeps no lstrip / rstrip / normalized flags: texts with such tokens differ.
  std::vector<std::string> flagged;
  for (const Json& a : tok["added_tokens"])
    if (a["lstrip"].get<bool>() || a["rstrip"].get<bool>() || a["normalized"].get<bool>())
      flagged.push_back(a["content"].get<std::string>());
  int n_checked = 0, n_wrong = 0;
  for (const Json& c : cases["encode"]) {
    const std::string text = c[0].get<std::string>();
    bool skip = false;
    for (const std::string& f : flagged) skip = skip || text.find(f) != std::string::npos;
    if (skip) continue;
    ++n_checked;
    const std::vector<int> expected = c[1].get<std::vector<int>>();
    if (tokenizer.Encode(text, false) != expected && ++n_wrong <= 5) ADD_FAILURE() << "Encode(\"" << text << "\")";
    EXPECT_EQ(tokenizer.Decode(expected, -1), c.size() > 2 ? c[2].get<std::string>() : text);
  }
  EXPECT_GT(n_checked, 700);
  EXPECT_EQ(n_wrong, 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufByteLevelVocabTest,
                         ::testing::Values(Case{"llama3", "llama-bpe"}, Case{"qwen2", "qwen2"}, Case{"gpt2", "gpt-2"}),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.fixture); });

ByteLevelGguf Llama3Gguf() {
  const Json cases = ReadJson(FixtureDir("llama3") + "/cases.json");
  return FromTokenizerJson(ReadJson(FixtureDir("llama3") + "/tokenizer.json"), "llama-bpe",
                           cases["bos_id"].get<int>(), cases["eos_id"].get<int>());
}

TEST(GgufVocabTest, ControlTokensAreSpecialAndAddBosIsRead) {
  ByteLevelGguf g = Llama3Gguf();
  g.writer.SetBool("tokenizer.ggml.add_bos_token", true);
  Result<std::optional<Tokenizer>> t = Read(g.writer, g.spec);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const Tokenizer& tok = **t;
  const int eot = tok.TokenToId("<|eot_id|>");
  ASSERT_GE(eot, 0);
  const std::vector<int> ids = tok.Encode("a<|eot_id|>", /*add_bos=*/true);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids.front(), tok.bos_id());
  EXPECT_EQ(ids.back(), eot);
  EXPECT_EQ(tok.Decode(ids, -1), "<|begin_of_text|>a<|eot_id|>");
}

TEST(GgufVocabTest, UnknownPreTokenizerIsNamed) {
  ByteLevelGguf g = Llama3Gguf();
  g.writer.SetString("tokenizer.ggml.pre", "deepseek-coder");
  Result<std::optional<Tokenizer>> t = Read(g.writer, g.spec);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("\"deepseek-coder\""));
  EXPECT_THAT(t.status().message(), HasSubstr("llama-bpe"));
}

TEST(GgufVocabTest, MalformedMergesAreNamed) {
  ByteLevelGguf g = Llama3Gguf();
  g.writer.SetStringArray("tokenizer.ggml.merges", {"a b c"});
  Result<std::optional<Tokenizer>> t = Read(g.writer, g.spec);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.ggml.merges[0]"));

  g = Llama3Gguf();
  g.writer.SetStringArray("tokenizer.ggml.merges", {"notatoken x"});
  t = Read(g.writer, g.spec);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("\"notatoken\" is not in the vocabulary"));

  g = Llama3Gguf();
  g.writer.RemoveKey("tokenizer.ggml.merges");
  t = Read(g.writer, g.spec);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.ggml.merges is missing"));

  g = Llama3Gguf();
  g.writer.SetInt32Array("tokenizer.ggml.token_type", {1, 2, 3});
  t = Read(g.writer, g.spec);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.ggml.token_type has 3 entries"));
}

// stories260K's vocabulary marks <s> and </s> as control tokens: in text they are BOS
// and EOS, as Hugging Face's Llama tokenizers and llama.cpp make them.
TEST(GgufVocabTest, SentencePieceControlTokensMatchInText) {
  Result<GgufModel> m = LoadGgufModel(::flover::testing::Stories260kGguf());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(m->tokenizer.has_value());
  const Tokenizer& tok = *m->tokenizer;
  EXPECT_EQ(tok.kind(), Tokenizer::Kind::kPieceScores);
  const std::vector<int> sara = tok.Encode("Sara", false);
  std::vector<int> expected = {2, 1};
  expected.insert(expected.end(), sara.begin(), sara.end());
  EXPECT_EQ(tok.Encode("</s><s>Sara", false), expected);
}

}  // namespace
}  // namespace flover
