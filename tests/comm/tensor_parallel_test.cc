// Tensor-parallel invariance: a model split over T ranks (threads of this process, each
// with its own shard, KV cache and GlooCommunicator over loopback) computes the same
// logits as the whole model on one rank, up to float rounding, and the same greedy
// tokens. Every rank ends each step with bit-identical logits. The engines of the ranks
// are made as the workers make theirs: CreateBackend with a BackendGroup.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "tests/comm/tp_group.h"
#include "tests/comm/tp_models.h"
#include "tests/engine/architectures.h"
#include "tests/engine/decoder_runs.h"
#include "tests/test_paths.h"
#include "worker/backend.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/decoder.h"
#include "worker/engine/engine.h"
#include "worker/engine/executor.h"
#include "worker/model/model_loader.h"
#include "worker/model/shard.h"

namespace flover {
namespace {

using testing::Argmax;
using testing::NormalisedError;
using testing::RunDecoder;
using testing::RunGroup;

ModelWeights LoadStories() {
  Result<LoadedModel> m = LoadModel(testing::Stories260kBin());
  EXPECT_TRUE(m.ok()) << "stories260K is needed (FLOVER_MODELS_DIR=" << testing::ModelsDir()
                      << "): " << m.status().ToString();
  if (!m.ok()) return {};
  return std::move(m->weights);
}

// Runs the sequences on one rank (extending them greedily), then on `world` ranks fed
// the same tokens; checks every step's logits against one rank and across ranks.
void ExpectSameLogits(const ModelWeights& full, int world, std::vector<std::vector<int>> prompts, int n_decode,
                      double tolerance = 1e-5) {
  std::vector<int> n_prompt;
  for (const auto& p : prompts) n_prompt.push_back(static_cast<int>(p.size()));
  Decoder single(full);
  std::vector<std::vector<int>> seqs = prompts;
  const std::vector<std::vector<float>> want = RunDecoder(single, seqs, n_prompt, n_decode, /*extend=*/true);
  ASSERT_EQ(want.size(), static_cast<size_t>(n_decode + 1));

  std::vector<std::vector<std::vector<float>>> got(world);
  std::vector<std::vector<std::vector<int>>> argmax(world);
  RunGroup(world, [&](int rank, HostCommunicator& comm) {
    Result<ModelWeights> shard = ShardWeights(full, rank, world);
    ASSERT_TRUE(shard.ok()) << shard.status().ToString();
    Decoder decoder(std::move(shard).value(), ShardInfo{rank, world}, &comm);
    EXPECT_EQ(decoder.local().n_heads, full.spec.n_heads / world);
    std::vector<std::vector<int>> fixed = seqs;
    got[rank] = RunDecoder(decoder, fixed, n_prompt, n_decode, /*extend=*/false, &argmax[rank]);
  });
  for (int rank = 0; rank < world; ++rank) {
    ASSERT_EQ(got[rank].size(), want.size()) << "rank " << rank;
    for (size_t step = 0; step < want.size(); ++step) {
      EXPECT_LT(NormalisedError(got[rank][step], want[step]), tolerance) << "step " << step << " rank " << rank;
      EXPECT_EQ(std::memcmp(got[rank][step].data(), got[0][step].data(), want[step].size() * sizeof(float)), 0)
          << "ranks disagree at step " << step << " rank " << rank;
      // The distributed argmax equals the argmax of the gathered logits.
      ASSERT_EQ(argmax[rank].size(), want.size());
      const int vocab = full.spec.vocab_size;
      for (size_t s = 0; s < prompts.size(); ++s)
        EXPECT_EQ(argmax[rank][step][s], Argmax(&got[rank][step][s * vocab], vocab))
            << "step " << step << " sequence " << s << " rank " << rank;
    }
  }
}

TEST(TensorParallelDecoderTest, SmallModelSharedClassifierTp2) {
  ExpectSameLogits(testing::RandomWeights(testing::SmallTpSpec(true), 11), 2, {{1, 5, 7, 3}, {2, 9}}, 12);
}

TEST(TensorParallelDecoderTest, SmallModelSeparateClassifierTp4) {
  ExpectSameLogits(testing::RandomWeights(testing::SmallTpSpec(false), 12), 4, {{4, 4, 10}, {0}, {6, 8, 1, 2, 3}}, 12);
}

// Classifier rows duplicated across the ranks' vocabulary slices make exact ties between
// ranks: the distributed argmax must keep the lowest id, as the full-row argmax does.
TEST(TensorParallelDecoderTest, DistributedArgmaxBreaksTiesTowardsTheLowestId) {
  ModelWeights w = testing::RandomWeights(testing::SmallTpSpec(false), 13);
  const int dim = w.spec.dim, vocab = w.spec.vocab_size;  // 11 over 2 ranks: slices of 6 and 5
  for (int v = 6; v < vocab; ++v)  // rows 6..10 (rank 1) = rows 0..4 (rank 0)
    std::copy_n(w.classifier.f32().begin() + (v - 6) * dim, dim, w.classifier.f32().begin() + v * dim);
  std::copy_n(w.classifier.f32().begin(), dim, w.classifier.f32().begin() + 5 * dim);  // row 5 = row 0
  std::vector<int> prompt = {3, 1, 4, 1, 5};
  std::vector<std::vector<int>> tokens(2);
  RunGroup(2, [&](int rank, HostCommunicator& comm) {
    Result<ModelWeights> shard = ShardWeights(w, rank, 2);
    ASSERT_TRUE(shard.ok()) << shard.status().ToString();
    Decoder decoder(std::move(shard).value(), ShardInfo{rank, 2}, &comm);
    std::vector<std::vector<int>> seqs = {prompt};
    std::vector<std::vector<int>> argmax;
    const std::vector<std::vector<float>> logits = RunDecoder(decoder, seqs, {5}, 8, /*extend=*/true, &argmax);
    for (size_t step = 0; step < logits.size(); ++step) {
      const int best = Argmax(logits[step].data(), vocab);
      ASSERT_LT(best, 5) << "the maximum appears in both slices; the lower id wins";
      EXPECT_EQ(logits[step][best], logits[step][best + 6]) << "a tie across ranks";
      EXPECT_EQ(argmax[step][0], best) << "step " << step;
    }
  });
}

// Every architecture shape: TP 2 computes one rank's logits (norm biases, q/k/v biases on
// the split heads, b1 on the split MLP rows, b2 once after the all-reduce, the parallel
// residual's one all-reduce, the LM head bias on each rank's vocabulary slice).
class TensorParallelArchitectureTest : public ::testing::TestWithParam<testing::Architecture> {};

TEST_P(TensorParallelArchitectureTest, Tp2LogitsMatchOneRank) {
  ExpectSameLogits(testing::ArchitectureWeights(GetParam().spec, 31), 2, {{1, 5, 7, 3}, {2, 9}, {6, 8, 1, 2, 3, 36}},
                   10);
}

INSTANTIATE_TEST_SUITE_P(EveryShape, TensorParallelArchitectureTest, ::testing::ValuesIn(testing::SmallArchitectures()),
                         [](const ::testing::TestParamInfo<testing::Architecture>& info) { return info.param.name; });

// A large LM head bias on one id decides every greedy token, through the gathered logits
// and through the distributed argmax, whichever rank's slice holds the id.
TEST(TensorParallelDecoderTest, ClassifierBiasDecidesTheDistributedArgmax) {
  const ModelWeights w = testing::ArchitectureWeights(testing::SmallArchitecture("gptj"), 32);
  const int vocab = w.spec.vocab_size;  // 37 over 2 ranks: ids 0..18 and 19..36
  for (int favourite : {3, 18, 19, vocab - 1}) {
    ModelWeights biased = w;
    biased.classifier_bias.f32()[favourite] += 1000.0f;
    RunGroup(2, [&](int rank, HostCommunicator& comm) {
      Result<ModelWeights> shard = ShardWeights(biased, rank, 2);
      ASSERT_TRUE(shard.ok()) << shard.status().ToString();
      Decoder decoder(std::move(shard).value(), ShardInfo{rank, 2}, &comm);
      std::vector<std::vector<int>> seqs = {{1, 2, 3}, {4}};
      std::vector<std::vector<int>> argmax;
      const auto logits = RunDecoder(decoder, seqs, {3, 1}, 4, /*extend=*/true, &argmax);
      ASSERT_EQ(argmax.size(), 5u);
      for (size_t step = 0; step < argmax.size(); ++step)
        for (size_t s = 0; s < seqs.size(); ++s) {
          EXPECT_EQ(argmax[step][s], favourite) << "rank " << rank << " step " << step;
          EXPECT_EQ(Argmax(&logits[step][s * vocab], vocab), favourite) << "rank " << rank << " step " << step;
        }
    });
  }
}

TEST(TensorParallelDecoderTest, Stories260kTp2LogitsMatchOneRank) {
  ModelWeights w = LoadStories();
  ASSERT_FALSE(w.layers.empty());
  ExpectSameLogits(w, 2, {{1, 301, 295, 412}, {1, 291, 280, 294, 262, 294, 353, 265, 284, 294, 426},
                          {1, 368, 302, 381, 261, 352, 266, 280, 295}}, 30);
}

TEST(TensorParallelDecoderTest, Stories260kTp4LogitsMatchOneRank) {
  ModelWeights w = LoadStories();
  ASSERT_FALSE(w.layers.empty());
  ExpectSameLogits(w, 4, {{1, 301, 295, 412}, {1, 368, 302, 381, 261, 352, 266, 280, 295}}, 20);
}

// ---- engine ------------------------------------------------------------------------

std::vector<int> ParseIds(const std::string& s) {
  std::vector<int> ids;
  std::istringstream in(s);
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

// The prompts of the stories260K model's README (run.c -t 0 -n 64).
struct ReadmeCase {
  const char* prompt_ids;
  const char* generated_ids;
};
const ReadmeCase kReadme[] = {
    {"1 301 295 412",
     "269 368 302 382 276 337 299 322 265 282 295 433 426 342 397 355 267 337 335 265 315 267 422 419 269 352 379 261 "
     "420 277 264 265 282 295 433 426 342 394 261 370 268 414 444 269 261 262 423 388 268 414 444 426 342 391 266 267 "
     "337 335 265 268 414"},
    {"1 291 280 294 262 294 353 265 284 294 426",
     "291 280 294 286 399 393 426 291 280 294 286 399 393 426 291 280 294 286 399 393 426 291 280 294 269 265 280 294 "
     "337 266 267 428 316 386 426 342 381 261 370 268 414 444 426 342 397 355 267 337 267 428 316 386 426 13"},
    {"1 368 302 381 261 352 266 280 295",
     "395 410 462 362 422 426 410 462 362 422 401 396 267 337 335 311 267 422 419 426 385 328 432 358 394 261 370 432 "
     "352 266 280 295 426 338 391 266 267 337 335 312 432 398 358 279 292 297 309 409 416 327 263 415 294 267 400 426"},
};

struct Outcome {
  std::vector<int> tokens;
  FinishReason finish = FinishReason::kNone;
  bool operator==(const Outcome&) const = default;
};

// Adds every request, then steps until the engine is idle; all ranks do the same.
std::vector<Outcome> RunEngine(Engine& engine, const std::vector<RequestParams>& requests) {
  std::map<uint64_t, size_t> index;
  for (size_t i = 0; i < requests.size(); ++i) {
    Result<uint64_t> id = engine.Add(requests[i]);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (id.ok()) index[*id] = i;
  }
  std::vector<Outcome> out(requests.size());
  std::vector<EngineEvent> events;
  for (int step = 0; engine.has_work() && step < 10000; ++step) {
    events.clear();
    const Status s = engine.Step(&events);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) break;
    for (const EngineEvent& e : events) {
      Outcome& o = out[index.at(e.request_id)];
      if (e.token >= 0) o.tokens.push_back(e.token);
      if (e.finish != FinishReason::kNone) o.finish = e.finish;
    }
  }
  return out;
}

std::vector<RequestParams> ReadmeRequests(const SamplingParams& sampling = {}) {
  std::vector<RequestParams> requests;
  uint64_t seed = 7;
  for (const ReadmeCase& c : kReadme) {
    RequestParams r;
    r.prompt = ParseIds(c.prompt_ids);
    r.stop.max_tokens = 64 - static_cast<int>(r.prompt.size()) + 1;  // run.c -n 64 counts positions
    r.sampling = sampling;
    r.sampling.seed = seed++;
    requests.push_back(r);
  }
  return requests;
}

// Every rank loads its shard of stories260K and joins the group over `transport`.
std::vector<std::vector<Outcome>> RunTensorParallelEngines(int world, const EngineConfig& config,
                                                           const std::vector<RequestParams>& requests,
                                                           CpuTransport transport = CpuTransport::kTcp) {
  std::vector<std::vector<Outcome>> out(world);
  testing::RunRanks(world, [&](int rank, KvStore& store, const std::string& prefix) {
    BackendConfig backend;
    backend.model = testing::Stories260kBin();
    backend.kv_max_sequences = config.max_running;
    BackendGroup group{ShardInfo{rank, world}, &store, prefix, {.transport = transport}};
    Result<CreatedBackend> created = CreateBackend(backend, group);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    EXPECT_NE(created->description.find(transport == CpuTransport::kShm ? "over shared memory" : "over TCP"), std::string::npos)
        << created->description;
    Result<std::unique_ptr<Engine>> engine = Engine::Create(std::move(created->backend), config);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    out[rank] = RunEngine(**engine, requests);
  });
  return out;
}

void ExpectReadmeTokens(int world, const EngineConfig& config, CpuTransport transport = CpuTransport::kTcp) {
  const std::vector<RequestParams> requests = ReadmeRequests();
  std::vector<std::vector<Outcome>> out = RunTensorParallelEngines(world, config, requests, transport);
  for (int rank = 0; rank < world; ++rank) {
    ASSERT_EQ(out[rank].size(), requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_EQ(out[rank][i].tokens, ParseIds(kReadme[i].generated_ids)) << "prompt " << i << " rank " << rank;
      EXPECT_EQ(out[rank][i].finish, FinishReason::kLength);
    }
  }
}

TEST(TensorParallelEngineTest, Tp2GreedyMatchesRunCForReadmePrompts) { ExpectReadmeTokens(2, {}); }

TEST(TensorParallelEngineTest, Tp4GreedyMatchesRunCForReadmePrompts) { ExpectReadmeTokens(4, {}); }

TEST(TensorParallelEngineTest, Tp2OverSharedMemoryMatchesRunC) { ExpectReadmeTokens(2, {}, CpuTransport::kShm); }

// The policies run the same scheduler with other shapes of steps (one request at a
// time; one pass per entry): the ranks stay in lockstep and the tokens stay run.c's.
TEST(TensorParallelEngineTest, Tp2SequentialAndInstancesMatchRunC) {
  for (SchedulerPolicy policy : {SchedulerPolicy::kSequential, SchedulerPolicy::kInstances}) {
    SCOPED_TRACE(SchedulerPolicyName(policy));
    EngineConfig config;
    config.policy = policy;
    config.pipeline_depth = 2;
    ExpectReadmeTokens(2, config);
  }
}

// A small step budget splits the prompts into prefill chunks fused with decodes.
TEST(TensorParallelEngineTest, Tp2GreedyMatchesWithChunkedPrefill) {
  EngineConfig config;
  config.max_step_tokens = 5;
  ExpectReadmeTokens(2, config);
}

// Seeded sampling: every rank samples from the same logits with the request's RNG, so
// the ranks agree token for token.
TEST(TensorParallelEngineTest, RanksAgreeOnSeededSamples) {
  SamplingParams sampling;
  sampling.temperature = 0.9f;
  sampling.top_p = 0.9f;
  const std::vector<RequestParams> requests = ReadmeRequests(sampling);
  std::vector<std::vector<Outcome>> out = RunTensorParallelEngines(2, {}, requests);
  ASSERT_EQ(out[0].size(), requests.size());
  EXPECT_EQ(out[0], out[1]);
  for (const Outcome& o : out[0]) EXPECT_TRUE(o.finish == FinishReason::kLength || o.finish == FinishReason::kStop);
}

// ---- executor: separate passes (policy instances) -----------------------------------

// Counts the all-reduces of the passes that run through it (a fixed number per pass)
// into *n_all_reduce, which outlives it.
class CountingCommunicator final : public HostCommunicator {
 public:
  CountingCommunicator(HostCommunicator* inner, int* n_all_reduce) : n_all_reduce(*n_all_reduce), inner_(inner) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  Status AllReduceSum(float* data, size_t n) override {
    ++n_all_reduce;
    return inner_->AllReduceSum(data, n);
  }
  Status AllGather(const float* in, size_t n, float* out) override { return inner_->AllGather(in, n, out); }
  Status Barrier() override { return inner_->Barrier(); }

