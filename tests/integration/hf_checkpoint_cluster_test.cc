// Hugging Face checkpoints served by the real daemons: a coordinator and two tensor-
// parallel workers load each tiny checkpoint of tests/fixtures/models (one per
// architecture: LLaMA 2, TinyLlama, LLaMA 3 with rope scaling and sharded safetensors,
// Mistral, Qwen2, GPT-J), all its prompts are submitted at once (fused into the same
// steps), and every request's greedy tokens must equal what transformers generated.
// Then from text: the qwen2 fixture folder and its GGUF conversions (bf16, Q8_0), each
// tokenizing with its own vocabulary, with the text prompts of its text_reference.json.
// And model.dtype: CPU workers serving the weights quantized as the config says.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tests/hf_reference.h"
#include "tests/hf_text_reference.h"
#include "tests/engine/decoder_runs.h"
#include "tests/integration/test_cluster.h"
#include "worker/engine/decoder.h"
#include "worker/model/model_loader.h"

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

// A one-rank cluster serving the qwen2 folder with model.dtype `dtype` and
// kv_cache.dtype `kv_dtype` ("" leaves it unset: fp32), kv_cache.memory_mib
// `kv_memory_mib`, gives the greedy tokens of the in-process decoder on the folder
// loaded and cached alike. Returns the KV blocks the replica reports (-1 on failure).
int ExpectInProcessTokens(const testing::HfReference& ref, const std::string& dtype, const std::string& kv_dtype,
                          double kv_memory_mib = 16) {
  SCOPED_TRACE("model.dtype " + dtype + ", kv_cache.dtype " + (kv_dtype.empty() ? "unset" : kv_dtype));
  const std::optional<WeightDType> weights =
      dtype == "auto" ? std::nullopt : std::optional<WeightDType>(*ParseWeightDType(dtype));
  const cpu::KvDType kv = kv_dtype == "fp16"   ? cpu::KvDType::kF16
                          : kv_dtype == "bf16" ? cpu::KvDType::kBF16
                                               : cpu::KvDType::kF32;
  Result<LoadedModel> model = LoadModel(ref.folder, 0, LoadTarget{ShardInfo{}, nullptr, WeightPolicyFor(weights)});
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return -1;
  if (weights) {
    EXPECT_EQ(model->weights.layers[0].wq.format(), WeightFormatOf(*weights));
  }
  Decoder decoder(std::move(model->weights));
  std::vector<std::vector<int>> seqs = ref.prompts;
  std::vector<int> n_prompt;
  for (const std::vector<int>& p : ref.prompts) n_prompt.push_back(static_cast<int>(p.size()));
  testing::RunDecoder(decoder, seqs, n_prompt, 15, /*extend=*/true, nullptr, kv);

  TestClusterOptions options;
  options.model = ref.folder;
  options.tensor_parallel = 1;
  options.dtype = dtype;
  options.kv_dtype = kv_dtype;
  options.kv_memory_mib = kv_memory_mib;
  Result<std::unique_ptr<TestCluster>> cluster = TestCluster::Start(options);
  EXPECT_TRUE(cluster.ok()) << cluster.status().ToString();
  if (!cluster.ok()) return -1;
  Result<std::unique_ptr<Client>> client = (*cluster)->Connect();
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  if (!client.ok()) return -1;
  RequestSession session(**client);
  StopParams stop;
  stop.max_tokens = 16;
  stop.ignore_eos = true;
  for (size_t i = 0; i < ref.prompts.size(); ++i)
    EXPECT_TRUE(session.Submit(TokenRequest(std::to_string(i), ref.prompts[i], stop, false)).ok());
  const Status waited = session.WaitAll(300s);
  EXPECT_TRUE(waited.ok()) << waited.ToString();
  if (!waited.ok()) return -1;
  std::map<std::string, RequestRecord> records;
  for (const RequestRecord& r : session.records()) records[r.id] = r;
  for (size_t i = 0; i < ref.prompts.size(); ++i) {
    const RequestRecord& r = records.at(std::to_string(i));
    EXPECT_EQ(r.tokens, std::vector<int>(seqs[i].begin() + n_prompt[i], seqs[i].end())) << "prompt " << i;
  }
  Result<proto::ClusterStatus> status = (*client)->FetchStatus(std::chrono::milliseconds(30000));
  EXPECT_TRUE(status.ok()) << status.status().ToString();
  if (!status.ok() || status->replicas_size() != 1) return -1;
  return status->replicas(0).kv_blocks_total();
}

// model.dtype travels to the CPU workers: the qwen2 folder (bf16) served as q8_0 and as
// q4_0 weights (on one rank: its 32-wide rows cannot be split in blocks over two).
TEST(WeightDTypeClusterTest, CpuWorkersServeTheFormatTheConfigNames) {
  const testing::HfReference ref = testing::LoadHfReference("qwen2");
  for (const std::string dtype : {"q8_0", "q4_0"}) ExpectInProcessTokens(ref, dtype, "");
}

