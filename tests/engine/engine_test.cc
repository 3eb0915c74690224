// End-to-end tests of the in-process engine (the coordinator's Scheduler over a CPU
// backend from CreateBackend, as `flover run` builds it) on the real stories260K
// checkpoint: token-exact against the reference, batch invariance, chunked prefill,
// preemption, cancellation, stop conditions, admission errors, and the same tokens
// under every scheduling policy and pipeline depth.
#include "worker/engine/engine.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <sstream>

#include "common/tokenizer.h"
#include "tests/engine/decoder_runs.h"
#include "tests/engine/reference_model.h"
#include "tests/test_paths.h"
#include "worker/backend.h"
#include "worker/model/model_loader.h"

namespace flover {
namespace {

ModelWeights LoadStories() {
  Result<LoadedModel> m = LoadModel(testing::Stories260kBin());
  EXPECT_TRUE(m.ok()) << "stories260K is needed (FLOVER_MODELS_DIR=" << testing::ModelsDir()
                      << "): " << m.status().ToString();
  if (!m.ok()) return {};
  return std::move(m->weights);
}

Tokenizer LoadTok() {
  Result<Tokenizer> t = Tokenizer::LoadLlama2c(testing::Tok512Bin());
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

std::vector<int> ParseIds(const std::string& s) {
  std::vector<int> ids;
  std::istringstream in(s);
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

// stories260K on the CPU, with a KV pool of at most max_running full contexts (what
// `flover run` builds), or the pool of `kv_block_size` and `kv_max_blocks` when given;
// K and V in kv_dtype (fp32 when unset).
std::unique_ptr<Engine> MakeEngine(const EngineConfig& config = {}, int kv_block_size = 16, int kv_max_blocks = 0,
                                   std::optional<DType> kv_dtype = std::nullopt) {
  BackendConfig backend;
  backend.model = testing::Stories260kBin();
  backend.kv_block_size = kv_block_size;
  backend.kv_max_blocks = kv_max_blocks;
  backend.kv_max_sequences = config.max_running;
  backend.kv_dtype = kv_dtype;
  Result<CreatedBackend> created = CreateBackend(backend);
  EXPECT_TRUE(created.ok()) << "stories260K is needed (FLOVER_MODELS_DIR=" << testing::ModelsDir()
                            << "): " << created.status().ToString();
  if (!created.ok()) return nullptr;
  Result<std::unique_ptr<Engine>> e = Engine::Create(std::move(created->backend), config);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

struct Outcome {
  std::vector<int> tokens;
  FinishReason finish = FinishReason::kNone;
};

// Submits request i at step i * stagger (all at once when 0) and steps until all finish.
std::vector<Outcome> RunAll(Engine& engine, const std::vector<RequestParams>& requests, int stagger,
                            int* max_fused = nullptr, int* preemptions = nullptr) {
  std::vector<Outcome> out(requests.size());
  std::map<uint64_t, size_t> index;
  size_t admitted = 0, done = 0;
  std::vector<EngineEvent> events;
  for (int step = 0; done < requests.size(); ++step) {
    FLOVER_CHECK(step < 100000) << "engine did not finish";
    while (admitted < requests.size() && (stagger == 0 || step >= static_cast<int>(admitted) * stagger)) {
      Result<uint64_t> id = engine.Add(requests[admitted]);
      FLOVER_CHECK(id.ok()) << id.status().ToString();
      index[*id] = admitted++;
      if (stagger) break;
    }
    events.clear();
    StepStats stats;
    FLOVER_CHECK(engine.Step(&events, &stats).ok());
    if (max_fused) *max_fused = std::max(*max_fused, stats.n_entries);
    if (preemptions) *preemptions += stats.n_preempted;
    for (const EngineEvent& e : events) {
      Outcome& o = out[index.at(e.request_id)];
      EXPECT_EQ(o.finish, FinishReason::kNone) << "event after finish";
      if (e.token >= 0) o.tokens.push_back(e.token);
      if (e.finish != FinishReason::kNone) {
        o.finish = e.finish;
        ++done;
      }
    }
  }
  return out;
}

// The three prompts of the stories260K model's README: run.c -t 0 -n 64.
struct ReadmeCase {
  const char* prompt;
  const char* prompt_ids;
  const char* generated_ids;
};
const ReadmeCase kReadme[] = {
    {"Sara", "1 301 295 412",
     "269 368 302 382 276 337 299 322 265 282 295 433 426 342 397 355 267 337 335 265 315 267 422 419 269 352 379 261 "
     "420 277 264 265 282 295 433 426 342 394 261 370 268 414 444 269 261 262 423 388 268 414 444 426 342 391 266 267 "
     "337 335 265 268 414"},
    {"The cat sat on the mat.", "1 291 280 294 262 294 353 265 284 294 426",
     "291 280 294 286 399 393 426 291 280 294 286 399 393 426 291 280 294 286 399 393 426 291 280 294 269 265 280 294 "
     "337 266 267 428 316 386 426 342 381 261 370 268 414 444 426 342 397 355 267 337 267 428 316 386 426 13"},
    {"Ben had a red car", "1 368 302 381 261 352 266 280 295",
     "395 410 462 362 422 426 410 462 362 422 401 396 267 337 335 311 267 422 419 426 385 328 432 358 394 261 370 432 "
     "352 266 280 295 426 338 391 266 267 337 335 312 432 398 358 279 292 297 309 409 416 327 263 415 294 267 400 426"},
};

TEST(EngineTest, GreedyMatchesRunCForReadmePrompts) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  Tokenizer tok = LoadTok();
  std::vector<RequestParams> requests;
  for (const ReadmeCase& c : kReadme) {
    RequestParams r;
    r.prompt = tok.Encode(c.prompt);
    ASSERT_EQ(r.prompt, ParseIds(c.prompt_ids)) << c.prompt;
    r.stop.max_tokens = 64 - static_cast<int>(r.prompt.size()) + 1;  // run.c -n 64 counts positions
    requests.push_back(r);
  }
  std::vector<Outcome> out = RunAll(*engine, requests, /*stagger=*/0);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(out[i].tokens, ParseIds(kReadme[i].generated_ids)) << kReadme[i].prompt;
    EXPECT_EQ(out[i].finish, FinishReason::kLength);
  }
}

// Many more prompts, checked against the plain-loop reference forward pass.
const char* kPrompts[] = {
    "Once upon a time",  "Lily",        "The dog ran",          "Tom and Tim went to the park",
    "One day, a little", "She was sad", "The sun was shining.", "Max found a big red ball",
    "The bird",          "Mom said",    "A frog",               "He liked to play with his toys",
    "The little girl",   "Sam had",     "It was a rainy day",   "They",
};

std::vector<RequestParams> StoryRequests(const Tokenizer& tok, int max_tokens, const SamplingParams& sampling = {}) {
  std::vector<RequestParams> requests;
  uint64_t seed = 100;
  for (const char* p : kPrompts) {
    RequestParams r;
    r.prompt = tok.Encode(p);
    r.sampling = sampling;
    r.sampling.seed = seed++;
    r.stop.max_tokens = max_tokens;
    requests.push_back(r);
  }
  return requests;
}

TEST(EngineTest, GreedyMatchesReferenceForwardPass) {
  ModelWeights w = LoadStories();
  ASSERT_FALSE(w.layers.empty());
  Tokenizer tok = LoadTok();
  std::vector<RequestParams> requests = StoryRequests(tok, 200);
  std::vector<std::vector<int>> expected;
  for (const RequestParams& r : requests) {
    testing::ReferenceModel ref(w);
    expected.push_back(ref.Greedy(r.prompt, static_cast<int>(r.prompt.size()) - 1 + 200));
  }
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<Outcome> out = RunAll(*engine, requests, /*stagger=*/2);
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(out[i].tokens, expected[i]) << kPrompts[i];
}

// Each prompt alone vs fused with 15 others arriving at staggered steps, under several
// step budgets (small budgets split prompts into prefill chunks fused with decodes).
void ExpectBatchInvariant(const SamplingParams& sampling, std::optional<DType> kv_dtype = std::nullopt) {
  Tokenizer tok = LoadTok();
  std::vector<RequestParams> requests = StoryRequests(tok, 120, sampling);
  std::vector<std::vector<int>> alone;
  auto engine = MakeEngine({}, 16, 0, kv_dtype);
  ASSERT_NE(engine, nullptr);
  for (const RequestParams& r : requests) alone.push_back(RunAll(*engine, {r}, 0)[0].tokens);
  EXPECT_EQ(engine->n_free_blocks(), engine->n_blocks());

  for (int budget : {512, 7, 3}) {
    EngineConfig config;
    config.max_step_tokens = budget;
    auto fused_engine = MakeEngine(config, 16, 0, kv_dtype);
    ASSERT_NE(fused_engine, nullptr);
    int max_fused = 0;
    std::vector<Outcome> fused = RunAll(*fused_engine, requests, /*stagger=*/3, &max_fused);
    EXPECT_GE(max_fused, budget >= 16 ? 10 : 3) << "requests were not fused";
    for (size_t i = 0; i < requests.size(); ++i)
      EXPECT_EQ(fused[i].tokens, alone[i]) << kPrompts[i] << " budget " << budget;
    EXPECT_EQ(fused_engine->n_free_blocks(), fused_engine->n_blocks()) << "blocks leaked";
  }
}

TEST(EngineTest, GreedyIsBatchInvariant) { ExpectBatchInvariant(SamplingParams{}); }

TEST(EngineTest, GreedyIsBatchInvariantWithASixteenBitKvCache) {
  for (DType kv_dtype : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(kv_dtype));
    ExpectBatchInvariant(SamplingParams{}, kv_dtype);
  }
}

// The KV cache in fp16 or bf16 against fp32: the 16 prompts' 200 greedy tokens each.
// Rounding K and V moves the logits a little (normalised error ~3e-3 for fp16, ~2e-2
// for bf16), so a greedy continuation forks where fp32's best two tokens are nearly tied;
// on this model fp16 keeps 15 of the 16 continuations whole, bf16 10 (the forks: 0.0006
// to 0.021 apart in logits of about 14). Each fork is checked for being such a near tie,
// replayed by the decoder on fp32's tokens: fp32 ranks fp32's token first, the 16-bit
// cache the other one, the two logits less than kNearTie apart.
TEST(EngineTest, SixteenBitKvCacheForksGreedyOnlyAtNearTies) {
  constexpr float kNearTie = 0.05f;
  Tokenizer tok = LoadTok();
  std::vector<RequestParams> requests = StoryRequests(tok, 200);
  std::map<std::string, std::vector<Outcome>> out;
  for (std::optional<DType> kv_dtype : {std::optional<DType>(), std::optional(DType::kF16), std::optional(DType::kBF16)}) {
    auto engine = MakeEngine({}, 16, 0, kv_dtype);
    ASSERT_NE(engine, nullptr);
    out[kv_dtype ? DTypeName(*kv_dtype) : "fp32"] = RunAll(*engine, requests, /*stagger=*/2);
  }
  Decoder decoder(LoadStories());
  for (const auto& [name, kv_dtype] : {std::pair{"fp16", cpu::KvDType::kF16}, std::pair{"bf16", cpu::KvDType::kBF16}}) {
    SCOPED_TRACE(name);
    size_t n_kept = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      const std::vector<int>& want = out["fp32"][i].tokens;
      const std::vector<int>& got = out[name][i].tokens;
      if (got == want) {
        ++n_kept;
        continue;
      }
      size_t fork = 0;
      while (fork < want.size() && fork < got.size() && want[fork] == got[fork]) ++fork;
      ASSERT_LT(fork, want.size()) << kPrompts[i] << ": fp32 stopped where the 16-bit cache went on";
      ASSERT_LT(fork, got.size()) << kPrompts[i] << ": the 16-bit cache stopped where fp32 went on";
      // The prompt and fp32's tokens up to the fork; the logits of each step with either cache.
      std::vector<std::vector<int>> seq = {requests[i].prompt};
      seq[0].insert(seq[0].end(), want.begin(), want.begin() + fork);
      const std::vector<int> n_prompt = {static_cast<int>(requests[i].prompt.size())};
      const int n_steps = static_cast<int>(fork);
      const std::vector<float> l32 =
          testing::RunDecoder(decoder, seq, n_prompt, n_steps, false, nullptr, cpu::KvDType::kF32).at(fork);
      const std::vector<float> l16 = testing::RunDecoder(decoder, seq, n_prompt, n_steps, false, nullptr, kv_dtype).at(fork);
      const int vocab = static_cast<int>(l32.size());
      EXPECT_EQ(testing::Argmax(l32.data(), vocab), want[fork]) << kPrompts[i] << " at token " << fork;
      EXPECT_EQ(testing::Argmax(l16.data(), vocab), got[fork]) << kPrompts[i] << " at token " << fork;
      EXPECT_LT(l32[want[fork]] - l32[got[fork]], kNearTie) << kPrompts[i] << " at token " << fork;
    }
    EXPECT_GE(n_kept, requests.size() / 2);
  }
}

TEST(EngineTest, SeededSamplingIsBatchInvariant) {
  SamplingParams s;
  s.temperature = 0.9f;
  s.top_p = 0.9f;
  s.top_k = 40;
  s.repetition_penalty = 1.1f;
  ExpectBatchInvariant(s);
}

// Tests run single-threaded (ctest runs two at a time on two cores); this one checks
// that the engine's multi-threaded paths (GEMM, attention, SwiGLU, sampling) give the
// same tokens as one thread.
TEST(EngineTest, ThreadCountDoesNotChangeTokens) {
  Tokenizer tok = LoadTok();
  SamplingParams sampled;
  sampled.temperature = 0.8f;
  sampled.top_p = 0.95f;
  std::vector<RequestParams> requests = StoryRequests(tok, 60);
  for (RequestParams& r : StoryRequests(tok, 60, sampled)) requests.push_back(r);
  const int saved = omp_get_max_threads();
  std::vector<std::vector<Outcome>> runs;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    auto engine = MakeEngine();
    ASSERT_NE(engine, nullptr);
    runs.push_back(RunAll(*engine, requests, /*stagger=*/1));
  }
  omp_set_num_threads(saved);
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(runs[0][i].tokens, runs[1][i].tokens) << i;
}

