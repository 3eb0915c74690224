// tokenizer.json and tokenizer_config.json reading (common/tokenizer_json.h) and
// LoadTokenizer (common/tokenizer_loader.h): small hand-written tokenizers for the
// features the reference fixtures do not cover, and the errors.
#include "common/tokenizer_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/tokenizer_loader.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A BPE tokenizer.json over `vocab` (a JSON object) and `merges` (a JSON array), with
// the other sections given as JSON text ("null" for none).
std::string TokenizerJson(const std::string& vocab, const std::string& merges, const std::string& extra_model = "",
                          const std::string& pre_tokenizer = "null", const std::string& decoder = "null",
                          const std::string& added_tokens = "[]", const std::string& normalizer = "null",
                          const std::string& post_processor = "null") {
  return R"({"version":"1.0","added_tokens":)" + added_tokens + R"(,"normalizer":)" + normalizer +
         R"(,"pre_tokenizer":)" + pre_tokenizer + R"(,"post_processor":)" + post_processor + R"(,"decoder":)" +
         decoder + R"(,"model":{"type":"BPE")" + extra_model + R"(,"vocab":)" + vocab + R"(,"merges":)" + merges +
         "}}";
}

Tokenizer Parse(const std::string& json) {
  Result<Tokenizer> t = ParseTokenizerJson(json, "test.json");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

void ExpectError(const Result<Tokenizer>& r, StatusCode code, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  for (const std::string& p : parts) EXPECT_THAT(r.status().message(), HasSubstr(p));
}

// The older Metaspace form (add_prefix_space), in the pre-tokenizer and the decoder.
TEST(TokenizerJsonTest, OlderMetaspaceForm) {
  const std::string json = TokenizerJson(
      R"({"▁":0,"a":1,"b":2,"▁a":3,"▁b":4})", R"(["▁ a","▁ b"])", "",
      R"({"type":"Metaspace","replacement":"▁","add_prefix_space":true})",
      R"({"type":"Metaspace","replacement":"▁","add_prefix_space":true})");
  const Tokenizer tok = Parse(json);
  EXPECT_EQ(tok.Encode("a b", false), (std::vector<int>{3, 4}));
  EXPECT_EQ(tok.Encode("ab", false), (std::vector<int>{3, 2}));
  EXPECT_EQ(tok.Decode({3, 4}, -1), "a b");  // the first token's "▁" is dropped
  EXPECT_EQ(tok.Decode({3, 4}, 2), " a b");  // a continuation keeps it
}

TEST(TokenizerJsonTest, UnknownTokensFuseWhenAsked) {
  const std::string vocab = R"({"<unk>":0,"a":1})";
  const Tokenizer fused = Parse(TokenizerJson(vocab, "[]", R"(,"unk_token":"<unk>","fuse_unk":true)"));
  EXPECT_EQ(fused.Encode("xyza", false), (std::vector<int>{0, 1}));
  EXPECT_EQ(fused.max_piece_bytes(), INT_MAX);  // one token for any amount of text
  const Tokenizer apart = Parse(TokenizerJson(vocab, "[]", R"(,"unk_token":"<unk>","fuse_unk":false)"));
  EXPECT_EQ(apart.Encode("xyza", false), (std::vector<int>{0, 0, 0, 1}));
  EXPECT_EQ(apart.max_piece_bytes(), 5);  // "<unk>"
}

TEST(TokenizerJsonTest, WithoutDecoderTokensAreJoinedBySpaces) {
  const Tokenizer tok = Parse(TokenizerJson(R"({"a":0,"b":1,"ab":2})", R"(["a b"])"));
  EXPECT_EQ(tok.Encode("ab", false), (std::vector<int>{2}));
  EXPECT_EQ(tok.Decode({2, 0, 1}, -1), "ab a b");
  EXPECT_EQ(tok.Decode({7, 0}, -1), "a");  // an id without a token is left out
}

TEST(TokenizerJsonTest, SpecialTokensMatchBeforeTheModel) {
  const Tokenizer tok = Parse(TokenizerJson(
      R"({"a":0,"b":1,"<":2,">":3})", "[]", "", "null", "null",
      R"([{"id":4,"content":"<x>","special":true,"normalized":false},
          {"id":5,"content":"<xy>","special":true,"normalized":false}])"));
  EXPECT_EQ(tok.vocab_size(), 6);
  EXPECT_EQ(tok.Encode("a<x>b<xy><x", false), (std::vector<int>{0, 4, 1, 5, 2}));  // 'x' has no token
  EXPECT_EQ(tok.TokenToId("<xy>"), 5);
}

TEST(TokenizerJsonTest, TemplateBosAndConfig) {
  const std::string json = TokenizerJson(
      R"({"a":0,"<s>":1,"</s>":2})", "[]", "", "null", "null",
      R"([{"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}])", "null",
      R"({"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},
          {"SpecialToken":{"id":"</s>","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]},
          "</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}})");
  const Tokenizer tok = Parse(json);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);  // "</s>" by name
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.Encode("a", true), (std::vector<int>{1, 0}));  // EOS is never added

  Result<TokenizerConfigJson> config = ParseTokenizerConfigJson(
      R"({"bos_token":{"content":"</s>","lstrip":false},"eos_token":"a","add_bos_token":false})", "config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Result<Tokenizer> configured = ParseTokenizerJson(json, "test.json", *config);
  ASSERT_TRUE(configured.ok()) << configured.status().ToString();
  EXPECT_EQ(configured->bos_id(), 2);
  EXPECT_EQ(configured->eos_id(), 0);
  EXPECT_FALSE(configured->add_bos());
  EXPECT_EQ(configured->Encode("a", true), (std::vector<int>{0}));

  config = ParseTokenizerConfigJson(R"({"bos_token":"<nope>"})", "config.json");
  ASSERT_TRUE(config.ok());
  ExpectError(ParseTokenizerJson(json, "test.json", *config), StatusCode::kInvalidArgument,
              {"test.json", "bos_token", "\"<nope>\""});
  EXPECT_FALSE(ParseTokenizerConfigJson(R"({"eos_token":7})", "config.json").ok());
}

