// Multi-process tests of the scheduler policies (scheduler.policy) with the real
// flover-coordinator and flover-worker daemons: a TP-2 cluster on stories260K serves
// requests that arrive in three waves (a wave is sent when a request of the previous
// one has streamed its first token, so later waves meet a running batch), and every
// request must get exactly the in-process engine's greedy tokens, whatever the policy.
// Each policy's own behaviour is checked from what the client sees: the order of the
// events on its connection, the queue time, and tokens per step in the status.
// Pipelined plans (depth 2) are checked the same way, with early stops on EOS/BOS
// (stale entries on the workers) and a cancellation mid-stream. `flover run --policy`
// (the in-process engine, the same scheduler) gives the same tokens under every policy.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "client/request_session.h"
#include "common/tokenizer.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::EngineGreedy;
using testing::EngineResult;
using testing::kStatusWait;
using testing::TestCluster;
using testing::TestClusterOptions;

struct Job {
  std::string id;
  std::string prompt;
  int max_tokens;
  bool ignore_eos;
  bool stream;
  int wave;  // 0: at once; n: when a request of wave n - 1 has streamed a token
};

// r2 and r4 stop on EOS/BOS before max_tokens (the engine reference says so too).
const std::vector<Job>& Jobs() {
  static const std::vector<Job> kJobs = {
      {"r0", "Once upon a time", 60, false, true, 0},
      {"r1", "Lily", 90, false, false, 0},
      {"r2", "Tom and Tim went to the park", 200, false, true, 1},
      {"r3", "One day, a little", 40, false, true, 1},
      {"r4", "Ben had a red car", 200, false, true, 1},
      {"r5", "She was sad", 70, false, true, 2},
  };
  return kJobs;
}

const Job kVictim = {"victim", "The sun", 300, true, true, 0};

std::vector<int> Encode(const std::string& text) {
  static const Tokenizer tok = [] {
    Result<Tokenizer> t = Tokenizer::LoadLlama2c(testing::Tok512Bin());
    FLOVER_CHECK(t.ok()) << t.status().ToString();
    return std::move(t).value();
  }();
  return tok.Encode(text);
}

RequestParams Params(const Job& job) {
  RequestParams r;
  r.prompt = Encode(job.prompt);
  r.stop.max_tokens = job.max_tokens;
  r.stop.ignore_eos = job.ignore_eos;
  return r;
}

// The engine's tokens for every job of Jobs() and for kVictim, by id (computed once).
const std::map<std::string, EngineResult>& Reference() {
  static const std::map<std::string, EngineResult> kReference = [] {
    std::vector<Job> jobs = Jobs();
    jobs.push_back(kVictim);
    std::vector<RequestParams> requests;
    for (const Job& j : jobs) requests.push_back(Params(j));
    std::vector<EngineResult> results = EngineGreedy(requests);
    std::map<std::string, EngineResult> out;
    for (size_t i = 0; i < jobs.size(); ++i) out[jobs[i].id] = std::move(results[i]);
    return out;
  }();
  return kReference;
}

// A request as the session saw it, and where its events came among all of the session's.
struct Outcome : RequestRecord {
  int first_token_event = -1;  // index of its first TokenEvent among the session's events
  int done_event = -1;         // index of its Done / Error
};

struct RunResult {
  std::map<std::string, Outcome> out;
  proto::ClusterStatus status;  // once every request has finished
  bool ok = false;              // every request finished in time
};