TEST(EngineTest, DifferentSeedsGiveDifferentSamples) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  Tokenizer tok = LoadTok();
  RequestParams a;
  a.prompt = tok.Encode("Once upon a time");
  a.sampling.temperature = 1.0f;
  a.stop.max_tokens = 40;
  a.stop.ignore_eos = true;
  RequestParams b = a;
  b.sampling.seed = 12345;
  std::vector<Outcome> out = RunAll(*engine, {a, b, a}, 0);
  EXPECT_NE(out[0].tokens, out[1].tokens);
  EXPECT_EQ(out[0].tokens, out[2].tokens);
}

TEST(EngineTest, PreemptionRecomputesAndLosesNothing) {
  Tokenizer tok = LoadTok();
  std::vector<RequestParams> requests = StoryRequests(tok, 150);
  for (auto& r : requests) r.stop.ignore_eos = true;
  auto big = MakeEngine();
  ASSERT_NE(big, nullptr);
  std::vector<Outcome> expected = RunAll(*big, requests, 0);

  // 60 blocks of 8: 480 slots for 16 requests of up to ~160 tokens.
  auto engine = MakeEngine({}, /*kv_block_size=*/8, /*kv_max_blocks=*/60);
  ASSERT_NE(engine, nullptr);
  int preemptions = 0;
  std::vector<Outcome> out = RunAll(*engine, requests, 1, nullptr, &preemptions);
  EXPECT_GT(preemptions, 0) << "the pool was meant to run out";
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(out[i].tokens, expected[i].tokens) << kPrompts[i];
    EXPECT_EQ(out[i].tokens.size(), 150u);
  }
  EXPECT_EQ(engine->n_free_blocks(), engine->n_blocks());
}