  int& n_all_reduce;

 private:
  HostCommunicator* inner_;
};

// One pass over a parallel-residual model (GPT-J) makes one all-reduce per layer: the
// attention's and the MLP's partial outputs are summed together. Sequential blocks make two.
TEST(TensorParallelDecoderTest, ParallelResidualSharesOneAllReducePerLayer) {
  for (const char* name : {"gptj", "llama"}) {
    const ModelWeights w = testing::ArchitectureWeights(testing::SmallArchitecture(name), 33);
    const int per_layer = w.spec.parallel_residual ? 1 : 2;
    std::vector<int> n_all_reduce(2, 0);
    RunGroup(2, [&](int rank, HostCommunicator& comm) {
      Result<ModelWeights> shard = ShardWeights(w, rank, 2);
      ASSERT_TRUE(shard.ok()) << shard.status().ToString();
      CountingCommunicator counting(&comm, &n_all_reduce[rank]);
      Decoder decoder(std::move(shard).value(), ShardInfo{rank, 2}, &counting);
      std::vector<std::vector<int>> seqs = {{1, 2, 3}, {4}};
      RunDecoder(decoder, seqs, {3, 1}, /*n_decode=*/0, /*extend=*/false);
    });
    for (int rank = 0; rank < 2; ++rank)
      EXPECT_EQ(n_all_reduce[rank], per_layer * w.spec.n_layers) << name << " rank " << rank;
  }
}

struct ExecutorRun {
  std::vector<Outcome> out;
  int n_steps = 0;
  int n_entries = 0;  // summed over steps
  int n_all_reduce = 0;
};

// Drives an Executor as a worker would: request i joins at step i with its whole prompt
// (and every block it will need), then decodes one token per step until it finishes.
// The backend runs rank `rank`'s shard of `full` over `comm`, counting its all-reduces.
ExecutorRun RunExecutor(const ModelWeights& full, int rank, HostCommunicator& comm,
                        const std::vector<RequestParams>& requests, bool separate_passes) {
  const ModelSpec& spec = full.spec;
  const int block_size = 16, blocks_per_seq = (spec.max_seq_len + block_size - 1) / block_size;
  const int n = static_cast<int>(requests.size());
  Result<ModelWeights> shard = ShardWeights(full, rank, comm.world_size());
  EXPECT_TRUE(shard.ok()) << shard.status().ToString();
  if (!shard.ok()) return {};
  int n_all_reduce = 0;
  Result<std::unique_ptr<CpuBackend>> backend =
      CpuBackend::Create(std::move(shard).value(), ShardInfo{rank, comm.world_size()},
                         std::make_unique<CountingCommunicator>(&comm, &n_all_reduce),
                         KvCacheConfig{block_size, int64_t{1} << 40, blocks_per_seq * n});
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  if (!backend.ok()) return {};
  Executor executor(backend->get());
  std::vector<std::vector<int>> blocks(n);
  for (int i = 0; i < n; ++i)
    for (int b = 0; b < blocks_per_seq; ++b) blocks[i].push_back(i * blocks_per_seq + b);

  ExecutorRun run;
  run.out.resize(n);
  std::vector<ExecOutput> outputs;
  for (int step = 0; step < 1000; ++step) {
    std::vector<ExecEntry> entries;
    for (int i = 0; i < n; ++i) {
      const uint64_t id = static_cast<uint64_t>(i + 1);
      if (i == step) {
        EXPECT_TRUE(executor.Join(id, requests[i]).ok());
        entries.push_back(ExecEntry{id, 0, static_cast<int>(requests[i].prompt.size()), blocks[i]});
      } else if (const Sequence* seq = executor.Find(id); seq && seq->finish == FinishReason::kNone) {
        entries.push_back(ExecEntry{id, seq->n_computed, 1, {}});
      }
    }
    if (entries.empty()) break;
    outputs.clear();
    const Status status = executor.Run(entries, &outputs, separate_passes);
    EXPECT_TRUE(status.ok()) << status.ToString();
    if (!status.ok()) break;
    ++run.n_steps;
    run.n_entries += static_cast<int>(entries.size());
    for (const ExecOutput& o : outputs) {
      Outcome& outcome = run.out[o.request_id - 1];
      if (o.token >= 0) outcome.tokens.push_back(o.token);
      outcome.finish = o.finish;
    }
  }
  run.n_all_reduce = n_all_reduce;
  return run;
}

// StepPlan.separate_passes: the same entries run one pass each give the tokens of the
// fused pass on every rank, and the collectives show one pass per entry.
TEST(TensorParallelExecutorTest, SeparatePassesGiveTheFusedTokensWithOnePassPerEntry) {
  ModelWeights full = LoadStories();
  ASSERT_FALSE(full.layers.empty());
  const std::vector<RequestParams> requests = ReadmeRequests();
  std::vector<ExecutorRun> fused(2), separate(2);
  RunGroup(2, [&](int rank, HostCommunicator& comm) {
    fused[rank] = RunExecutor(full, rank, comm, requests, /*separate_passes=*/false);
    separate[rank] = RunExecutor(full, rank, comm, requests, /*separate_passes=*/true);
  });
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    ASSERT_EQ(fused[rank].out.size(), requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_EQ(fused[rank].out[i].tokens, ParseIds(kReadme[i].generated_ids)) << "prompt " << i;
      EXPECT_EQ(fused[rank].out[i].finish, FinishReason::kLength);
    }
    EXPECT_EQ(separate[rank].out, fused[rank].out);
    EXPECT_EQ(separate[rank].n_steps, fused[rank].n_steps);
    EXPECT_EQ(separate[rank].n_entries, fused[rank].n_entries);
    ASSERT_GT(fused[rank].n_steps, 0);
    const int per_pass = fused[rank].n_all_reduce / fused[rank].n_steps;
    EXPECT_EQ(per_pass, 2 * full.spec.n_layers);  // after attention and after the MLP
    EXPECT_EQ(fused[rank].n_all_reduce, per_pass * fused[rank].n_steps);
    EXPECT_EQ(separate[rank].n_all_reduce, per_pass * separate[rank].n_entries);
    EXPECT_GT(separate[rank].n_entries, separate[rank].n_steps) << "some steps must hold several entries";
  }
}

TEST(TensorParallelBackendTest, CreateRejectsInconsistentShardsAndCommunicators) {
  const ModelWeights full = testing::RandomWeights(testing::SmallTpSpec(true), 5);
  Result<ModelWeights> half = ShardWeights(full, 1, 2);
  ASSERT_TRUE(half.ok());
  const KvCacheConfig kv{16, 1 << 20, 0};
  auto local = [] { return std::make_unique<LocalCommunicator>(); };
  auto code = [](const auto& r) { return r.status().code(); };
  // A shard without a communicator.
  EXPECT_EQ(code(CpuBackend::Create(*half, ShardInfo{1, 2}, nullptr, kv)), StatusCode::kInvalidArgument);
  // A communicator of another rank.
  EXPECT_EQ(code(CpuBackend::Create(*half, ShardInfo{1, 2}, local(), kv)), StatusCode::kInvalidArgument);
  // The whole model declared as a shard, and a shard declared as the whole model.
  EXPECT_EQ(code(CpuBackend::Create(full, ShardInfo{0, 2}, local(), kv)), StatusCode::kCorruption);
  EXPECT_EQ(code(CpuBackend::Create(*half, {}, nullptr, kv)), StatusCode::kCorruption);
  // A size that does not divide the heads.
  EXPECT_EQ(CpuBackend::Create(full, ShardInfo{0, 3}, local(), kv).status().ToString(),
            "InvalidArgument: tensor parallel size 3 does not divide n_heads=8");
  // One rank with a LocalCommunicator is fine.
  EXPECT_TRUE(CpuBackend::Create(full, {}, local(), kv).ok());
}

// CreateBackend's own checks of a group, before anything is loaded.
TEST(TensorParallelBackendTest, CreateBackendRejectsABadGroup) {
  BackendConfig backend;
  backend.model = "dummy:tiny";
  BackendGroup group;
  group.shard = ShardInfo{0, 2};
  Result<CreatedBackend> no_store = CreateBackend(backend, group);
  EXPECT_EQ(no_store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_store.status().message().find("needs a rendezvous store"), std::string::npos)
      << no_store.status().ToString();
  InMemoryKvStore store;
  group.shard = ShardInfo{2, 2};
  group.store = &store;
  group.prefix = "bad";
  Result<CreatedBackend> bad_rank = CreateBackend(backend, group);
  EXPECT_EQ(bad_rank.status().code(), StatusCode::kInvalidArgument) << bad_rank.status().ToString();
}

TEST(TensorParallelKvCacheTest, HoldsTheLocalKvHeads) {
  const ModelSpec spec = testing::SmallTpSpec(true);  // 4 kv heads of 4, 2 layers
  auto whole = KvCache::Create(spec, KvCacheConfig{16, 1 << 20, 0});
  auto half = KvCache::Create(spec, KvCacheConfig{16, 1 << 20, 0}, 2);
  ASSERT_TRUE(whole.ok() && half.ok());
  EXPECT_EQ((*whole)->layer(0).n_kv_heads, 4);
  EXPECT_EQ((*half)->layer(0).n_kv_heads, 2);
  EXPECT_EQ((*half)->bytes_per_block() * 2, (*whole)->bytes_per_block());
  EXPECT_EQ((*half)->n_blocks(), 2 * (*whole)->n_blocks()) << "the budget is per rank";
  EXPECT_EQ(KvCache::Create(spec, KvCacheConfig{16, 1 << 20, 0}, 3).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flover