TEST(TokenizerJsonTest, MalformedFilesNameTheFileAndTheField) {
  const std::string vocab = R"({"a":0,"b":1,"ab":2})";
  ExpectError(ParseTokenizerJson("{\"model\": ", "tok.json"), StatusCode::kCorruption, {"tok.json", "not valid JSON"});
  ExpectError(ParseTokenizerJson("[1, 2]", "tok.json"), StatusCode::kCorruption, {"tok.json", "object"});
  ExpectError(ParseTokenizerJson("{}", "tok.json"), StatusCode::kCorruption, {"tok.json: model must be an object"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, R"(["a b", "ab"])"), "tok.json"), StatusCode::kCorruption,
              {"tok.json: model.merges[1]", "one space"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, R"([["a"]])"), "tok.json"), StatusCode::kCorruption,
              {"model.merges[0]"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, R"(["a c"])"), "tok.json"), StatusCode::kCorruption,
              {"merge 0", "\"c\" is not in the vocabulary"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, R"(["b a"])"), "tok.json"), StatusCode::kCorruption,
              {"\"ba\" is not in the vocabulary"});
  ExpectError(ParseTokenizerJson(TokenizerJson(R"({"a":"zero"})", "[]"), "tok.json"), StatusCode::kCorruption,
              {"model.vocab.a must be an integer"});
  ExpectError(ParseTokenizerJson(TokenizerJson(R"({"a":-1})", "[]"), "tok.json"), StatusCode::kCorruption,
              {"model.vocab.a is -1"});
  ExpectError(ParseTokenizerJson(TokenizerJson(R"({"a":99999999})", "[]"), "tok.json"), StatusCode::kCorruption,
              {"model.vocab.a"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", R"(,"unk_token":"<unk>")"), "tok.json"),
              StatusCode::kCorruption, {"unk_token \"<unk>\""});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", "", "null", "null", R"([{"id":3}])"), "tok.json"),
              StatusCode::kCorruption, {"added_tokens[0].content must be a string"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", "", R"({"type":"Split","pattern":{"Regex":"(a"},
                                                                   "behavior":"Isolated"})"),
                                 "tok.json"),
              StatusCode::kInvalidArgument, {"pre_tokenizer.pattern", "does not compile"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", "", R"({"type":"Split","pattern":{"Regex":"a"},
                                                                   "behavior":"Sideways"})"),
                                 "tok.json"),
              StatusCode::kCorruption, {"pre_tokenizer.behavior"});
}