TEST(EngineTest, CancelFreesBlocksAndReportsOnce) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  Tokenizer tok = LoadTok();
  RequestParams r;
  r.prompt = tok.Encode("Once upon a time");
  r.stop.max_tokens = 100;
  r.stop.ignore_eos = true;
  uint64_t keep = *engine->Add(r);
  uint64_t victim = *engine->Add(r);
  std::vector<EngineEvent> events;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(engine->Step(&events).ok());
  ASSERT_TRUE(engine->Cancel(victim).ok());
  EXPECT_EQ(engine->Cancel(victim).code(), StatusCode::kNotFound);
  events.clear();
  ASSERT_TRUE(engine->Step(&events).ok());
  int cancelled = 0, kept = 0;
  for (const EngineEvent& e : events) {
    if (e.request_id == victim) {
      EXPECT_EQ(e.finish, FinishReason::kCancelled);
      ++cancelled;
    }
    if (e.request_id == keep) ++kept;
  }
  EXPECT_EQ(cancelled, 1);
  EXPECT_EQ(kept, 1);
  EXPECT_EQ(engine->n_running(), 1);
  while (engine->has_work()) ASSERT_TRUE(engine->Step(&events).ok());
  EXPECT_EQ(engine->n_free_blocks(), engine->n_blocks());
}

