// Multi-process tests: the real flover-coordinator and flover-worker daemons on
// 127.0.0.1 with random free ports, real ZeroMQ sockets, real Gloo collectives and the
// real stories260K model. Every test stops its processes; none can hang (all waits
// are bounded).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <limits>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/protocol.h"
#include "common/tokenizer.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::EngineGreedy;
using testing::ProcessAlive;
using testing::RunShell;
using testing::ShellRun;
using testing::TestCluster;
using testing::TestClusterOptions;

struct Outcome {
  bool accepted = false;
  int replica = -1;
  std::vector<int> streamed;
  std::vector<int> tokens;
  std::string text;
  std::string finish;  // "", stop, length, cancelled, error
  std::string error_code;
  std::string error;
};

// Reads replies until every id in `ids` is done or errored, or `timeout` passes.
std::map<std::string, Outcome> Collect(Client& client, const std::vector<std::string>& ids,
                                       std::chrono::seconds timeout = 60s) {
  std::map<std::string, Outcome> out;
  std::set<std::string> open(ids.begin(), ids.end());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!open.empty() && std::chrono::steady_clock::now() < deadline) {
    Result<std::optional<proto::ServerMessage>> r = client.Receive(200ms);
    if (!r.ok() || !*r) continue;
    const proto::ServerMessage& m = **r;
    if (m.has_accepted()) {
      Outcome& o = out[m.accepted().client_request_id()];
      o.accepted = true;
      o.replica = m.accepted().replica();
    } else if (m.has_token()) {
      Outcome& o = out[m.token().client_request_id()];
      o.streamed.insert(o.streamed.end(), m.token().tokens().begin(), m.token().tokens().end());
    } else if (m.has_done()) {
      Outcome& o = out[m.done().client_request_id()];
      o.tokens.assign(m.done().tokens().begin(), m.done().tokens().end());
      o.text = m.done().text();
      o.finish = FinishReasonName(FromProto(m.done().finish_reason()));
      open.erase(m.done().client_request_id());
    } else if (m.has_error()) {
      Outcome& o = out[m.error().client_request_id()];
      o.finish = "error";
      o.error_code = m.error().code();
      o.error = m.error().message();
      open.erase(m.error().client_request_id());
    }
  }
  for (const std::string& id : open) ADD_FAILURE() << "request " << id << " did not finish within the timeout";
  return out;
}

std::vector<int> Ids(const std::string& s) {
  std::vector<int> ids;
  std::istringstream in(s);
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

TestClusterOptions Stories(int replicas = 1, int tp = 2) {
  TestClusterOptions o;
  o.model = testing::Stories260kBin();
  o.tokenizer = testing::Tok512Bin();
  o.replicas = replicas;
  o.tensor_parallel = tp;
  return o;
}

const char* kReadmeGenerated[] = {
    "269 368 302 382 276 337 299 322 265 282 295 433 426 342 397 355 267 337 335 265 315 267 422 419 269 352 379 261 "
    "420 277 264 265 282 295 433 426 342 394 261 370 268 414 444 269 261 262 423 388 268 414 444 426 342 391 266 267 "
    "337 335 265 268 414",
    "291 280 294 286 399 393 426 291 280 294 286 399 393 426 291 280 294 286 399 393 426 291 280 294 269 265 280 294 "
    "337 266 267 428 316 386 426 342 381 261 370 268 414 444 426 342 397 355 267 337 267 428 316 386 426 13",
    "395 410 462 362 422 426 410 462 362 422 401 396 267 337 335 311 267 422 419 426 385 328 432 358 394 261 370 432 "
    "352 266 280 295 426 338 391 266 267 337 335 312 432 398 358 279 292 297 309 409 416 327 263 415 294 267 400 426",
};
const char* kReadmePrompts[] = {"Sara", "The cat sat on the mat.", "Ben had a red car"};

// Over both CPU transports: the collectives of the two workers go through shared memory
// or through Gloo's TCP, with the same tokens.
class TensorParallelClusterTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorParallelClusterTest, GreedyMatchesEngineAndReference) {
  TestClusterOptions options = Stories(1, 2);
  options.cpu_transport = GetParam();
  auto cluster = TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());

  // The README prompts (run.c -n 64) as text, then more prompts as token ids, arriving
  // at staggered times so that requests join a running batch.
  Result<Tokenizer> tok = Tokenizer::LoadLlama2c(testing::Tok512Bin());
  ASSERT_TRUE(tok.ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    StopParams stop;
    stop.max_tokens = 64 - static_cast<int>(tok->Encode(kReadmePrompts[i]).size()) + 1;
    ASSERT_TRUE((*client)->Submit("readme" + std::to_string(i), kReadmePrompts[i], {}, {}, stop, true).ok());
    ids.push_back("readme" + std::to_string(i));
    std::this_thread::sleep_for(15ms);
  }
  const std::vector<std::string> more = {"Once upon a time", "Lily", "The dog ran", "Tom and Tim went to the park",
                                         "One day, a little", "She was sad"};
  std::vector<std::vector<int>> more_ids;
  for (size_t i = 0; i < more.size(); ++i) {
    more_ids.push_back(tok->Encode(more[i]));
    StopParams stop;
    stop.max_tokens = 120;
    ASSERT_TRUE((*client)->Submit("more" + std::to_string(i), "", more_ids.back(), {}, stop, i % 2 == 0).ok());
    ids.push_back("more" + std::to_string(i));
    std::this_thread::sleep_for(10ms);
  }
  std::map<std::string, Outcome> out = Collect(**client, ids);
  for (int i = 0; i < 3; ++i) {
    const Outcome& o = out["readme" + std::to_string(i)];
    EXPECT_EQ(o.finish, "length") << o.error;
    EXPECT_EQ(o.tokens, Ids(kReadmeGenerated[i])) << kReadmePrompts[i];
    EXPECT_EQ(o.streamed, o.tokens) << "streamed tokens arrive exactly once, in order";
  }
  EXPECT_EQ(out["readme0"].text.rfind(" and Ben were playing in the park.", 0), 0u) << out["readme0"].text;
  std::vector<std::vector<int>> expected = EngineGreedy(more_ids, 120);
  for (size_t i = 0; i < more.size(); ++i) EXPECT_EQ(out["more" + std::to_string(i)].tokens, expected[i]) << more[i];
}