TEST(TokenizerJsonTest, UnsupportedPartsAreNamed) {
  const std::string vocab = R"({"a":0})";
  ExpectError(ParseTokenizerJson(R"({"model":{"type":"Unigram","vocab":[["a",0.0]]}})", "tok.json"),
              StatusCode::kInvalidArgument, {"tok.json: model.type \"Unigram\" is not supported", "BPE"});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", "", R"({"type":"Sequence","pretokenizers":[
                                                                   {"type":"Whitespace"}]})"),
                                 "tok.json"),
              StatusCode::kInvalidArgument, {"pre_tokenizer.pretokenizers[0].type \"Whitespace\""});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", "", "null", R"({"type":"WordPiece"})"), "tok.json"),
              StatusCode::kInvalidArgument, {"decoder.type \"WordPiece\""});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", "", "null", "null", "[]", R"({"type":"Lowercase"})"),
                                 "tok.json"),
              StatusCode::kInvalidArgument, {"normalizer.type \"Lowercase\""});
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", R"(,"dropout":0.1)"), "tok.json"),
              StatusCode::kInvalidArgument, {"model.dropout", "dropout"});
  EXPECT_TRUE(ParseTokenizerJson(TokenizerJson(vocab, "[]", R"(,"dropout":0.0)"), "tok.json").ok());
  // Sequences nested deeper than 8.
  std::string nested = R"({"type":"NFC"})";
  for (int i = 0; i < 10; ++i) nested = R"({"type":"Sequence","normalizers":[)" + nested + "]}";
  ExpectError(ParseTokenizerJson(TokenizerJson(vocab, "[]", "", "null", "null", "[]", nested), "tok.json"),
              StatusCode::kInvalidArgument, {"deeper than 8"});
}

TEST(TokenizerJsonTest, HugeTokensAreRefused) {
  const std::string big(70000, 'x');
  ExpectError(ParseTokenizerJson(TokenizerJson("{\"" + big + "\":0}", "[]"), "tok.json"), StatusCode::kInvalidArgument,
              {"model.vocab", "65536"});
}

class LoadTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("flover_load_tokenizer_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(LoadTokenizerTest, ALlama2cFileLoadsAsBefore) {
  Result<Tokenizer> a = LoadTokenizer(::flover::testing::Tok512Bin());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->kind(), Tokenizer::Kind::kPieceScores);
  EXPECT_EQ(a->Encode("Sara"), (std::vector<int>{1, 301, 295, 412}));
}

TEST_F(LoadTokenizerTest, AJsonFileIsRecognisedByTheOldReaderToo) {
  const std::string path = Write("tokenizer.json", TokenizerJson(R"({"a":0})", "[]"));
  Result<Tokenizer> old = Tokenizer::LoadLlama2c(path);
  ASSERT_FALSE(old.ok());
  EXPECT_THAT(old.status().message(), HasSubstr("JSON"));
  EXPECT_THAT(old.status().message(), Not(HasSubstr("truncated")));
  Result<Tokenizer> t = LoadTokenizer(path);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->kind(), Tokenizer::Kind::kBpe);
  // Any name, with whitespace first.
  EXPECT_TRUE(LoadTokenizer(Write("other.json", "\n  " + TokenizerJson(R"({"a":0})", "[]"))).ok());
}

TEST_F(LoadTokenizerTest, AFolderReadsItsConfig) {
  Write("model/tokenizer.json", TokenizerJson(R"({"a":0,"<s>":1,"</s>":2})", "[]"));
  Write("model/tokenizer_config.json", R"({"bos_token":"<s>","eos_token":"</s>","add_bos_token":true})");
  Result<Tokenizer> t = LoadTokenizer((dir_ / "model").string());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_TRUE(t->add_bos());
  EXPECT_EQ(t->Encode("a"), (std::vector<int>{1, 0}));

  Write("model/tokenizer_config.json", R"({"bos_token": )");
  Result<Tokenizer> bad = LoadTokenizer((dir_ / "model").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("tokenizer_config.json"));
}

TEST_F(LoadTokenizerTest, WrongThingsGiveClearErrors) {
  Result<Tokenizer> missing = LoadTokenizer((dir_ / "nope").string());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  Write("empty/tokenizer.model", "\x0a\x05");
  Result<Tokenizer> folder = LoadTokenizer((dir_ / "empty").string());
  EXPECT_EQ(folder.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(folder.status().message(), HasSubstr("has no tokenizer.json"));
  EXPECT_THAT(folder.status().message(), HasSubstr("SentencePiece"));

  Result<Tokenizer> gguf = LoadTokenizer(::flover::testing::Stories260kGguf());
  EXPECT_EQ(gguf.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(gguf.status().message(), HasSubstr("GGUF"));

  Result<Tokenizer> sp = LoadTokenizer(Write("tok.model", std::string("\x0a\x05<unk>", 7)));
  EXPECT_THAT(sp.status().message(), HasSubstr("SentencePiece"));

  Result<Tokenizer> config = LoadTokenizer(Write("tokenizer_config.json", "{\"bos_token\": \"<s>\"}"));
  EXPECT_THAT(config.status().message(), HasSubstr("name tokenizer.json"));

  const std::string broken = Write("broken/tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
  Result<Tokenizer> json = LoadTokenizer(broken);
  EXPECT_EQ(json.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(json.status().message(), HasSubstr(broken));
}

}  // namespace
}  // namespace flover