TEST(EngineTest, StopTokenAndContextLimit) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  Tokenizer tok = LoadTok();
  RequestParams r;
  r.prompt = ParseIds(kReadme[0].prompt_ids);
  r.stop.max_tokens = 61;
  std::vector<int> full = RunAll(*engine, {r}, 0)[0].tokens;
  ASSERT_EQ(full.size(), 61u);
  // Stop at the first occurrence of the 10th generated token, which is not emitted.
  r.stop.stop_token_ids = {full[9]};
  Outcome stopped = RunAll(*engine, {r}, 0)[0];
  const size_t first = std::find(full.begin(), full.end(), full[9]) - full.begin();
  EXPECT_EQ(stopped.finish, FinishReason::kStop);
  EXPECT_EQ(stopped.tokens, std::vector<int>(full.begin(), full.begin() + first));

  // A prompt 10 tokens short of the context generates until the context is full.
  RequestParams longr;
  longr.prompt.assign(engine->spec().max_seq_len - 10, 300);
  longr.prompt[0] = 1;
  longr.stop.max_tokens = 1000;
  longr.stop.ignore_eos = true;
  Outcome o = RunAll(*engine, {longr}, 0)[0];
  EXPECT_EQ(o.finish, FinishReason::kLength);
  EXPECT_EQ(o.tokens.size(), 11u);  // positions 502..511 computed, the last one's successor emitted
}