// Starts a cluster, sends `jobs` in waves (see above) and collects every reply; cancels
// `cancel_id` once it has streamed 5 tokens.
RunResult RunWaves(const TestClusterOptions& options, const std::vector<Job>& jobs,
                   const std::string& cancel_id = "") {
  RunResult run;
  auto cluster = TestCluster::Start(options);
  EXPECT_TRUE(cluster.ok()) << cluster.status().ToString();
  if (!cluster.ok()) return run;
  auto client = (*cluster)->Connect();
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  if (!client.ok()) return run;

  std::map<std::string, int> wave_of;
  int n_waves = 0;
  for (const Job& j : jobs) {
    wave_of[j.id] = j.wave;
    n_waves = std::max(n_waves, j.wave + 1);
  }
  RequestSession session(**client);
  auto send_wave = [&](int wave) {
    for (const Job& j : jobs) {
      if (j.wave != wave) continue;
      StopParams stop;
      stop.max_tokens = j.max_tokens;
      stop.ignore_eos = j.ignore_eos;
      const Status s = session.Submit(testing::TokenRequest(j.id, Encode(j.prompt), stop, j.stream));
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
  };
  int sent = 0;  // waves sent
  bool cancelled = false;
  int event = 0;
  session.OnEvent([&](const SessionEvent& e) {
    const std::string& id = e.request.id;
    Outcome& o = run.out[id];
    if (e.kind == SessionEventKind::kTokens) {
      if (o.first_token_event < 0) o.first_token_event = event;
      if (id == cancel_id && !cancelled && e.request.streamed.size() >= 5) {
        EXPECT_TRUE(session.Cancel(id).ok());
        cancelled = true;
      }
      if (sent < n_waves && wave_of[id] == sent - 1) send_wave(sent++);
    } else if (e.kind == SessionEventKind::kDone || e.kind == SessionEventKind::kError) {
      o.done_event = event;
    }
    ++event;
  });
  send_wave(sent++);
  const Status waited = session.WaitUntil([&] { return session.in_flight() == 0 && sent == n_waves; }, 60s);
  EXPECT_TRUE(waited.ok()) << "requests did not finish (waves sent: " << sent << "): " << waited.ToString();
  for (const RequestRecord& r : session.records()) static_cast<RequestRecord&>(run.out[r.id]) = r;
  EXPECT_EQ(session.records().size(), jobs.size());
  if (!cancel_id.empty()) {
    EXPECT_TRUE(cancelled) << cancel_id << " was never cancelled";
  }
  Result<proto::ClusterStatus> status = (*client)->FetchStatus(kStatusWait);
  EXPECT_TRUE(status.ok()) << status.status().ToString();
  if (status.ok()) run.status = *status;
  run.ok = waited.ok() && session.records().size() == jobs.size() && status.ok() && status->replicas_size() == 1;
  return run;
}

// Every job of Jobs() got the engine's tokens and finish reason, streamed ones exactly
// once and in order.
void ExpectEngineTokens(const RunResult& run) {
  for (const Job& j : Jobs()) {
    SCOPED_TRACE(j.id + " (" + j.prompt + ")");
    const EngineResult& want = Reference().at(j.id);
    const Outcome& got = run.out.at(j.id);
    EXPECT_EQ(got.finish, FinishReasonName(want.finish)) << got.error;
    EXPECT_EQ(got.tokens, want.tokens);
    if (j.stream) {
      EXPECT_EQ(got.streamed, got.tokens);
    }
  }
}

TEST(PolicyTestReference, SomeJobsStopEarlyOnEosOrBos) {
  // What the pipelined runs rely on to produce stale entries.
  EXPECT_EQ(Reference().at("r2").finish, FinishReason::kStop);
  EXPECT_EQ(Reference().at("r4").finish, FinishReason::kStop);
  EXPECT_LT(Reference().at("r2").tokens.size(), 200u);
  EXPECT_EQ(Reference().at("r0").finish, FinishReason::kLength);
}

TestClusterOptions Options(const std::string& policy) {
  TestClusterOptions o;
  o.model = testing::Stories260kBin();
  o.tokenizer = testing::Tok512Bin();
  o.replicas = 1;
  o.tensor_parallel = 2;
  o.policy = policy;
  o.batch_window_ms = 150;
  o.max_batch = 3;
  return o;
}

class PolicyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PolicyTest, GreedyTokensMatchTheEngine) {
  const std::string policy = GetParam();
  RunResult run = RunWaves(Options(policy), Jobs());
  ASSERT_TRUE(run.ok);
  ExpectEngineTokens(run);