INSTANTIATE_TEST_SUITE_P(CpuTransports, TensorParallelClusterTest, ::testing::Values("shm", "tcp"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// A worker computes on its own thread and heartbeats meanwhile, so one step much longer
// than heartbeat.timeout_ms (here a 1020-token prefill chunk) is not taken for a death.
TEST(ClusterTest, StepLongerThanTheHeartbeatTimeoutIsNotAFailure) {
  TestClusterOptions o;
  o.model = "dummy:stories15m";
  o.tensor_parallel = 1;
  // Long enough that a worker on a loaded machine (or under a sanitizer) gets its
  // heartbeats through; the prefill step takes several times longer.
  o.heartbeat_interval_ms = 10;
  o.heartbeat_timeout_ms = 300;
  o.max_step_tokens = 1024;
  o.kv_memory_mib = 32;
  auto cluster = TestCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  std::vector<int> prompt(1020);
  for (int i = 0; i < 1020; ++i) prompt[i] = 100 + (i * 37) % 20000;
  StopParams stop;
  stop.max_tokens = 2;
  stop.ignore_eos = true;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*client)->Submit("long", "", prompt, {}, stop, false).ok());
  std::map<std::string, Outcome> out = Collect(**client, {"long"});
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(out["long"].finish, "length") << out["long"].error_code << ": " << out["long"].error;
  EXPECT_EQ(out["long"].tokens.size(), 2u);
  // The premise: the prefill step took longer than the heartbeat timeout.
  EXPECT_GT(elapsed, std::chrono::milliseconds(o.heartbeat_timeout_ms));
  Result<proto::ClusterStatus> status = (*client)->FetchStatus(2000ms);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->replicas(0).state(), "ready") << status->replicas(0).error();
}

TEST(ClusterTest, TwoReplicasSpreadRequestsAndAllComplete) {
  auto cluster = TestCluster::Start(Stories(2, 2));
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    StopParams stop;
    stop.max_tokens = 60;
    stop.ignore_eos = true;
    ASSERT_TRUE((*client)->Submit("r" + std::to_string(i), "Once upon a time", {}, {}, stop, false).ok());
    ids.push_back("r" + std::to_string(i));
  }
  std::map<std::string, Outcome> out = Collect(**client, ids);
  std::set<int> replicas;
  for (const std::string& id : ids) {
    EXPECT_EQ(out[id].finish, "length") << id << ": " << out[id].error;
    EXPECT_EQ(out[id].tokens.size(), 60u);
    EXPECT_EQ(out[id].tokens, out["r0"].tokens) << "same greedy request, same tokens on every replica";
    replicas.insert(out[id].replica);
  }
  EXPECT_EQ(replicas, (std::set<int>{0, 1}));
  Result<proto::ClusterStatus> status = (*client)->FetchStatus(2000ms);
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->replicas_size(), 2);
  for (const auto& r : status->replicas()) EXPECT_EQ(r.kv_blocks_used(), 0) << "finished requests free their blocks";
}

