// Tokenizers against Hugging Face tokenizers: the fixtures of tests/fixtures/tokenizers/
// (scripts/reference/tokenizer_fixtures.py) hold, for six small tokenizers, the ids
// and decodings tokenizers 0.20.3 gives for 1,000 texts and 150 random id sequences.
// Every one must match, and the streaming decoder must give the same text in valid
// UTF-8 pieces.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/token_stream_decoder.h"
#include "common/tokenizer.h"
#include "common/tokenizer_loader.h"
#include "common/utf8.h"

namespace flover {
namespace {

using Json = nlohmann::json;

std::string FixtureDir(const std::string& name) {
  return std::string(FLOVER_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + name;
}

Json ReadCases(const std::string& name) {
  std::ifstream in(FixtureDir(name) + "/cases.json");
  EXPECT_TRUE(in.good()) << "missing fixture " << FixtureDir(name) << "/cases.json";
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::parse(ss.str());
}

// Shows bytes with escapes, for messages about texts with control characters.
std::string Shown(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string ShownIds(const std::vector<int>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

class TokenizerFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    cases_ = ReadCases(GetParam());
    Result<Tokenizer> t = LoadTokenizer(FixtureDir(GetParam()));
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tok_.emplace(std::move(t).value());
  }

  const Tokenizer& tok() const { return *tok_; }

  Json cases_;
  std::optional<Tokenizer> tok_;
};

TEST_P(TokenizerFixtureTest, SpecialTokenIds) {
  EXPECT_EQ(tok().bos_id(), cases_["bos_id"].is_null() ? -1 : cases_["bos_id"].get<int>());
  EXPECT_EQ(tok().eos_id(), cases_["eos_id"].get<int>());
  EXPECT_EQ(tok().add_bos(), cases_["add_bos"].get<bool>());
}

TEST_P(TokenizerFixtureTest, EncodesAndDecodesEveryTextAsTokenizers) {
  const bool add_bos = cases_["add_bos"].get<bool>();
  int n_checked = 0, n_encode_wrong = 0, n_decode_wrong = 0;
  for (const Json& c : cases_["encode"]) {
    const std::string text = c[0].get<std::string>();
    const std::vector<int> expected = c[1].get<std::vector<int>>();
    const std::string decoded = c.size() > 2 ? c[2].get<std::string>() : text;
    const std::vector<int> ids = tok().Encode(text, /*add_bos=*/false);
    if (ids != expected && ++n_encode_wrong <= 10)
      ADD_FAILURE() << "Encode(" << Shown(text) << ") = " << ShownIds(ids) << ", tokenizers gives "
                    << ShownIds(expected);
    std::vector<int> with_bos = expected;
    if (add_bos) with_bos.insert(with_bos.begin(), tok().bos_id());
    EXPECT_EQ(tok().Encode(text, /*add_bos=*/true), with_bos) << Shown(text);
    const std::string got = tok().Decode(expected, -1);
    if (got != decoded && ++n_decode_wrong <= 10)
      ADD_FAILURE() << "Decode(" << ShownIds(expected) << ") = " << Shown(got) << ", tokenizers gives "
                    << Shown(decoded);
    ++n_checked;
  }
  EXPECT_GE(n_checked, 1000);
  EXPECT_EQ(n_encode_wrong, 0) << "of " << n_checked;
  EXPECT_EQ(n_decode_wrong, 0) << "of " << n_checked;
}

TEST_P(TokenizerFixtureTest, DecodesRandomIdsAsTokenizers) {
  int n_wrong = 0;
  for (const Json& c : cases_["decode"]) {
    const std::vector<int> ids = c[0].get<std::vector<int>>();
    const std::string expected = c[1].get<std::string>();
    const std::string got = tok().Decode(ids, -1);
    if (got != expected && ++n_wrong <= 10)
      ADD_FAILURE() << "Decode(" << ShownIds(ids) << ") = " << Shown(got) << ", tokenizers gives " << Shown(expected);
  }
  EXPECT_EQ(n_wrong, 0) << "of " << cases_["decode"].size();
}

// Streamed one token at a time, the text is the whole decoding, in valid UTF-8 pieces.
TEST_P(TokenizerFixtureTest, StreamedTextEqualsTheWholeDecoding) {
  std::vector<std::vector<int>> sequences;
  for (const Json& c : cases_["encode"]) sequences.push_back(c[1].get<std::vector<int>>());
  for (const Json& c : cases_["decode"]) sequences.push_back(c[0].get<std::vector<int>>());
  int n_wrong = 0;
  for (const std::vector<int>& ids : sequences) {
    TokenStreamDecoder stream(tok(), -1);
    std::string text;
    bool pieces_valid = true;
    for (const int id : ids) {
      const std::string piece = stream.Push(id);
      pieces_valid = pieces_valid && IsValidUtf8(piece);
      text += piece;
    }
    const std::string tail = stream.Finish();
    pieces_valid = pieces_valid && IsValidUtf8(tail);
    text += tail;
    const std::string whole = tok().Decode(ids, -1);
    if ((text != whole || !pieces_valid) && ++n_wrong <= 10)
      ADD_FAILURE() << "streaming " << ShownIds(ids) << " gives " << Shown(text) << (pieces_valid ? "" : " (invalid UTF-8)")
                    << ", Decode gives " << Shown(whole);
  }
  EXPECT_EQ(n_wrong, 0) << "of " << sequences.size();
}

// The tokenizer.json named alone reads its tokenizer_config.json too.
TEST_P(TokenizerFixtureTest, TheFileLoadsAsTheFolder) {
  Result<Tokenizer> file = LoadTokenizer(FixtureDir(GetParam()) + "/tokenizer.json");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->bos_id(), tok().bos_id());
  EXPECT_EQ(file->eos_id(), tok().eos_id());
  EXPECT_EQ(file->vocab_size(), tok().vocab_size());
  EXPECT_EQ(file->Encode("Hello <|eot_id|> world"), tok().Encode("Hello <|eot_id|> world"));
}

// The Hugging Face model fixtures (tests/fixtures/models, tok512 converted by
// transformers with legacy=False) load from their folders and encode as SentencePiece.
TEST(ModelFolderTokenizerTest, LoadsFromTheFolder) {
  for (const char* name : {"llama2", "tinyllama"}) {
    Result<Tokenizer> t = LoadTokenizer(std::string(FLOVER_SOURCE_DIR) + "/tests/fixtures/models/" + name);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->vocab_size(), 512);
    EXPECT_EQ(t->bos_id(), 1);
    EXPECT_EQ(t->eos_id(), 2);
    EXPECT_EQ(t->Encode("Sara"), (std::vector<int>{1, 301, 295, 412})) << name;
    EXPECT_EQ(t->Decode({301, 295, 412}, 1), "Sara");
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerFixtureTest,
                         ::testing::Values("llama3", "qwen2", "gpt2", "llama2", "llama2-metaspace", "features"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace flover
