// The CUDA backend on every architecture shape ModelSpec describes
// (tests/engine/architectures.h: LLaMA, LLaMA 3 rope scaling, Qwen2-like q/k/v biases
// with a tied LM head, GPT-J-like LayerNorm + parallel residual + partial rotary + GELU
// with biases + LM head bias, and a shape mixing them), against the CPU Decoder, on
// weights whose norm weights and biases are random too (ArchitectureWeights).
//
// Without a GPU: DeviceWeightBytes counts every tensor of every shape once, at its local
// size. The rest needs a GPU (skipped otherwise, with a message):
//   - dummy weights generated on the device equal host-generated ones uploaded, every
//     buffer byte for byte, whole and as tensor-parallel shards, in every dtype;
//   - the first fused prefill step's logits match the CPU Decoder's (normalised error)
//     and, at fp32, its sampled greedy tokens are the argmax of the CPU's logits;
//   - greedy generation through the Executor (prefill chunks fused with other requests'
//     decodes, requests joining at different steps) gives the CPU backend's tokens at
//     fp32, eagerly and on the fast decode path (graphs; at fp16 also Gemv);
//   - with two GPUs or more: tensor parallel 2 over NCCL gives the same first-step
//     logits and greedy tokens (one all-reduce per parallel-residual layer, b2 and the LM
//     head bias added once).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/device.h"
#include "tests/cuda/backend_fixtures.h"
#include "tests/cuda/gpu_test.h"
#include "tests/engine/architectures.h"
#include "worker/comm/kv_store.h"
#include "worker/comm/nccl_communicator.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/cuda/cuda_backend.h"
#include "worker/engine/cuda/device_weights.h"
#include "worker/engine/decoder.h"
#include "worker/model/dummy_model.h"
#include "worker/model/shard.h"