TEST(ClusterTest, CancelMidStreamAndBadRequestsDoNotDisturbOthers) {
  auto cluster = TestCluster::Start(Stories(1, 2));
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());

  StopParams good_stop;
  good_stop.max_tokens = 61;
  ASSERT_TRUE((*client)->Submit("good", "", Ids("1 301 295 412"), {}, good_stop, true).ok());
  StopParams long_stop;
  long_stop.max_tokens = 400;
  long_stop.ignore_eos = true;
  ASSERT_TRUE((*client)->Submit("victim", "Once upon a time", {}, {}, long_stop, true).ok());

  // Bad requests of every kind, while the good ones run.
  StopParams zero;
  zero.max_tokens = 0;
  ASSERT_TRUE((*client)->Submit("bad-max", "hi", {}, {}, zero, false).ok());
  ASSERT_TRUE((*client)->Submit("bad-id", "", {1, 512}, {}, good_stop, false).ok());
  ASSERT_TRUE((*client)->Submit("bad-long", "", std::vector<int>(600, 300), {}, good_stop, false).ok());
  SamplingParams hot;
  hot.temperature = -1;
  ASSERT_TRUE((*client)->Submit("bad-temp", "hi", {}, hot, good_stop, false).ok());
  proto::ClientMessage unknown;
  unknown.mutable_submit()->set_client_request_id("bad-field");
  unknown.mutable_submit()->set_text("hi");
  unknown.mutable_submit()->mutable_stop()->set_max_tokens(5);
  unknown.mutable_submit()->GetReflection()->MutableUnknownFields(unknown.mutable_submit())->AddVarint(77, 1);
  ASSERT_TRUE((*client)->SendRaw(Serialize(unknown)).ok());
  ASSERT_TRUE((*client)->SendRaw("this is not a protobuf \xff\xff\xff").ok());

  // Cancel the victim after a few streamed tokens.
  std::map<std::string, Outcome> out;
  std::set<std::string> open = {"good", "victim", "bad-max", "bad-id", "bad-long", "bad-temp", "bad-field"};
  bool cancelled = false, garbage_error = false;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while ((!open.empty() || !garbage_error) && std::chrono::steady_clock::now() < deadline) {
    auto r = (*client)->Receive(200ms);
    if (!r.ok() || !*r) continue;
    const proto::ServerMessage& m = **r;
    if (m.has_token() && m.token().client_request_id() == "victim") {
      auto& o = out["victim"];
      o.streamed.insert(o.streamed.end(), m.token().tokens().begin(), m.token().tokens().end());
      if (o.streamed.size() >= 5 && !cancelled) {
        ASSERT_TRUE((*client)->Cancel("victim").ok());
        cancelled = true;
      }
    } else if (m.has_done()) {
      auto& o = out[m.done().client_request_id()];
      o.tokens.assign(m.done().tokens().begin(), m.done().tokens().end());
      o.finish = FinishReasonName(FromProto(m.done().finish_reason()));
      open.erase(m.done().client_request_id());
    } else if (m.has_error()) {
      if (m.error().client_request_id().empty()) {
        garbage_error = true;
        continue;
      }
      auto& o = out[m.error().client_request_id()];
      o.finish = "error";
      o.error_code = m.error().code();
      o.error = m.error().message();
      open.erase(m.error().client_request_id());
    }
  }
  EXPECT_TRUE(open.empty()) << "unfinished requests remain";
  EXPECT_TRUE(garbage_error) << "an unreadable message gets an Error reply";
  EXPECT_EQ(out["good"].finish, "length");
  EXPECT_EQ(out["good"].tokens, Ids(kReadmeGenerated[0])) << "bad requests must not disturb others";
  EXPECT_EQ(out["victim"].finish, "cancelled");
  EXPECT_LT(out["victim"].tokens.size(), 400u);
  for (const char* bad : {"bad-max", "bad-id", "bad-long", "bad-temp", "bad-field"}) {
    EXPECT_EQ(out[bad].finish, "error") << bad;
    EXPECT_EQ(out[bad].error_code, "InvalidArgument") << bad << ": " << out[bad].error;
  }
  EXPECT_NE(out["bad-id"].error.find("outside the vocabulary"), std::string::npos) << out["bad-id"].error;
  EXPECT_NE(out["bad-long"].error.find("allows 512"), std::string::npos) << out["bad-long"].error;
  EXPECT_NE(out["bad-max"].error.find("max_tokens"), std::string::npos) << out["bad-max"].error;

  Result<proto::ClusterStatus> status = (*client)->FetchStatus(2000ms);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->replicas(0).kv_blocks_used(), 0) << "the cancelled request's blocks are freed";
  EXPECT_EQ(status->replicas(0).state(), "ready");
}