// kv_cache.dtype travels to the CPU workers: K and V kept in fp16 or bf16 give the
// in-process decoder's tokens with the same cache type, and the same 1 MiB holds twice
// the blocks of an fp32 cache (256 blocks of 16 tokens of this model's 256 bytes a token).
TEST(KvDTypeClusterTest, CpuWorkersKeepTheKvCacheInTheConfiguredType) {
  const testing::HfReference ref = testing::LoadHfReference("qwen2");
  const int fp32_blocks = ExpectInProcessTokens(ref, "auto", "", 1);
  EXPECT_EQ(fp32_blocks, 256);
  for (const std::string kv_dtype : {"fp16", "bf16"}) {
    EXPECT_EQ(ExpectInProcessTokens(ref, "auto", kv_dtype, 1), 2 * fp32_blocks) << kv_dtype;
  }
}

// Every text prompt (ASCII, CJK and emoji, digits, whitespace runs, chat markup), half
// of them streamed, greedy, stopping at EOS: each is encoded to tokenizers' ids and
// continues with 16 tokens. The coordinator tokenizes with the model's own vocabulary:
// the folder's tokenizer.json, or the vocabulary embedded in the GGUF file (a byte-level
// BPE "gpt2" one, pre-tokenizer qwen2), which gguf_qwen2_test shows to encode and decode
// as tokenizers does.
//   - The folder and its bf16 conversion: transformers' 16 tokens, whose text (streamed
//     and final) is tokenizers' decoding of them.
//   - The Q8_0 conversion: its quantization moves the logits (1.6-3.2%), so transformers'
//     tokens are not the reference; the in-process decoder on the same file is. Its
//     32-wide attn_output rows cannot be split in Q8_0 blocks over two ranks, so the
//     workers load it as fp32 (model.dtype), as the in-process decoder does.
struct TextServing {
  const char* name;
  const char* model;          // under tests/fixtures/models/qwen2
  bool transformers_tokens;   // else: the in-process decoder's greedy tokens
  const char* dtype = "auto";  // model.dtype
};
void PrintTo(const TextServing& s, std::ostream* os) { *os << s.name; }

// The greedy continuations of `prompts` by the in-process decoder on `path` (one rank).
std::vector<std::vector<int>> InProcessGreedy(const std::string& path, const std::vector<testing::TextPrompt>& prompts) {
  Result<LoadedModel> model = LoadModel(path);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return {};
  Decoder decoder(std::move(model->weights));
  std::vector<std::vector<int>> seqs;
  std::vector<int> n_prompt;
  for (const testing::TextPrompt& p : prompts) {
    seqs.push_back(p.ids);
    n_prompt.push_back(static_cast<int>(p.ids.size()));
  }
  const int n_new = static_cast<int>(prompts.at(0).greedy.size());
  testing::RunDecoder(decoder, seqs, n_prompt, n_new - 1, /*extend=*/true);
  std::vector<std::vector<int>> out;
  for (size_t i = 0; i < seqs.size(); ++i) out.emplace_back(seqs[i].begin() + n_prompt[i], seqs[i].begin() + n_prompt[i] + n_new);
  return out;
}

class HfTextClusterTest : public ::testing::TestWithParam<TextServing> {};

TEST_P(HfTextClusterTest, TextPromptsGiveTheReferenceTokensWithTensorParallelTwo) {
  const std::vector<testing::TextPrompt> prompts = testing::LoadTextReference("qwen2");
  TestClusterOptions options;
  options.model = testing::FixturePath("models/qwen2") + GetParam().model;
  options.tensor_parallel = 2;
  options.dtype = GetParam().dtype;
  std::vector<std::vector<int>> want;
  for (const testing::TextPrompt& p : prompts) want.push_back(p.greedy);
  if (!GetParam().transformers_tokens) {
    want = InProcessGreedy(options.model, prompts);
    ASSERT_EQ(want.size(), prompts.size());
  }
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
    EXPECT_EQ(r.tokens, want[i]);
    if (!GetParam().transformers_tokens) continue;
    EXPECT_EQ(r.text, prompts[i].greedy_text);
    if (i % 2 == 0) {
      EXPECT_EQ(r.streamed_text, prompts[i].greedy_text);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Qwen2, HfTextClusterTest,
                         ::testing::Values(TextServing{"Folder", "", true},
                                           TextServing{"GgufBf16", "/model-bf16.gguf", true},
                                           TextServing{"GgufQ8_0", "/model-q8_0.gguf", false, "fp32"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace flover