namespace flover {
namespace {

using cuda::testing::NormalisedError;
using testing::Architecture;
using testing::ArchitectureWeights;
using testing::CommonPrefix;
using testing::Drive;
using testing::FastConfig;
using testing::kBlockSize;
using testing::kPoolBlocks;
using testing::Outcome;
using testing::Request;
using testing::SmallArchitectures;
using testing::SmallConfig;
using testing::StatusOf;

constexpr uint32_t kWeightSeed = 21;

// ---------------------------------------------------------------------------------
// Dummy weights on the device.

std::vector<unsigned char> Bytes(const cuda::DeviceBuffer& b) {
  std::vector<unsigned char> out(b.bytes());
  if (!out.empty()) {
    EXPECT_TRUE(cuda::CopyToHost(out.data(), b.data(), out.size(), nullptr).ok());
  }
  return out;
}

// Every buffer of `a` equals the same buffer of `b`, byte for byte (absent ones too).
void ExpectSameWeights(const DeviceWeights& a, const DeviceWeights& b, const std::string& what) {
  std::vector<std::pair<std::string, std::vector<unsigned char>>> want;
  b.ForEachBuffer([&](const std::string& name, const cuda::DeviceBuffer& buffer) {
    want.emplace_back(name, Bytes(buffer));
  });
  size_t i = 0;
  a.ForEachBuffer([&](const std::string& name, const cuda::DeviceBuffer& buffer) {
    ASSERT_LT(i, want.size()) << what;
    EXPECT_EQ(name, want[i].first) << what;
    EXPECT_TRUE(Bytes(buffer) == want[i].second) << what << ": " << name << " differs";
    ++i;
  });
  EXPECT_EQ(i, want.size()) << what;
}

// Host dummy weights of any spec (MakeDummyWeights' spec overload).
ModelWeights HostDummy(const ModelSpec& spec, uint64_t seed) {
  Result<ModelWeights> w = MakeDummyWeights(spec, seed);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : ModelWeights{};
}

// The shapes whose on-device dummy weights are checked, with the shards to check: the
// stories260K preset (tied; up to 4 ranks), the same with a separate classifier and a
// vocabulary of 301 (151 + 150 rows, one padding row), and every architecture.
struct DummyCase {
  ModelSpec spec;
  std::vector<ShardInfo> shards;
};

std::vector<DummyCase> DummyCases() {
  const std::vector<ShardInfo> up_to_4 = {{0, 1}, {0, 2}, {1, 2}, {1, 4}, {3, 4}};
  const ModelSpec preset = *DummyPreset("stories260k");
  ModelSpec odd = preset;
  odd.vocab_size = 301;
  odd.n_layers = 2;
  odd.shared_classifier = false;
  std::vector<DummyCase> cases = {{preset, up_to_4}, {odd, up_to_4}};
  for (const Architecture& a : SmallArchitectures()) cases.push_back({a.spec, {{0, 1}, {0, 2}, {1, 2}}});
  return cases;
}

// At fp32 every tensor takes 4 bytes an element, so the device weights of a shard are
// ShardParams * 4 bytes (the norms and biases are fp32 in every dtype; fp16 and bf16
// store the matrices in 2 bytes). Needs no GPU.
TEST(CudaArchitecturesArgs, DeviceWeightBytesCountEveryTensorOnce) {
  for (const DummyCase& c : DummyCases()) {
    for (const ShardInfo& shard : c.shards) {
      SCOPED_TRACE(c.spec.ToString() + " rank " + std::to_string(shard.rank) + "/" + std::to_string(shard.world));
      const int64_t fp32 = DeviceWeightBytes(c.spec, shard, DType::kF32);
      EXPECT_EQ(fp32, ShardParams(c.spec, shard.world) * 4);
      const int64_t fp16 = DeviceWeightBytes(c.spec, shard, DType::kF16);
      EXPECT_EQ(fp16, DeviceWeightBytes(c.spec, shard, DType::kBF16));
      EXPECT_LT(fp16, fp32);
      EXPECT_GT(fp16, fp32 / 2);  // the fp32 vectors
    }
  }
}

TEST(CudaArchitectures, DeviceDummyShardsEqualShardWeightsOfTheFullModel) {
  FLOVER_REQUIRE_GPU();
  Result<cuda::Stream> stream = cuda::Stream::Create();
  ASSERT_TRUE(stream.ok());
  for (const DummyCase& c : DummyCases()) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (const ShardInfo& shard : c.shards) {
        const std::string what = c.spec.ToString() + " " + DTypeName(dtype) + " rank " + std::to_string(shard.rank) +
                                 "/" + std::to_string(shard.world);
        Result<DeviceWeights> generated = GenerateDummyWeights(c.spec, 5, shard, dtype, stream->get());
        ASSERT_TRUE(generated.ok()) << what << ": " << generated.status().ToString();
        Result<ModelWeights> host = ShardWeights(HostDummy(c.spec, 5), shard.rank, shard.world);
        ASSERT_TRUE(host.ok()) << what << ": " << host.status().ToString();
        Result<DeviceWeights> uploaded = UploadWeights(*host, shard, dtype, stream->get());
        ASSERT_TRUE(uploaded.ok()) << what << ": " << uploaded.status().ToString();
        ExpectSameWeights(*generated, *uploaded, what);
      }
    }
  }
}

// ---------------------------------------------------------------------------------
// Against the CPU Decoder.

class CudaArchitecture : public ::testing::TestWithParam<Architecture> {
 protected:
  ModelWeights Weights() const { return ArchitectureWeights(GetParam().spec, kWeightSeed); }
};

std::unique_ptr<CpuBackend> MakeCpu(ModelWeights weights) {
  Result<std::unique_ptr<CpuBackend>> cpu =
      CpuBackend::Create(std::move(weights), {}, nullptr, KvCacheConfig{kBlockSize, int64_t{1} << 30, kPoolBlocks});
  EXPECT_TRUE(cpu.ok()) << cpu.status().ToString();
  return cpu.ok() ? std::move(*cpu) : nullptr;
}