TEST(ClusterTest, DeadWorkerFailsItsRequestsClearlyAndNothingHangs) {
  // One replica, nothing restarts its workers: its request waits failover_wait_ms for a
  // ready replica, then fails with both reasons.
  TestClusterOptions options = Stories(1, 2);
  options.failover_wait_ms = 1000;
  auto cluster = TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  StopParams stop;
  stop.max_tokens = 450;
  stop.ignore_eos = true;
  ASSERT_TRUE((*client)->Submit("doomed", "Once upon a time", {}, {}, stop, true).ok());
  // Let it run, then kill rank 1 hard.
  for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    auto r = (*client)->Receive(100ms);
    if (r.ok() && *r && (*r)->has_token()) break;
  }
  (*cluster)->worker(0, 1)->Signal(SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, Outcome> out = Collect(**client, {"doomed"}, 30s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(out["doomed"].finish, "error");
  EXPECT_EQ(out["doomed"].error_code, "Unavailable") << out["doomed"].error;
  EXPECT_NE(out["doomed"].error.find("replica 0 is unhealthy: "), std::string::npos) << out["doomed"].error;
  EXPECT_NE(out["doomed"].error.find("; no replica became ready within 1.0 s"), std::string::npos)
      << out["doomed"].error;
  EXPECT_GE(seconds, 1.0);
  EXPECT_LT(seconds, 15.0) << "the failure must be reported within a few heartbeat timeouts";

  Result<proto::ClusterStatus> status = (*client)->FetchStatus(2000ms);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->replicas(0).state(), "unhealthy");
  // New requests get a clear error, not a hang.
  StopParams small;
  small.max_tokens = 5;
  ASSERT_TRUE((*client)->Submit("after", "hi", {}, {}, small, false).ok());
  std::map<std::string, Outcome> after = Collect(**client, {"after"}, 10s);
  EXPECT_EQ(after["after"].finish, "error");
  EXPECT_EQ(after["after"].error_code, "Unavailable") << after["after"].error;
}

