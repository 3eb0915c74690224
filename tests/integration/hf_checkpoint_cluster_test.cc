// Hugging Face checkpoints served by the real daemons: a coordinator and two tensor-
// parallel workers load each tiny checkpoint of tests/fixtures/models (one per
// architecture: LLaMA 2, TinyLlama, LLaMA 3 with rope scaling and sharded safetensors,
// Mistral, Qwen2, GPT-J), all its prompts are submitted at once (fused into the same
// steps), and every request's greedy tokens must equal what transformers generated.
// Then from text: the qwen2 fixture folder and its GGUF conversion with the text prompts
// of its text_reference.json.
#include <gtest/gtest.h>

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "tests/hf_reference.h"
#include "tests/hf_text_reference.h"
#include "tests/integration/test_cluster.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;
using testing::TestClusterOptions;
using testing::TokenRequest;

class HfCheckpointClusterTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfCheckpointClusterTest, GreedyTokensEqualTransformersWithTensorParallelTwo) {
  const testing::HfReference ref = testing::LoadHfReference(GetParam());
  TestClusterOptions options;
  options.model = ref.folder;
  options.tensor_parallel = 2;
  Result<std::unique_ptr<TestCluster>> cluster = TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  Result<std::unique_ptr<Client>> client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  RequestSession session(**client);
  StopParams stop;
  stop.max_tokens = 16;
  stop.ignore_eos = true;  // transformers generated 16 tokens whatever they were
  for (size_t i = 0; i < ref.prompts.size(); ++i)
    ASSERT_TRUE(session.Submit(TokenRequest(std::to_string(i), ref.prompts[i], stop, i % 2 == 0)).ok());
  const Status waited = session.WaitAll(300s);
  ASSERT_TRUE(waited.ok()) << waited.ToString();
  std::map<std::string, RequestRecord> records;
  for (const RequestRecord& r : session.records()) records[r.id] = r;
  for (size_t i = 0; i < ref.prompts.size(); ++i) {
    const RequestRecord& r = records.at(std::to_string(i));
    EXPECT_EQ(r.finish, "length") << "prompt " << i << ": " << r.text;
    EXPECT_EQ(r.tokens, ref.greedy[i]) << GetParam() << " prompt " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, HfCheckpointClusterTest, ::testing::ValuesIn(testing::HfFixtureNames()),
                         [](const auto& info) { return info.param; });

// Every text prompt (ASCII, CJK and emoji, digits, whitespace runs, chat markup), half
// of them streamed, greedy, stopping at EOS: each is encoded to tokenizers' ids and
// continues with transformers' 16 tokens, whose text (streamed and final) is tokenizers'
// decoding of them. The coordinator tokenizes with a tokenizer.json (model.tokenizer, or
// the model folder's own): it does not read the vocabulary embedded in a GGUF file
// (flover run does), so the GGUF is served with the folder's tokenizer, which
// gguf_qwen2_test shows to encode and decode as the embedded one.
struct TextServing {
  const char* name;
  const char* model;      // under tests/fixtures/models/qwen2
  bool folder_tokenizer;  // model.tokenizer names the folder
};
void PrintTo(const TextServing& s, std::ostream* os) { *os << s.name; }

class HfTextClusterTest : public ::testing::TestWithParam<TextServing> {};

TEST_P(HfTextClusterTest, TextPromptsGiveTransformersTokensAndTextWithTensorParallelTwo) {
  const std::vector<testing::TextPrompt> prompts = testing::LoadTextReference("qwen2");
  TestClusterOptions options;
  const std::string folder = testing::FixturePath("models/qwen2");
  options.model = folder + GetParam().model;
  if (GetParam().folder_tokenizer) options.tokenizer = folder;
  options.tensor_parallel = 2;
  Result<std::unique_ptr<TestCluster>> cluster = TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  Result<std::unique_ptr<Client>> client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  RequestSession session(**client);
  StopParams stop;
  stop.max_tokens = 16;
  for (size_t i = 0; i < prompts.size(); ++i)
    ASSERT_TRUE(session.Submit(testing::TextRequest(std::to_string(i), prompts[i].text, stop, i % 2 == 0)).ok());
  const Status waited = session.WaitAll(300s);
  ASSERT_TRUE(waited.ok()) << waited.ToString();
  std::map<std::string, RequestRecord> records;
  for (const RequestRecord& r : session.records()) records[r.id] = r;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(prompts[i].kind + " prompt");
    const RequestRecord& r = records.at(std::to_string(i));
    EXPECT_EQ(r.finish, "length") << r.ErrorString();
    EXPECT_EQ(r.prompt_tokens, static_cast<int>(prompts[i].ids.size()));
    EXPECT_EQ(r.tokens, prompts[i].greedy);
    EXPECT_EQ(r.text, prompts[i].greedy_text);
    if (i % 2 == 0) {
      EXPECT_EQ(r.streamed_text, prompts[i].greedy_text);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Qwen2, HfTextClusterTest,
                         ::testing::Values(TextServing{"Folder", "", false},
                                           TextServing{"Gguf", "/model-bf16.gguf", true}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace flover
