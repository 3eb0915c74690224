// LoadModelTokenizer: which tokenizer serves a cluster's model (the coordinator's): the
// one named, else the Hugging Face folder's tokenizer.json, else the vocabulary
// embedded in a GGUF file; none for a dummy model or a checkpoint without one.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/hf_text_reference.h"
#include "tests/test_paths.h"
#include "worker/model/model_tokenizer.h"

namespace flover {
namespace {

std::string Qwen2(const std::string& file = "") { return testing::FixturePath("models/qwen2") + file; }

TEST(ModelTokenizerTest, AGgufFileServesItsEmbeddedVocabulary) {
  Result<std::optional<Tokenizer>> tokenizer = LoadModelTokenizer("", Qwen2("/model-q8_0.gguf"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  ASSERT_TRUE(tokenizer->has_value());
  EXPECT_EQ((*tokenizer)->vocab_size(), 512);
  for (const testing::TextPrompt& p : testing::LoadTextReference("qwen2")) {
    EXPECT_EQ((*tokenizer)->Encode(p.text, false), p.ids) << p.kind;
  }
}

TEST(ModelTokenizerTest, AFolderServesItsTokenizerJsonAndANamedTokenizerWins) {
  Result<std::optional<Tokenizer>> folder = LoadModelTokenizer("", Qwen2());
  ASSERT_TRUE(folder.ok()) << folder.status().ToString();
  ASSERT_TRUE(folder->has_value());
  EXPECT_EQ((*folder)->vocab_size(), 512);
  // The tinyllama fixture's tokenizer named for the qwen2 GGUF: it is the one used.
  const std::string named = testing::FixturePath("models/tinyllama/tokenizer.json");
  Result<std::optional<Tokenizer>> chosen = LoadModelTokenizer(named, Qwen2("/model-bf16.gguf"));
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  ASSERT_TRUE(chosen->has_value());
  EXPECT_NE((*chosen)->Encode("Hello world", false), (*folder)->Encode("Hello world", false));
}

TEST(ModelTokenizerTest, ADummyModelHasNone) {
  Result<std::optional<Tokenizer>> none = LoadModelTokenizer("", "dummy:tiny");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
}

TEST(ModelTokenizerTest, ATruncatedGgufIsAnErrorNamingTheFile) {
  const std::string path = ::testing::TempDir() + "/truncated.gguf";
  {
    std::ifstream in(Qwen2("/model-q8_0.gguf"), std::ios::binary);
    std::string head(200, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(path, std::ios::binary) << head;
  }
  Result<std::optional<Tokenizer>> tokenizer = LoadModelTokenizer("", path);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_NE(tokenizer.status().ToString().find(path), std::string::npos) << tokenizer.status().ToString();
}

}  // namespace
}  // namespace flover