// An idle replica runs no collective, so only the coordinator can notice that one of
// its workers died: it does from the closed connection, not after the heartbeat
// timeout (here 30 s, heartbeats every 10 s).
TEST(ClusterTest, AWorkerKilledWhileIdleFailsItsReplicaWithinASecond) {
  TestClusterOptions options = Stories(1, 2);
  options.heartbeat_interval_ms = 10000;
  options.heartbeat_timeout_ms = 30000;
  auto cluster = TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  const int pid = (*cluster)->worker(0, 1)->pid();
  (*cluster)->worker(0, 1)->Signal(SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  proto::ClusterStatus status;
  while (std::chrono::steady_clock::now() - t0 < 20s) {
    Result<proto::ClusterStatus> s = (*client)->FetchStatus(2000ms);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    status = *s;
    if (status.replicas(0).state() == "unhealthy") break;
    std::this_thread::sleep_for(5ms);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(status.replicas(0).state(), "unhealthy");
  EXPECT_LT(seconds, 1.0);
  EXPECT_NE(status.replicas(0).error().find("worker 0/1 (pid " + std::to_string(pid) + ") disconnected"),
            std::string::npos)
      << status.replicas(0).error();
}

// Bad input of every kind, through real daemons: 240 requests with random fields (prompts
// of random bytes or random token ids, sampling values including NaN and infinities,
// stop ids and stop strings, max_tokens and priorities anywhere in their range), mixed with messages of
// random bytes. Every request ends (Done or Error, never silence), the daemons stay up,
// and a greedy request afterwards still gives the engine's tokens.
TEST(ClusterTest, RandomRequestsAllEndAndTheClusterStillServes) {
  auto cluster = TestCluster::Start(Stories(1, 2));
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  // FLOVER_FUZZ_SEED and FLOVER_FUZZ_REQUESTS run other and longer series (3000
  // requests for seeds 1-12 passed on 2026-11-29).
  const char* seed = std::getenv("FLOVER_FUZZ_SEED");
  const char* n_requests = std::getenv("FLOVER_FUZZ_REQUESTS");
  std::mt19937_64 rng(seed ? std::stoull(seed) : 20261129);
  const float kInf = std::numeric_limits<float>::infinity();
  const std::vector<float> floats = {0.0f, -1.0f, 0.5f, 1.0f, 2.0f, 1e30f, -1e30f, 1e-30f, kInf, -kInf,
                                     std::numeric_limits<float>::quiet_NaN()};
  const std::vector<int> ints = {0, 1, -1, 2, 5, 511, 512, 513, 100000, std::numeric_limits<int>::max(),
                                 std::numeric_limits<int>::min()};
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto any_float = [&] { return floats[rng() % floats.size()]; };
  auto any_int = [&] { return chance(0.5) ? ints[rng() % ints.size()] : static_cast<int>(rng() % 600) - 50; };
  auto bytes = [&](size_t max) {
    std::string s(rng() % (max + 1), '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  // Text is a proto3 string: valid UTF-8 of random code points (control characters, NUL,
  // CJK, emoji, ...); invalid UTF-8 does not parse, like the random bytes above.
  auto text = [&](size_t max) {
    std::string s;
    for (size_t n = rng() % (max + 1); n > 0; --n) {
      uint32_t c = static_cast<uint32_t>(rng() % (chance(0.7) ? 0x80 : 0x1FFFF));
      if (c >= 0xD800 && c <= 0xDFFF) c = 'x';  // no surrogates
      if (c < 0x80) {
        s += static_cast<char>(c);
      } else if (c < 0x800) {
        s += static_cast<char>(0xC0 | (c >> 6));
        s += static_cast<char>(0x80 | (c & 0x3F));
      } else if (c < 0x10000) {
        s += static_cast<char>(0xE0 | (c >> 12));
        s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (c & 0x3F));
      } else {
        s += static_cast<char>(0xF0 | (c >> 18));
        s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (c & 0x3F));
      }
    }
    return s;
  };
  std::vector<std::string> ids;
  for (int i = 0; i < (n_requests ? std::atoi(n_requests) : 240); ++i) {
    if (i % 4 == 0) {
      ASSERT_TRUE((*client)->SendRaw(bytes(64)).ok());
    }
    proto::ClientMessage m;
    proto::SubmitRequest* s = m.mutable_submit();
    s->set_client_request_id("r" + std::to_string(i));
    if (chance(0.5)) {
      s->set_text(text(40));
    } else {
      for (size_t n = rng() % 30; n > 0; --n) s->mutable_token_ids()->add_ids(any_int());
    }
    if (chance(0.8)) {
      s->mutable_sampling()->set_temperature(any_float());
      s->mutable_sampling()->set_top_k(any_int());
      s->mutable_sampling()->set_top_p(any_float());
      s->mutable_sampling()->set_repetition_penalty(any_float());
      s->mutable_sampling()->set_seed(rng());
    }
    s->mutable_stop()->set_max_tokens(chance(0.9) ? 1 + static_cast<int>(rng() % 8) : any_int());
    for (size_t n = rng() % 3; n > 0; --n) s->mutable_stop()->add_stop_token_ids(any_int());
    if (chance(0.3))
      for (size_t n = chance(0.1) ? 20 : 1 + rng() % 3; n > 0; --n) {
        const char* common[] = {"e", " the", ".", "Lily", "\n"};  // these appear in stories
        s->mutable_stop()->add_stop_strings(chance(0.5) ? std::string(common[rng() % 5]) : text(4));
      }
    s->mutable_stop()->set_ignore_eos(chance(0.5));
    s->set_stream(chance(0.5));
    s->set_priority(any_int());
    ASSERT_TRUE((*client)->SendRaw(Serialize(m)).ok());
    ids.push_back(s->client_request_id());
  }
  std::map<std::string, Outcome> out = Collect(**client, ids, 120s);
  int n_done = 0, n_error = 0;
  for (const std::string& id : ids) {
    const Outcome& o = out[id];
    EXPECT_FALSE(o.finish.empty()) << id;
    (o.finish == "error" ? n_error : n_done)++;
    if (o.finish == "error") {
      EXPECT_FALSE(o.error.empty()) << id << ": an error says why";
    }
  }
  EXPECT_GT(n_done, 10) << "some random requests are valid";
  EXPECT_GT(n_error, 10) << "many are not";

  Result<proto::ClusterStatus> status = (*client)->FetchStatus(2000ms);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->replicas(0).state(), "ready");
  EXPECT_EQ(status->replicas(0).kv_blocks_used(), 0);
  const std::vector<int> prompt = {1, 403, 407, 261};
  StopParams stop;
  stop.max_tokens = 40;
  ASSERT_TRUE((*client)->Submit("after", "", prompt, {}, stop, false).ok());
  std::map<std::string, Outcome> after = Collect(**client, {"after"});
  EXPECT_EQ(after["after"].tokens, EngineGreedy({prompt}, 40)[0]) << after["after"].error;
}

// A client killed mid-request leaves no work behind: its requests (one streamed, one
// not: --json) are cancelled and their KV blocks freed, instead of running to 480 tokens.
TEST(ClusterTest, AKilledClientsRequestsAreCancelled) {
  auto cluster = TestCluster::Start(Stories(1, 2));
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  for (const std::string mode : {"--stream", "--json"}) {
    Result<ChildProcess> generate = ChildProcess::Spawn(
        {testing::FloverBinary(), "generate", "--endpoint", (*cluster)->client_endpoint(), "--max-tokens", "480",
         "--ignore-eos", mode, "--prompt", "Once upon a time", "--prompt", "Sara"},
        "flover generate " + mode, "/dev/null");
    ASSERT_TRUE(generate.ok()) << generate.status().ToString();
    proto::ClusterStatus status;
    for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;) {
      Result<proto::ClusterStatus> s = (*client)->FetchStatus(2000ms);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      status = *s;
      if (status.replicas(0).running() == 2) break;
    }
    ASSERT_EQ(status.replicas(0).running(), 2) << mode;
    const uint64_t abandoned = status.abandoned();
    generate->Signal(SIGKILL);
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < 20s) {
      Result<proto::ClusterStatus> s = (*client)->FetchStatus(2000ms);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      status = *s;
      if (status.abandoned() == abandoned + 2) break;
      std::this_thread::sleep_for(5ms);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(status.abandoned(), abandoned + 2) << mode;
    EXPECT_LT(seconds, 1.0) << mode << ": 480 tokens take longer than that";
    EXPECT_EQ(status.replicas(0).running(), 0) << mode;
    EXPECT_EQ(status.replicas(0).kv_blocks_used(), 0) << mode;
  }
}