// The scheduling policies and pipelined plans change who runs when, never a request's
// tokens: every policy, at pipeline depths 1 and 3, gives each request the tokens it
// gets alone (greedy and seeded sampling, staggered arrivals, prefill chunks of a small
// step budget). The policies' own shapes show in how many requests share a step.
TEST(EngineTest, EveryPolicyAndPipelineDepthGivesTheSameTokens) {
  Tokenizer tok = LoadTok();
  SamplingParams sampled;
  sampled.temperature = 0.9f;
  sampled.top_k = 40;
  sampled.repetition_penalty = 1.1f;
  std::vector<RequestParams> requests = StoryRequests(tok, 40);
  requests.resize(6);
  std::vector<RequestParams> more = StoryRequests(tok, 40, sampled);
  requests.insert(requests.end(), more.begin() + 6, more.begin() + 12);
  auto alone_engine = MakeEngine();
  ASSERT_NE(alone_engine, nullptr);
  std::vector<Outcome> alone;
  for (const RequestParams& r : requests) alone.push_back(RunAll(*alone_engine, {r}, 0)[0]);

  for (SchedulerPolicy policy : {SchedulerPolicy::kFused, SchedulerPolicy::kDynamic, SchedulerPolicy::kInstances,
                                 SchedulerPolicy::kSequential}) {
    for (int depth : {1, 3}) {
      SCOPED_TRACE(std::string(SchedulerPolicyName(policy)) + ", pipeline depth " + std::to_string(depth));
      EngineConfig config;
      config.policy = policy;
      config.pipeline_depth = depth;
      config.max_step_tokens = 24;
      config.batch_window = std::chrono::milliseconds(0);
      config.max_batch = 4;
      auto engine = MakeEngine(config);
      ASSERT_NE(engine, nullptr);
      int max_fused = 0;
      std::vector<Outcome> out = RunAll(*engine, requests, /*stagger=*/2, &max_fused);
      for (size_t i = 0; i < requests.size(); ++i) {
        EXPECT_EQ(out[i].tokens, alone[i].tokens) << "request " << i;
        EXPECT_EQ(out[i].finish, alone[i].finish) << "request " << i;
      }
      EXPECT_EQ(engine->n_free_blocks(), engine->n_blocks()) << "blocks leaked";
      switch (policy) {
        case SchedulerPolicy::kSequential: EXPECT_EQ(max_fused, 1); break;
        case SchedulerPolicy::kDynamic: EXPECT_LE(max_fused, 4) << "max_batch"; break;
        default: EXPECT_GT(max_fused, 4) << "requests were not fused";
      }
    }
  }
}