std::unique_ptr<CudaBackend> MakeCuda(ModelWeights weights, const CudaBackendConfig& config) {
  auto backend = CreateCudaBackend(std::move(weights), {}, nullptr, config);
  EXPECT_TRUE(backend.ok()) << StatusOf(backend).ToString();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// One fused prefill of three prompts (each wants logits) over the small vocabulary.
struct FirstStep {
  std::vector<std::vector<int>> prompts = {
      {1, 30, 20, 4}, {1}, {1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}};
  std::vector<std::vector<int>> tables = {{3}, {9}, {4, 6}};

  std::vector<StepEntry> Entries() const {
    std::vector<StepEntry> entries;
    for (size_t i = 0; i < prompts.size(); ++i)
      entries.push_back(StepEntry{prompts[i].data(), static_cast<int>(prompts[i].size()), 0, tables[i].data(), true});
    return entries;
  }
};

// The CPU Decoder's logits of FirstStep, [3, vocab].
std::vector<float> CpuFirstStepLogits(ModelWeights weights) {
  const int vocab = weights.spec.vocab_size;
  std::unique_ptr<CpuBackend> cpu = MakeCpu(std::move(weights));
  if (cpu == nullptr) return {};
  const FirstStep step;
  std::vector<float> logits(step.prompts.size() * vocab);
  const Status s = cpu->decoder().Forward(step.Entries(), cpu->kv(), logits.data());
  EXPECT_TRUE(s.ok()) << s.ToString();
  return logits;
}

// Runs FirstStep on `backend` (greedy rows); returns its logits and sets *tokens.
std::vector<float> CudaFirstStepLogits(CudaBackend& backend, std::vector<int>* tokens) {
  const FirstStep step;
  const SamplingParams greedy;
  const std::vector<SampleRow> rows(step.prompts.size(), SampleRow{&greedy, {}, 0});
  tokens->assign(step.prompts.size(), -1);
  std::vector<TokenLogprobs> logprobs(step.prompts.size());
  const Status s = backend.Step(step.Entries(), false, rows, *tokens, logprobs);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::vector<float> logits;
  EXPECT_TRUE(backend.CopyLastLogits(&logits).ok());
  return logits;
}

// The bounds of the stories260K comparison (backend_test.cc), looser at fp16/bf16: these
// shapes' random norm weights scale the rounding of the storage dtype further.
double FirstStepBound(DType dtype) { return dtype == DType::kF32 ? 1e-5 : dtype == DType::kF16 ? 1e-2 : 8e-2; }

// fp32: the greedy token of each row is the argmax (lowest id among equal maxima) of the
// CPU's logits row.
void ExpectArgmaxOf(const std::vector<float>& want, int vocab, const std::vector<int>& tokens) {
  for (size_t j = 0; j < tokens.size(); ++j) {
    const auto row = want.begin() + static_cast<long>(j * vocab);
    EXPECT_EQ(tokens[j], static_cast<int>(std::max_element(row, row + vocab) - row)) << "row " << j;
  }
}

TEST_P(CudaArchitecture, FirstStepLogitsMatchTheCpuDecoder) {
  FLOVER_REQUIRE_GPU();
  const std::vector<float> want = CpuFirstStepLogits(Weights());
  ASSERT_FALSE(want.empty());
  const int vocab = GetParam().spec.vocab_size;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    std::unique_ptr<CudaBackend> backend = MakeCuda(Weights(), SmallConfig(dtype));
    ASSERT_NE(backend, nullptr);
    std::vector<int> tokens;
    const std::vector<float> got = CudaFirstStepLogits(*backend, &tokens);
    ASSERT_EQ(got.size(), want.size());
    const double err = NormalisedError(got, want);
    std::cout << "[ measure  ] " << GetParam().name << " first-step logits " << DTypeName(dtype)
              << ": normalised error " << err << "\n";
    EXPECT_LT(err, FirstStepBound(dtype));
    if (dtype == DType::kF32) ExpectArgmaxOf(want, vocab, tokens);
  }
}

