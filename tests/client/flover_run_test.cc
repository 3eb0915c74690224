// Runs the real `flover run` binary and checks its JSON output and its errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

#include "tests/hf_reference.h"
#include "tests/hf_text_reference.h"
#include "tests/test_paths.h"

namespace {

struct CliRun {
  int exit_code;
  std::string out;  // stdout; stderr goes to a file read into err
  std::string err;
};

CliRun Flover(const std::string& args) {
  // One file per test: ctest runs the tests of this file in parallel.
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::replace(name.begin(), name.end(), '/', '_');  // parameterised tests: "Test/param"
  const std::string err_file = ::testing::TempDir() + "/flover_run_stderr_" + name + ".txt";
  const std::string cmd = std::string(FLOVER_BIN) + " " + args + " 2>" + err_file;
  CliRun r{-1, "", ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* e = fopen(err_file.c_str(), "r")) {
    for (size_t n; (n = fread(buf.data(), 1, buf.size(), e)) > 0;) r.err.append(buf.data(), n);
    fclose(e);
  }
  return r;
}

std::string Model() { return flover::testing::Stories260kBin(); }
std::string Tok() { return flover::testing::Tok512Bin(); }

TEST(FloverRunTest, JsonOutputMatchesTheReference) {
  CliRun r = Flover("run --model " + Model() + " --tokenizer " + Tok() +
                 " --prompt Sara --prompt 'Ben had a red car' --max-tokens 61 --stagger 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::vector<nlohmann::json> objs;
  for (std::string line; std::getline(lines, line);) objs.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objs.size(), 2u) << r.out;
  EXPECT_EQ(objs[0]["prompt"], "Sara");
  EXPECT_EQ(objs[0]["prompt_tokens"], 4);
  EXPECT_EQ(objs[0]["completion_tokens"], 61);
  EXPECT_EQ(objs[0]["finish_reason"], "length");
  const std::vector<int> first = objs[0]["tokens"].get<std::vector<int>>();
  ASSERT_EQ(first.size(), 61u);
  EXPECT_EQ(std::vector<int>(first.begin(), first.begin() + 8), (std::vector<int>{269, 368, 302, 382, 276, 337, 299, 322}));
  EXPECT_EQ(objs[0]["text"].get<std::string>().rfind(" and Ben were playing in the park.", 0), 0u) << objs[0]["text"];
  EXPECT_EQ(objs[1]["prompt"], "Ben had a red car");
  EXPECT_EQ(objs[1]["text"].get<std::string>().rfind(" named Kitty. Kitty loved to play", 0), 0u) << objs[1]["text"];
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
}

TEST(FloverRunTest, TokenIdsInWithoutTokenizer) {
  CliRun r = Flover("run --model dummy:tiny --prompt-ids 1,5,6 --max-tokens 5 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"].size(), 5u);
  EXPECT_EQ(j["prompt_tokens"], 3);
}

// --dtype: the weights in that format (the first line says what the engine holds:
// stories260K's w2, 172 values wide, stays fp16) and the story continues as in fp32
// (typed_decoder_test measures q8_0 keeping every greedy token of stories260K).
TEST(FloverRunTest, DtypeQ8_0KeepsTheWeightsInQ8_0) {
  CliRun r = Flover("run --model " + Model() + " --tokenizer " + Tok() +
                    " --prompt Sara --max-tokens 8 --dtype q8_0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("weights q8_0 "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" + fp16 "), std::string::npos) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"].get<std::vector<int>>(), (std::vector<int>{269, 368, 302, 382, 276, 337, 299, 322}));
  CliRun plain = Flover("run --model " + Model() + " --prompt-ids 1,5 --max-tokens 1 --json");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_NE(plain.err.find("weights fp32 "), std::string::npos) << "auto keeps a llama2.c file fp32: " << plain.err;
}

TEST(FloverRunTest, DtypeErrors) {
  CliRun r = Flover("run --model dummy:tiny --prompt-ids 1 --dtype q9");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--dtype 'q9' is not auto, fp32, fp16, bf16, q8_0, q4_0 or q4_k"), std::string::npos) << r.err;
  r = Flover("run --model dummy:tiny --prompt-ids 1 --device cuda:0 --dtype q4_k");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--dtype q4_k is a CPU weight format; cuda:0 stores fp32, fp16 or bf16"), std::string::npos)
      << r.err;
}

// --kv-dtype: K and V in 16 bits, so the same --kv-cache-mib holds twice the blocks
// (stories260K: 1280 bytes a token in fp32, 51 blocks of 16 tokens in 1 MiB), and the
// story goes on as in fp32.
TEST(FloverRunTest, KvDTypeHoldsTwiceTheBlocks) {
  const std::string args = "run --model " + Model() + " --tokenizer " + Tok() +
                           " --prompt Sara --max-tokens 8 --kv-cache-mib 1 --json";
  CliRun fp32 = Flover(args);
  ASSERT_EQ(fp32.exit_code, 0) << fp32.err;
  EXPECT_NE(fp32.err.find(" 51 KV blocks of 16 tokens"), std::string::npos) << fp32.err;
  EXPECT_EQ(fp32.err.find(", KV "), std::string::npos) << fp32.err;
  for (const char* dtype : {"fp16", "bf16"}) {
    CliRun r = Flover(args + " --kv-dtype " + dtype);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find(std::string(", KV ") + dtype + ", "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(" 102 KV blocks of 16 tokens"), std::string::npos) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["tokens"].get<std::vector<int>>(), (std::vector<int>{269, 368, 302, 382, 276, 337, 299, 322})) << dtype;
  }
}