// With plans pipelined, a request cancelled mid-stream still reports its tokens once,
// in order, then one cancellation, and the others are unaffected.
TEST(EngineTest, PipelinedCancellationKeepsEveryStreamExact) {
  Tokenizer tok = LoadTok();
  RequestParams r;
  r.prompt = tok.Encode("Once upon a time");
  r.stop.max_tokens = 60;
  r.stop.ignore_eos = true;
  auto reference = MakeEngine();
  ASSERT_NE(reference, nullptr);
  const std::vector<int> full = RunAll(*reference, {r}, 0)[0].tokens;
  ASSERT_EQ(full.size(), 60u);

  EngineConfig config;
  config.pipeline_depth = 2;
  auto engine = MakeEngine(config);
  ASSERT_NE(engine, nullptr);
  const uint64_t keep = *engine->Add(r);
  const uint64_t victim = *engine->Add(r);
  std::map<uint64_t, Outcome> out;
  std::vector<EngineEvent> events;
  for (int step = 0; engine->has_work() && step < 1000; ++step) {
    if (step == 10) {
      ASSERT_TRUE(engine->Cancel(victim).ok());
    }
    events.clear();
    ASSERT_TRUE(engine->Step(&events).ok());
    for (const EngineEvent& e : events) {
      Outcome& o = out[e.request_id];
      EXPECT_EQ(o.finish, FinishReason::kNone) << "event after finish for " << e.request_id;
      if (e.token >= 0) o.tokens.push_back(e.token);
      o.finish = e.finish;
    }
  }
  EXPECT_EQ(out[keep].tokens, full);
  EXPECT_EQ(out[keep].finish, FinishReason::kLength);
  EXPECT_EQ(out[victim].finish, FinishReason::kCancelled);
  EXPECT_GT(out[victim].tokens.size(), 0u);
  EXPECT_LT(out[victim].tokens.size(), full.size());
  EXPECT_TRUE(std::equal(out[victim].tokens.begin(), out[victim].tokens.end(), full.begin()));
  EXPECT_EQ(engine->n_free_blocks(), engine->n_blocks());
}

TEST(EngineTest, CreateRejectsBadConfigs) {
  BackendConfig backend;
  backend.model = "dummy:tiny";
  for (auto mutate : {+[](EngineConfig& c) { c.max_step_tokens = 0; }, +[](EngineConfig& c) { c.max_running = 0; },
                      +[](EngineConfig& c) { c.pipeline_depth = 0; }, +[](EngineConfig& c) { c.max_batch = 0; }}) {
    EngineConfig config;
    mutate(config);
    Result<CreatedBackend> created = CreateBackend(backend);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    EXPECT_EQ(Engine::Create(std::move(created->backend), config).status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(EngineTest, RejectsBadRequestsWithClearErrors) {
  auto engine = MakeEngine({}, 16, /*kv_max_blocks=*/4);  // 64 slots
  ASSERT_NE(engine, nullptr);
  auto error = [&](RequestParams r) { return engine->Add(std::move(r)).status(); };
  RequestParams ok;
  ok.prompt = {1, 301};
  ok.stop.max_tokens = 10;

  RequestParams r = ok;
  r.prompt.clear();
  EXPECT_EQ(error(r).code(), StatusCode::kInvalidArgument);
  r = ok;
  r.prompt = {1, 512};
  EXPECT_NE(error(r).message().find("outside the vocabulary"), std::string::npos) << error(r).message();
  r = ok;
  r.stop.max_tokens = 0;
  EXPECT_NE(error(r).message().find("max_tokens"), std::string::npos);
  r = ok;
  r.sampling.temperature = -1;
  EXPECT_NE(error(r).message().find("temperature"), std::string::npos);
  r = ok;
  r.sampling.top_p = 1.5f;
  EXPECT_NE(error(r).message().find("top_p"), std::string::npos);
  r = ok;
  r.prompt.assign(600, 300);
  EXPECT_NE(error(r).message().find("this model allows 512"), std::string::npos) << error(r).message();
  r = ok;
  r.stop.max_tokens = 100;  // 2 + 100 > 64 slots
  EXPECT_EQ(error(r).code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(engine->has_work()) << "rejected requests must not be queued";
  EXPECT_TRUE(engine->Add(ok).ok());
}

}  // namespace
}  // namespace flover