// Five greedy requests with prompts of 1 to 20 tokens over the small vocabulary (every
// context fits the shapes' 64 positions), joining at steps 0 to 5, each generating
// `max_tokens` (ignore_eos: every step's composition is the same on every backend).
std::vector<Request> SmallRequests(const ModelSpec& spec, int max_tokens) {
  const int lengths[] = {1, 3, 9, 14, 20};
  const int joins[] = {0, 0, 1, 3, 5};
  std::vector<Request> requests;
  for (int i = 0; i < 5; ++i) {
    Request r{static_cast<uint64_t>(200 + i), joins[i], {}};
    for (int t = 0; t < lengths[i]; ++t) r.params.prompt.push_back((1 + t * 7 + i * 11) % spec.vocab_size);
    r.params.stop.max_tokens = max_tokens;
    r.params.stop.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  return requests;
}

constexpr int kGeneratedTokens = 32;
constexpr int kChunk = 8;  // prefill chunks of 8, fused with other requests' decodes

// Every request's tokens are `want`'s, reporting where one diverges.
void ExpectSameTokens(const Outcome& got, const Outcome& want, const std::vector<Request>& requests) {
  for (const Request& r : requests) {
    const std::vector<int>& g = got.tokens.count(r.id) ? got.tokens.at(r.id) : std::vector<int>{};
    const std::vector<int>& w = want.tokens.count(r.id) ? want.tokens.at(r.id) : std::vector<int>{};
    EXPECT_EQ(w.size(), static_cast<size_t>(kGeneratedTokens)) << "request " << r.id;
    EXPECT_EQ(g, w) << "request " << r.id << " diverges at token " << CommonPrefix(g, w);
  }
}

// Greedy through the Executor on the CPU backend and the CUDA one of `config`.
void ExpectGreedyTokensOfTheCpu(const ModelWeights& weights, const CudaBackendConfig& config) {
  const std::vector<Request> requests = SmallRequests(weights.spec, kGeneratedTokens);
  std::unique_ptr<CpuBackend> cpu = MakeCpu(weights);
  ASSERT_NE(cpu, nullptr);
  Result<Outcome> want = Drive(*cpu, requests, kChunk, false);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  std::unique_ptr<CudaBackend> cuda = MakeCuda(weights, config);
  ASSERT_NE(cuda, nullptr);
  Result<Outcome> got = Drive(*cuda, requests, kChunk, false, cuda.get());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->steps, want->steps);
  if (config.cuda_graphs) {
    EXPECT_GT(cuda->decode_graphs(), 0);
  }
  ExpectSameTokens(*got, *want, requests);
}

TEST_P(CudaArchitecture, GreedyFp32EqualsTheCpuEngine) {
  FLOVER_REQUIRE_GPU();
  ExpectGreedyTokensOfTheCpu(Weights(), SmallConfig(DType::kF32));
}

TEST_P(CudaArchitecture, FastPathGreedyFp32EqualsTheCpuEngine) {
  FLOVER_REQUIRE_GPU();
  ExpectGreedyTokensOfTheCpu(Weights(), FastConfig(DType::kF32));
}

// The fast path at fp16 (decode graphs and Gemv) gives the tokens of the plain fp16
// path: the first token of every request (decided by the prompt alone) and, as Gemv
// sums in another order than cuBLAS, a common prefix of at least half on average.
TEST_P(CudaArchitecture, FastPathFp16AgreesWithThePlainPath) {
  FLOVER_REQUIRE_GPU();
  const ModelWeights weights = Weights();
  const std::vector<Request> requests = SmallRequests(weights.spec, kGeneratedTokens);
  std::unique_ptr<CudaBackend> plain = MakeCuda(weights, SmallConfig(DType::kF16));
  std::unique_ptr<CudaBackend> fast = MakeCuda(weights, FastConfig(DType::kF16));
  ASSERT_TRUE(plain != nullptr && fast != nullptr);
  Result<Outcome> want = Drive(*plain, requests, kChunk, false);
  Result<Outcome> got = Drive(*fast, requests, kChunk, false);
  ASSERT_TRUE(want.ok() && got.ok()) << StatusOf(want).ToString() << StatusOf(got).ToString();
  EXPECT_GT(fast->decode_graphs(), 0);
  double prefix_sum = 0;
  for (const Request& r : requests) {
    const std::vector<int>& g = got->tokens[r.id];
    const std::vector<int>& w = want->tokens[r.id];
    ASSERT_EQ(g.size(), static_cast<size_t>(kGeneratedTokens)) << r.id;
    ASSERT_EQ(w.size(), static_cast<size_t>(kGeneratedTokens)) << r.id;
    EXPECT_EQ(g[0], w[0]) << "request " << r.id << ": first token differs";
    prefix_sum += static_cast<double>(CommonPrefix(g, w)) / kGeneratedTokens;
  }
  EXPECT_GE(prefix_sum / requests.size(), 0.5);
}