// Ctrl-C of flover generate cancels its requests: each ends as "cancelled" with the
// tokens it had, the exit status is 130, and nothing is left running.
TEST(ClusterTest, CtrlCOfFloverGenerateCancelsItsRequests) {
  auto cluster = TestCluster::Start(Stories(1, 2));
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  const std::string out = ::testing::TempDir() + "/ctrl-c.json";
  std::remove(out.c_str());
  Result<ChildProcess> generate = ChildProcess::Spawn(
      {testing::FloverBinary(), "generate", "--endpoint", (*cluster)->client_endpoint(), "--max-tokens", "480",
       "--ignore-eos", "--json", "--prompt", "Once upon a time"},
      "flover generate", out);
  ASSERT_TRUE(generate.ok()) << generate.status().ToString();
  for (auto deadline = std::chrono::steady_clock::now() + 20s;;) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the request never ran";
    Result<proto::ClusterStatus> s = (*client)->FetchStatus(2000ms);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    if (s->replicas(0).running() == 1) break;
  }
  generate->Signal(SIGINT);
  std::optional<std::string> exit;
  for (auto deadline = std::chrono::steady_clock::now() + 20s; !(exit = generate->PollExit());) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "flover generate did not stop";
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(*exit, "exit 130");
  std::ifstream in(out);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(output.find("\"finish_reason\":\"cancelled\""), std::string::npos) << output;
  Result<proto::ClusterStatus> s = (*client)->FetchStatus(2000ms);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->replicas(0).running(), 0);
  EXPECT_EQ(s->abandoned(), 0u) << "cancelled by the client, not left behind";
}

TEST(ClusterTest, RequestsOfADeadReplicaFinishOnTheOtherWithTheSameTokens) {
  // Two TP-2 replicas. Replica 0 runs a greedy and a sampled request, replica 1 another
  // greedy one. Rank 1 of replica 0 is killed once tokens stream: its peer notices in
  // its next collective, the replica fails, and its two requests go on on replica 1 from
  // the tokens they had (a: 50 or a few more). Every request ends as if nothing happened: the same tokens as
  // the in-process engine running it alone, and no error reaches the client.
  auto cluster = TestCluster::Start(Stories(2, 2));
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok());
  std::vector<RequestParams> requests(3);
  requests[0].prompt = {1, 403, 407, 261};
  requests[1].prompt = {1, 9, 322, 4};
  requests[2].prompt = {1, 403, 407, 261};
  requests[2].sampling.temperature = 0.8f;
  requests[2].sampling.top_p = 0.9f;
  requests[2].sampling.seed = 77;
  for (RequestParams& r : requests) {
    r.stop.max_tokens = 400;
    r.stop.ignore_eos = true;
  }
  const std::vector<std::string> ids = {"a", "b", "c"};
  for (size_t i = 0; i < ids.size(); ++i)
    ASSERT_TRUE((*client)->Submit(ids[i], "", requests[i].prompt, requests[i].sampling, requests[i].stop, true).ok());

  // Accepted: a -> 0, b -> 1 (least loaded), c -> 0 (tie: lowest index). Kill replica
  // 0's rank 1 once a streamed 50 tokens.
  std::map<std::string, Outcome> out;
  for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
    auto r = (*client)->Receive(100ms);
    if (!r.ok() || !*r) continue;
    if ((*r)->has_accepted()) out[(*r)->accepted().client_request_id()].replica = (*r)->accepted().replica();
    if ((*r)->has_token()) {
      Outcome& o = out[(*r)->token().client_request_id()];
      o.streamed.insert(o.streamed.end(), (*r)->token().tokens().begin(), (*r)->token().tokens().end());
      if (out["a"].streamed.size() >= 50) break;
    }
  }
  ASSERT_EQ(out["a"].replica, 0);
  ASSERT_EQ(out["c"].replica, 0);
  ASSERT_FALSE(out["a"].streamed.empty());
  (*cluster)->worker(0, 1)->Signal(SIGKILL);

  std::map<std::string, Outcome> rest = Collect(**client, ids, 60s);
  const std::vector<testing::EngineResult> expected = EngineGreedy(requests);
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(ids[i]);
    const Outcome& o = rest[ids[i]];
    EXPECT_EQ(o.finish, "length") << o.error_code << ": " << o.error;
    EXPECT_EQ(o.tokens, expected[i].tokens);
    std::vector<int> streamed = out[ids[i]].streamed;  // before the kill
    streamed.insert(streamed.end(), o.streamed.begin(), o.streamed.end());
    EXPECT_EQ(streamed, expected[i].tokens) << "every token streamed once, in order";
  }
  Result<proto::ClusterStatus> status = (*client)->FetchStatus(2000ms);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->replicas(0).state(), "unhealthy");
  EXPECT_EQ(status->replicas(1).state(), "ready");
  EXPECT_EQ(status->moved(), 2u) << "a and c moved; if a finished before the kill landed, this test is too slow";
}

