// Hugging Face checkpoints served by the real daemons: a coordinator and two tensor-
// parallel workers load each tiny checkpoint of tests/fixtures/models (one per
// architecture: LLaMA 2, TinyLlama, LLaMA 3 with rope scaling and sharded safetensors,
// Mistral, Qwen2, GPT-J), all its prompts are submitted at once (fused into the same
// steps), and every request's greedy tokens must equal what transformers generated.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "tests/hf_reference.h"
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

}  // namespace
}  // namespace flover