// ---------------------------------------------------------------------------------
// Tensor parallel 2 over NCCL: one rank per GPU, one thread per rank (NCCL's creation
// is collective), each a CudaBackend of the full weights sharded for its rank.

struct RankResult {
  std::vector<float> first_logits;
  std::vector<int> first_tokens;
  Outcome greedy;
  Status status;
};

void RunRank(int rank, const ModelWeights& weights, InMemoryKvStore* store, const std::string& group,
             RankResult* out) {
  CudaBackendConfig config = SmallConfig(DType::kF32);
  config.device = rank;
  auto make_comm = [rank, store, group](cudaStream_t stream) {
    return NcclCommunicator::Create(rank, 2, rank, *store, group, stream);
  };
  auto backend = CreateCudaBackend(weights, ShardInfo{rank, 2}, make_comm, config);
  if (!backend.ok()) {
    out->status = backend.status();
    return;
  }
  out->first_logits = CudaFirstStepLogits(**backend, &out->first_tokens);
  Result<Outcome> greedy = Drive(**backend, SmallRequests(weights.spec, kGeneratedTokens), kChunk, false);
  if (!greedy.ok()) {
    out->status = greedy.status();
    return;
  }
  out->greedy = std::move(*greedy);
}

TEST_P(CudaArchitecture, TensorParallel2OverNcclEqualsTheCpuEngine) {
  FLOVER_REQUIRE_GPU();
  if (cuda::DeviceCount() < 2) GTEST_SKIP() << "tensor parallelism over NCCL needs two GPUs (one rank each)";
  const ModelWeights weights = Weights();
  const int vocab = weights.spec.vocab_size;
  const std::vector<float> want_logits = CpuFirstStepLogits(weights);
  ASSERT_FALSE(want_logits.empty());
  std::unique_ptr<CpuBackend> cpu = MakeCpu(weights);
  ASSERT_NE(cpu, nullptr);
  const std::vector<Request> requests = SmallRequests(weights.spec, kGeneratedTokens);
  Result<Outcome> want = Drive(*cpu, requests, kChunk, false);
  ASSERT_TRUE(want.ok()) << want.status().ToString();

  static std::atomic<int> groups{0};
  const std::string group = "cuda-architectures-" + GetParam().name + "-" + std::to_string(groups++);
  InMemoryKvStore store;
  RankResult results[2];
  std::thread ranks[2];
  for (int r = 0; r < 2; ++r) ranks[r] = std::thread(RunRank, r, std::cref(weights), &store, group, &results[r]);
  for (std::thread& t : ranks) t.join();
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_TRUE(results[r].status.ok()) << results[r].status.ToString();
    ASSERT_EQ(results[r].first_logits.size(), want_logits.size());
    EXPECT_LT(NormalisedError(results[r].first_logits, want_logits), FirstStepBound(DType::kF32));
    ExpectArgmaxOf(want_logits, vocab, results[r].first_tokens);
    ExpectSameTokens(results[r].greedy, *want, requests);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaArchitecture, ::testing::ValuesIn(SmallArchitectures()),
                         [](const ::testing::TestParamInfo<Architecture>& info) { return info.param.name; });

}  // namespace
}  // namespace flover