// A cluster file for flover up: stories260K, one replica of TP `tensor`, the
// scheduler's defaults for plans in flight and failover.
std::string WriteUpConfig(const std::string& name, int tensor, const std::string& model_path) {
  TestClusterOptions o = Stories(1, tensor);
  o.model = model_path;
  o.pipeline_depth = 2;
  o.failover_wait_ms = 30000;
  const std::string config = ::testing::TempDir() + "/" + name + ".yaml";
  std::ofstream(config) << testing::ClusterYaml(o);
  return config;
}

TEST(ClusterTest, FloverUpRunsACommandAndLeavesNoProcess) {
  // flover up with the stories260K cluster (TP 2), a generate command against it, then
  // teardown. The shell command records the cluster's pids (children of flover up).
  const std::string dir = ::testing::TempDir();
  const std::string config = WriteUpConfig("up", 2, testing::Stories260kBin());
  const std::string out_file = dir + "/up_out.json", pid_file = dir + "/up_pids.txt";
  const std::string exec = testing::FloverBinary() +
                           " generate --prompt Sara --max-tokens 61 --json > " + out_file +
                           " && pgrep -P $PPID > " + pid_file;
  const ShellRun up = RunShell(testing::FloverBinary() + " up --config " + config + " --exec '" + exec + "'");
  const std::string& log = up.output;
  EXPECT_EQ(up.exit_code, 0) << log;
  EXPECT_NE(log.find("ready"), std::string::npos) << log;

  std::ifstream out(out_file);
  std::string line;
  ASSERT_TRUE(std::getline(out, line)) << log;
  EXPECT_NE(line.find("\"finish_reason\":\"length\""), std::string::npos) << line;
  EXPECT_NE(line.find(" and Ben were playing in the park."), std::string::npos) << line;

  std::ifstream pids(pid_file);
  std::vector<int> children;
  for (int pid; pids >> pid;) children.push_back(pid);
  EXPECT_GE(children.size(), 3u) << "coordinator + 2 workers (+ the shell) were children of flover up";
  for (int pid : children) EXPECT_FALSE(ProcessAlive(pid)) << "process " << pid << " survived flover up";
}