TEST(FloverRunTest, KvDTypeErrors) {
  CliRun r = Flover("run --model dummy:tiny --prompt-ids 1 --kv-dtype fp8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--kv-dtype 'fp8' is not fp32, fp16 or bf16"), std::string::npos) << r.err;
  // A GPU keeps its KV cache in the weights' type (fp16 for auto): refused before any
  // device is looked for.
  r = Flover("run --model dummy:tiny --prompt-ids 1 --device cuda:0 --kv-dtype bf16");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("KV cache dtype bf16 (kv_cache.dtype, --kv-dtype) is not what cuda:0 keeps its KV cache in: "
                       "the weights' type, fp16"),
            std::string::npos)
      << r.err;
}

// `flover run` on each Hugging Face fixture folder (tests/fixtures/models: Llama 2,
// TinyLlama, Llama 3, Mistral, Qwen2, GPT-J), every prompt in one fused engine: the
// greedy tokens are those transformers generated.
class FloverRunHfTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FloverRunHfTest, GreedyTokensEqualTransformers) {
  const flover::testing::HfReference ref = flover::testing::LoadHfReference(GetParam());
  std::string args = "run --model " + ref.folder + " --max-tokens 16 --ignore-eos --temperature 0 --json";
  for (const std::vector<int>& prompt : ref.prompts) {
    std::string ids;
    for (int id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    args += " --prompt-ids " + ids;
  }
  CliRun r = Flover(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::vector<nlohmann::json> objs;
  for (std::string line; std::getline(lines, line);) objs.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objs.size(), ref.prompts.size()) << r.out;
  for (size_t i = 0; i < objs.size(); ++i)
    EXPECT_EQ(objs[i]["tokens"].get<std::vector<int>>(), ref.greedy[i]) << GetParam() << " prompt " << i;
}

INSTANTIATE_TEST_SUITE_P(Architectures, FloverRunHfTest, ::testing::ValuesIn(flover::testing::HfFixtureNames()),
                         [](const auto& info) { return info.param; });

// `text` as one shell word: in single quotes, each ' as '\''.
std::string ShellQuoted(const std::string& text) {
  std::string q = "'";
  for (char c : text) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `flover run` from text on the qwen2 fixture: the folder (its tokenizer.json) and its
// GGUF conversion (the vocabulary embedded in the file), every text prompt of
// text_reference.json (ASCII, CJK and emoji, digits, runs of whitespace, chat markup
// with special tokens) in one fused engine, greedy, stopping at EOS: each prompt encodes
// to tokenizers' ids and continues with transformers' 16 tokens and their text.
class FloverRunTextTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FloverRunTextTest, TextPromptsGiveTransformersTokensAndText) {
  const std::vector<flover::testing::TextPrompt> prompts = flover::testing::LoadTextReference("qwen2");
  std::string args = "run --model " + flover::testing::FixturePath("models/qwen2" + GetParam()) +
                     " --max-tokens 16 --temperature 0 --json";
  for (const flover::testing::TextPrompt& p : prompts) args += " --prompt " + ShellQuoted(p.text);
  CliRun r = Flover(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::vector<nlohmann::json> objs;
  for (std::string line; std::getline(lines, line);) objs.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objs.size(), prompts.size()) << r.out;
  for (size_t i = 0; i < objs.size(); ++i) {
    SCOPED_TRACE(prompts[i].kind + " prompt");
    EXPECT_EQ(objs[i]["prompt"], prompts[i].text);
    EXPECT_EQ(objs[i]["prompt_tokens"], prompts[i].ids.size());
    EXPECT_EQ(objs[i]["finish_reason"], "length");
    EXPECT_EQ(objs[i]["tokens"].get<std::vector<int>>(), prompts[i].greedy);
    EXPECT_EQ(objs[i]["text"], prompts[i].greedy_text);
  }
}

INSTANTIATE_TEST_SUITE_P(Qwen2, FloverRunTextTest, ::testing::Values("", "/model-bf16.gguf"), [](const auto& info) {
  return info.param.empty() ? std::string("Folder") : std::string("Gguf");
});

TEST(FloverRunTest, ClearErrors) {
  CliRun missing = Flover("run --model /nonexistent/model.bin --prompt hi");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("/nonexistent/model.bin"), std::string::npos) << missing.err;

  CliRun bad_ids = Flover("run --model dummy:tiny --prompt-ids 1,x");
  EXPECT_NE(bad_ids.exit_code, 0);
  EXPECT_NE(bad_ids.err.find("is not a list of token ids"), std::string::npos) << bad_ids.err;

  CliRun no_tok = Flover("run --model dummy:tiny --prompt hello");
  EXPECT_NE(no_tok.exit_code, 0);
  EXPECT_NE(no_tok.err.find("no tokenizer"), std::string::npos) << no_tok.err;

  CliRun out_of_vocab = Flover("run --model dummy:tiny --prompt-ids 1,99999");
  EXPECT_NE(out_of_vocab.exit_code, 0);
  EXPECT_NE(out_of_vocab.err.find("outside the vocabulary"), std::string::npos) << out_of_vocab.err;

  CliRun bad_temp = Flover("run --model " + Model() + " --tokenizer " + Tok() + " --prompt hi --temperature -2");
  EXPECT_NE(bad_temp.exit_code, 0);
  EXPECT_NE(bad_temp.err.find("temperature"), std::string::npos) << bad_temp.err;
}

}  // namespace