  const proto::ReplicaStatus& replica = run.status.replicas(0);
  EXPECT_EQ(replica.kv_blocks_used(), 0);
  EXPECT_EQ(replica.running() + replica.waiting(), 0);
  const std::vector<Job>& jobs = Jobs();
  if (policy == "sequential") {
    // One request per step, never two.
    EXPECT_LE(replica.tokens_generated(), replica.steps());
    // FCFS, one at a time: each request's first event comes after the previous Done.
    for (size_t i = 1; i < jobs.size(); ++i) {
      const Outcome& prev = run.out.at(jobs[i - 1].id);
      const Outcome& cur = run.out.at(jobs[i].id);
      EXPECT_LT(prev.done_event, cur.done_event) << jobs[i].id;
      if (jobs[i].stream) {
        EXPECT_LT(prev.done_event, cur.first_token_event) << jobs[i].id;
      }
    }
  } else {
    // Requests share steps (r0 and r1 arrive together).
    EXPECT_GT(replica.tokens_generated(), replica.steps());
  }
  if (policy == "dynamic") {
    // Two requests are fewer than max_batch 3: the first batch waited for the window.
    EXPECT_GE(run.out.at("r0").queue_seconds.value_or(-1), 0.149);
    // Batch 1 = {r0, r1}; wave 1 (r2, r3, r4) arrived while it ran and is batch 2 (3 =
    // max_batch: it formed as soon as batch 1 ended); r5 arrived during batch 2.
    auto done = [&](const char* id) { return run.out.at(id).done_event; };
    for (const char* id : {"r2", "r3", "r4"})
      EXPECT_GT(run.out.at(id).first_token_event, std::max(done("r0"), done("r1"))) << id;
    EXPECT_GT(run.out.at("r5").first_token_event, std::max({done("r2"), done("r3"), done("r4")}));
  }
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, PolicyTest, ::testing::Values("fused", "dynamic", "instances", "sequential"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(PipelineTest, DepthTwoGivesTheSameTokensWithEarlyStopsAndACancellation) {
  TestClusterOptions options = Options("fused");
  options.pipeline_depth = 2;
  std::vector<Job> jobs = Jobs();
  jobs.push_back(kVictim);
  RunResult run = RunWaves(options, jobs, kVictim.id);
  ASSERT_TRUE(run.ok);
  ExpectEngineTokens(run);

  const Outcome& victim = run.out.at(kVictim.id);
  const std::vector<int>& full = Reference().at(kVictim.id).tokens;
  EXPECT_EQ(victim.finish, "cancelled") << victim.error;
  EXPECT_GE(victim.tokens.size(), 5u);
  EXPECT_LT(victim.tokens.size(), full.size());
  EXPECT_TRUE(std::equal(victim.tokens.begin(), victim.tokens.end(), full.begin()))
      << "the cancelled request's tokens are a prefix of the engine's";
  EXPECT_EQ(victim.streamed, victim.tokens);

  const proto::ReplicaStatus& replica = run.status.replicas(0);
  EXPECT_EQ(replica.state(), "ready");
  EXPECT_EQ(replica.kv_blocks_used(), 0) << "finished and cancelled requests free their blocks";
}

// `flover run --policy P [--pipeline-depth D]` on prompts that arrive every 3 steps:
// the tokens of each prompt, in prompt order.
std::vector<std::vector<int>> FloverRunTokens(const std::vector<Job>& jobs, const std::string& flags) {
  std::string command = testing::FloverBinary() + " run --model " + testing::Stories260kBin() + " --tokenizer " +
                        testing::Tok512Bin() + " --max-tokens 60 --stagger 3 --json --threads 1 " + flags;
  for (const Job& j : jobs) command += " --prompt '" + j.prompt + "'";
  const testing::ShellRun run = testing::RunShell(command + " 2>/dev/null");
  EXPECT_EQ(run.exit_code, 0) << command << "\n" << run.output;
  std::vector<std::vector<int>> tokens;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] == '{')
      tokens.push_back(nlohmann::json::parse(line)["tokens"].get<std::vector<int>>());
  EXPECT_EQ(tokens.size(), jobs.size()) << run.output;
  return tokens;
}

TEST(FloverRunPolicyTest, EveryPolicyGivesTheSameGreedyTokens) {
  const std::vector<Job>& jobs = Jobs();
  std::vector<RequestParams> requests;
  for (const Job& j : jobs) {
    RequestParams r = Params(j);
    r.stop.max_tokens = 60;
    r.stop.ignore_eos = false;
    requests.push_back(r);
  }
  std::vector<std::vector<int>> alone;
  for (EngineResult& r : EngineGreedy(requests)) alone.push_back(std::move(r.tokens));
  for (const std::string flags : {"--policy fused", "--policy dynamic", "--policy instances", "--policy sequential",
                                  "--policy fused --pipeline-depth 3", "--policy dynamic --pipeline-depth 2"}) {
    SCOPED_TRACE(flags);
    const std::vector<std::vector<int>> got = FloverRunTokens(jobs, flags);
    ASSERT_EQ(got.size(), jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(got[i], alone[i]) << jobs[i].prompt;
  }
}

TEST(FloverRunPolicyTest, AnUnknownPolicyIsAClearError) {
  const testing::ShellRun run = testing::RunShell(testing::FloverBinary() +
                                                  " run --model dummy:tiny --prompt-ids 1,5 --policy lifo");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("--policy 'lifo' is not one of fused, dynamic, instances, sequential"), std::string::npos)
      << run.output;
}

}  // namespace
}  // namespace flover