TEST(ClusterTest, FloverUpRestartsAKilledWorkerAndNoRequestIsLost) {
  // One replica (TP 2) under flover up. The command starts a long streamed request and,
  // at its first token, kills worker 0/1 (a child of flover up). The replica fails, and
  // its request waits (scheduler.failover_wait_ms, 30 s by default); worker 0/0 stops
  // (its collective fails, or the coordinator shuts it down); flover up restarts both,
  // they register again, the replica is ready again, and the request goes on from its
  // tokens: its text equals the same request's without a failure. A request submitted
  // just after the kill, while the replica is down, waits for it too (the recovery
  // window). Then the replica serves new requests.
  // The request takes ~0.2 s; on a loaded machine the kill can come after its end. Such
  // an attempt (the status counts no moved request) is repeated, up to 4 times.
  const std::string dir = ::testing::TempDir();
  const std::string config = WriteUpConfig("restart", 2, testing::Stories260kBin());
  const std::string flover = testing::FloverBinary();
  const std::string story = flover + " generate --prompt Sara --max-tokens 400 --ignore-eos";
  const std::string script = dir + "/restart.sh";
  std::ofstream(script) << "set -e\n"
                        << story << " > " << dir << "/reference.txt\n"
                        << "for attempt in 1 2 3 4; do\n"
                        << "  victim=$(pgrep -P $PPID -f -- '--rank [1]')\n"
                        << "  : > " << dir << "/survivor.txt\n"  // empty until the first token
                        << "  " << story << " > " << dir << "/survivor.txt &\n"
                        << "  survivor=$!\n"
                        << "  until [ -s " << dir << "/survivor.txt ]; do sleep 0.005; done\n"
                        << "  kill -9 $victim\n"
                        << "  " << flover << " generate --prompt Sara --max-tokens 61 --json > " << dir
                        << "/during.json\n"
                        << "  wait $survivor\n"
                        << "  " << flover << " status --wait-ready 60 > " << dir << "/status.txt\n"
                        << "  grep -q 'moved from failed' " << dir << "/status.txt && break\n"
                        << "done\n"
                        << flover << " generate --prompt Sara --max-tokens 61 --json > " << dir << "/after.json\n";
  // exec: the script's parent is flover up, whose children the workers are.
  const ShellRun up = RunShell(flover + " up --config " + config + " --exec 'exec sh " + script + "'");
  EXPECT_EQ(up.exit_code, 0) << up.output;
  EXPECT_NE(up.output.find("flover-worker 0/1 stopped (signal Killed)"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("waits for a ready replica from failed replica 0"), std::string::npos) << up.output;
  // Worker 0/0 exits 3 (its collective noticed the dead peer mid-step) or 5 (told so).
  EXPECT_TRUE(up.output.find("flover-worker 0/0 stopped (exit 3)") != std::string::npos ||
              up.output.find("flover-worker 0/0 stopped (exit 5)") != std::string::npos)
      << up.output;
  EXPECT_NE(up.output.find("flover-worker 0/1 restarted"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("flover-worker 0/0 restarted"), std::string::npos) << up.output;
  auto read = [&](const std::string& name) {
    std::ifstream in(dir + "/" + name);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string reference = read("reference.txt");
  EXPECT_NE(reference.find("Sara and Ben were playing in the park."), std::string::npos) << reference;
  EXPECT_NE(read("status.txt").find(" moved from failed replicas"), std::string::npos) << read("status.txt");
  EXPECT_EQ(read("survivor.txt"), reference) << up.output;
  EXPECT_NE(read("during.json").find(" and Ben were playing in the park."), std::string::npos) << up.output;
  EXPECT_NE(read("after.json").find(" and Ben were playing in the park."), std::string::npos) << up.output;
}

TEST(ClusterTest, WorkersThatCannotLoadTheModelStopFloverUpWithTheReason) {
  // The workers check the model against the config before they read any tensor, and
  // tell the coordinator why they gave up; flover up's last line carries that reason,
  // whatever the worker logs said. No command runs, and no process is left.
  struct Case {
    std::string name;
    int tensor;
    std::string model;
    std::string reason;
  };
  const std::string truncated = ::testing::TempDir() + "/truncated260K.bin";
  {
    std::ifstream in(testing::Stories260kBin(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_GT(bytes.size(), 4096u);
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  const std::vector<Case> cases = {
      {"tp3", 3, testing::Stories260kBin(), "parallel.tensor: 3 does not divide heads=8"},
      {"truncated", 2, truncated, "Corruption: " + truncated + ": file has "},
      {"missing", 1, ::testing::TempDir() + "/no-such-model.bin", "no-such-model.bin: no such file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string marker = ::testing::TempDir() + "/up_ran_" + c.name;
    std::remove(marker.c_str());
    const ShellRun up = RunShell(testing::FloverBinary() + " up --config " +
                                     WriteUpConfig("bad_" + c.name, c.tensor, c.model) + " --exec 'touch " + marker +
                                     "'");
    EXPECT_EQ(up.exit_code, 1) << up.output;
    const size_t last = up.output.rfind("flover up: ");
    ASSERT_NE(last, std::string::npos) << up.output;
    const std::string last_line = up.output.substr(last);
    EXPECT_NE(last_line.find("stopped while starting (exit 2)"), std::string::npos) << up.output;
    EXPECT_NE(last_line.find("replica 0 is unhealthy"), std::string::npos) << up.output;
    EXPECT_NE(last_line.find(c.reason), std::string::npos) << up.output;
    EXPECT_FALSE(std::ifstream(marker).good()) << "the command ran against a cluster that never became ready";
  }
}

}  // namespace
}  // namespace flover
