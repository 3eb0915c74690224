// A cluster spread over hosts, on one machine: the real daemons in Linux network
// namespaces (NetnsLab) joined by a bridge. The coordinator runs in "c"; replica 0 has
// rank 0 on "h1" and rank 1 on "h2" (so parallel.cpu_transport auto must pick TCP), and
// replica 1 has both ranks on "h2" (shared memory). Each host namespace's workers see a
// /dev/shm of their own host (a bind mount per host), as separate machines would. The
// cluster is secured with CURVE keys, as any cluster off loopback must be. Each worker
// runs under a restart loop, as systemd's Restart=on-failure runs it. Clients are
// `flover generate --json` in the coordinator's namespace, checked token for token
// against the in-process engine.
//
// Scenarios: the baseline; 1% packet loss on the hosts' links; one host partitioned
// under load and healed; the coordinator partitioned from every worker and healed. The
// timings (detection, rejoin) are printed as "[timing] ..." lines for the docs.
//
// Delay is not emulated: tc's netem qdisc needs the kernel's sch_netem, which not every
// machine has ("Specified qdisc kind is unknown"; this test's first machine lacked it).
//
// Needs root (network namespaces, bind mounts, iptables); skipped, with the reason,
// without it: `sudo ctest -R MultiHost -V` shows the timings.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/integration/netns.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::NetnsLab;
using testing::RunShell;
using testing::ShellQuote;
using testing::ShellRun;
using Clock = std::chrono::steady_clock;

constexpr int kHeartbeatTimeoutMs = 10000;
constexpr int kFailoverWaitMs = 60000;
constexpr int kClientPort = 5555;

struct Placement {
  int replica;
  int rank;
  const char* host;
};
constexpr Placement kWorkers[] = {{0, 0, "h1"}, {0, 1, "h2"}, {1, 0, "h2"}, {1, 1, "h2"}};

// One `flover generate --json` run: its exit status, one object per prompt, its stderr.
struct GenerateRun {
  int exit_code = -1;
  std::vector<nlohmann::json> completions;
  std::string errors;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// status["replicas"][r][key], or null when the status lacks it.
nlohmann::json ReplicaField(const nlohmann::json& status, size_t r, const char* key) {
  if (!status.is_object() || !status.contains("replicas") || !status["replicas"].is_array() ||
      status["replicas"].size() <= r || !status["replicas"][r].is_object() || !status["replicas"][r].contains(key))
    return nullptr;
  return status["replicas"][r][key];
}

std::string Tail(const std::string& text, size_t n = 4000) { return text.size() > n ? text.substr(text.size() - n) : text; }

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0)
      GTEST_SKIP() << "SKIPPED LOUDLY: needs root for network namespaces, bind mounts and iptables (euid "
                   << geteuid() << ")";
    Result<std::unique_ptr<NetnsLab>> lab = NetnsLab::Create({"c", "h1", "h2"}, 1);
    if (!lab.ok() && lab.status().code() == StatusCode::kFailedPrecondition)
      GTEST_SKIP() << "SKIPPED LOUDLY: " << lab.status().ToString();
    ASSERT_TRUE(lab.ok()) << lab.status().ToString();
    lab_ = std::move(lab).value();
    char tmpl[] = "/tmp/flover-multihost-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    keys_ = dir_ + "/keys";
    const Status made = testing::MakeClusterKeys(keys_);
    ASSERT_TRUE(made.ok()) << made.ToString();
    for (const char* host : {"h1", "h2"}) fs::create_directories(dir_ + "/shm-" + host);
    std::ofstream(dir_ + "/cluster.yaml") << ClusterYaml();
    StartCluster();
  }

  void TearDown() override {
    if (HasFailure() && lab_) {
      std::fprintf(stderr, "--- coordinator log\n%s\n", Tail(ReadFile(dir_ + "/coordinator.log")).c_str());
      for (const Placement& w : kWorkers)
        std::fprintf(stderr, "--- worker %d/%d log\n%s\n", w.replica, w.rank, Tail(ReadFile(WorkerLog(w))).c_str());
    }
    StopCluster();
    lab_.reset();  // deletes the namespaces
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string Endpoint(int port) const { return "tcp://" + lab_->Address("c") + ":" + std::to_string(port); }
  std::string WorkerLog(const Placement& w) const {
    return dir_ + "/worker-" + std::to_string(w.replica) + "-" + std::to_string(w.rank) + ".log";
  }

  std::string ClusterYaml() const {
    std::ostringstream y;
    y << "cluster:\n  name: multihost\n"
      << "endpoints:\n  client: " << Endpoint(kClientPort) << "\n  control: " << Endpoint(kClientPort + 1)
      << "\n  plans: " << Endpoint(kClientPort + 2) << "\n"
      << "model:\n  path: " << testing::Stories260kBin() << "\n  tokenizer: " << testing::Tok512Bin() << "\n"
      << "parallel:\n  replicas: 2\n  tensor: 2\n  cpu_transport: auto\n"
      << "workers:\n";
    for (const Placement& w : kWorkers)
      y << "  - {replica: " << w.replica << ", rank: " << w.rank << ", host: " << lab_->Address(w.host)
        << ", device: cpu, threads: 1}\n";
    y << "kv_cache:\n  block_size: 16\n  memory_mib: 16\n"
      << "scheduler:\n  policy: fused\n  max_step_tokens: 512\n  max_running: 64\n  pipeline_depth: 1\n"
      << "  failover_wait_ms: " << kFailoverWaitMs << "\n"
      << "heartbeat:\n  interval_ms: 500\n  timeout_ms: " << kHeartbeatTimeoutMs << "\n  step_timeout_ms: 60000\n"
      << "limits:\n  status_per_client_per_second: 1000\n"
      << "security:\n  mode: curve\n  coordinator_key: " << keys_ << "/coordinator.key\n"
      << "  coordinator_public_key: " << keys_ << "/coordinator.pub\n  worker_key: " << keys_
      << "/workers/worker.key\n  client_key: " << keys_ << "/admins/up.key\n  worker_keys: " << keys_
      << "/workers\n  client_keys: " << keys_ << "/clients\n  admin_keys: " << keys_ << "/admins\n";
    return y.str();
  }

  void StartCluster() {
    Result<ChildProcess> coordinator = ChildProcess::Spawn(
        lab_->InHost("c", {testing::CoordinatorBinary(), "--config", dir_ + "/cluster.yaml", "--endpoints-file",
                           dir_ + "/endpoints"}),
        "coordinator", dir_ + "/coordinator.log", /*own_process_group=*/true);
    ASSERT_TRUE(coordinator.ok()) << coordinator.status().ToString();
    processes_.push_back(std::move(coordinator).value());
    for (const Placement& w : kWorkers) {
      const std::string worker = ShellQuote({testing::WorkerBinary(), "--coordinator", Endpoint(kClientPort + 1),
                                             "--replica", std::to_string(w.replica), "--rank",
                                             std::to_string(w.rank), "--threads", "1", "--key",
                                             keys_ + "/workers/worker.key", "--coordinator-public-key",
                                             keys_ + "/coordinator.pub"});
      // The host's own /dev/shm; then systemd's Restart=on-failure, RestartSec=1. TERM
      // stops the worker, then the loop.
      const std::string loop = "mount --bind " + ShellQuote({dir_ + "/shm-" + w.host}) +
                               " /dev/shm || exit 3\n"
                               "trap 'kill -TERM $p 2>/dev/null; wait $p; exit 0' TERM\n"
                               "while :; do " + worker + " & p=$!; wait $p; rc=$?; [ $rc = 0 ] && break; "
                               "echo \"restart-loop: worker exited $rc; restarting in 1 s\"; sleep 1; done\n";
      Result<ChildProcess> child = ChildProcess::Spawn(lab_->InHost(w.host, {"/bin/sh", "-c", loop}),
                                                       "worker", WorkerLog(w), /*own_process_group=*/true);
      ASSERT_TRUE(child.ok()) << child.status().ToString();
      processes_.push_back(std::move(child).value());
    }
  }

  // Every process group this test started: TERM, a grace period, then KILL.
  void StopCluster() {
    for (ChildProcess& p : processes_)
      if (p.running()) kill(-p.pid(), SIGTERM);
    for (ChildProcess& p : processes_) {
      const pid_t group = p.pid();
      p.Stop(20s);
      kill(-group, SIGKILL);
    }
    processes_.clear();
  }

  // The flover CLI in the coordinator's namespace, with the admin key.
  std::string FloverInC(const std::string& args, const std::string& key = "admins/up") const {
    return lab_->ShellInHost("c", ShellQuote({testing::FloverBinary()}) + " " + args + " --endpoint " +
                                      Endpoint(kClientPort) + " --key " + keys_ + "/" + key + ".key --server-key " +
                                      keys_ + "/coordinator.pub");
  }

  // `flover status --json`; a null json when it fails.
  nlohmann::json ClusterStatus() const {
    const ShellRun run = RunShell(FloverInC("status --json --timeout 30 2>/dev/null"));
    if (run.exit_code != 0) return nullptr;
    return nlohmann::json::parse(run.output, nullptr, false);
  }
  int ReplicasReady() const {
    const nlohmann::json s = ClusterStatus();
    return s.is_object() && s.contains("replicas_ready") && s["replicas_ready"].is_number_integer()
               ? s["replicas_ready"].get<int>()
               : -1;
  }
  // Polls the status until `done` holds or `limit` passes; the time it took, or nullopt.
  template <typename Pred>
  std::optional<double> WaitFor(Pred done, std::chrono::seconds limit) const {
    const auto start = Clock::now();
    while (Clock::now() - start < limit) {
      if (done()) return Seconds(Clock::now() - start);
      std::this_thread::sleep_for(200ms);
    }
    return std::nullopt;
  }

  GenerateRun Generate(const std::vector<std::vector<int>>& prompts, int max_tokens, int index) const {
    std::string args = "generate --json --timeout 300 --connect-timeout 60 --max-tokens " + std::to_string(max_tokens);
    for (const std::vector<int>& p : prompts) {
      std::string ids;
      for (int id : p) {
        if (!ids.empty()) ids += ',';
        ids += std::to_string(id);
      }
      args += " --prompt-ids " + ids;
    }
    const std::string err = dir_ + "/generate-" + std::to_string(index) + ".err";
    const ShellRun run = RunShell(FloverInC(args + " 2>" + err, "clients/alice"));
    GenerateRun out;
    out.exit_code = run.exit_code;
    out.errors = ReadFile(err);
    std::istringstream lines(run.output);
    for (std::string line; std::getline(lines, line);) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object()) out.completions.push_back(std::move(j));
      else out.errors += "stdout: " + line + "\n";
    }
    return out;
  }

  // Each completion of `run` is the engine's for its prompt.
  static void ExpectExact(const GenerateRun& run, const std::vector<std::vector<int>>& expected) {
    EXPECT_EQ(run.exit_code, 0) << run.errors;
    ASSERT_EQ(run.completions.size(), expected.size()) << run.errors;
    for (size_t i = 0; i < expected.size(); ++i) {
      const nlohmann::json& c = run.completions[i];
      EXPECT_FALSE(c.contains("error")) << c.dump();
      EXPECT_EQ(c["tokens"].get<std::vector<int>>(), expected[i]) << "prompt " << i << ": " << c.dump();
    }
  }

  static std::vector<std::vector<int>> Prompts(int n, int seed) {
    std::vector<std::vector<int>> out;
    for (int i = 0; i < n; ++i) out.push_back({1, 20 + (seed * 37 + i * 11) % 480, 20 + (seed * 13 + i * 29) % 480});
    return out;
  }

  // How many times the restart loops started a worker again.
  int WorkerRestarts() const {
    int n = 0;
    for (const Placement& w : kWorkers) {
      const std::string log = ReadFile(WorkerLog(w));
      for (size_t at = log.find("restart-loop:"); at != std::string::npos; at = log.find("restart-loop:", at + 1)) ++n;
    }
    return n;
  }

  void WaitAllReady() {
    const std::optional<double> t = WaitFor([&] { return ReplicasReady() == 2; }, 300s);
    ASSERT_TRUE(t.has_value()) << "the cluster was not ready after 300 s: " << ClusterStatus().dump();
    std::printf("[timing] cluster ready over the veth network after %.1f s\n", *t);
  }

  std::unique_ptr<NetnsLab> lab_;
  std::string dir_;
  std::string keys_;
  std::vector<ChildProcess> processes_;
};

TEST_F(MultiHostTest, ServesExactTokensAcrossHosts) {
  WaitAllReady();
  // Replica 0's ranks are on two hosts: TCP; replica 1's share h2: shared memory.
  const nlohmann::json status = ClusterStatus();
  ASSERT_TRUE(status.is_object());
  const nlohmann::json workers = ReplicaField(status, 0, "workers");
  ASSERT_TRUE(workers.is_array() && workers.size() == 2) << status.dump();
  EXPECT_EQ(workers[0]["host"], lab_->Address("h1")) << status.dump();
  EXPECT_EQ(workers[1]["host"], lab_->Address("h2")) << status.dump();
  EXPECT_NE(ReadFile(WorkerLog(kWorkers[0])).find("tensor parallel over TCP"), std::string::npos)
      << ReadFile(WorkerLog(kWorkers[0]));
  EXPECT_NE(ReadFile(WorkerLog(kWorkers[2])).find("tensor parallel over shared memory"), std::string::npos)
      << ReadFile(WorkerLog(kWorkers[2]));

  const std::vector<std::vector<int>> prompts = Prompts(8, 1);
  const std::vector<std::vector<int>> expected = testing::EngineGreedy(prompts, 60);
  ExpectExact(Generate(prompts, 60, 0), expected);
  const nlohmann::json after = ClusterStatus();
  ASSERT_TRUE(after.is_object());
  // Both replicas served.
  EXPECT_GT(ReplicaField(after, 0, "tokens_generated"), 0) << after.dump();
  EXPECT_GT(ReplicaField(after, 1, "tokens_generated"), 0) << after.dump();
}

TEST_F(MultiHostTest, ServesExactTokensUnderOnePercentPacketLoss) {
  WaitAllReady();
  for (const char* host : {"h1", "h2"}) {
    const Status dropping = lab_->DropPackets(host, 0.01);
    ASSERT_TRUE(dropping.ok()) << dropping.ToString();
  }
  const std::vector<std::vector<int>> prompts = Prompts(16, 2);
  const std::vector<std::vector<int>> expected = testing::EngineGreedy(prompts, 120);
  const auto start = Clock::now();
  std::vector<std::future<GenerateRun>> runs;
  for (int c = 0; c < 4; ++c) {
    const std::vector<std::vector<int>> part(prompts.begin() + 4 * c, prompts.begin() + 4 * c + 4);
    runs.push_back(std::async(std::launch::async, [this, part, c] { return Generate(part, 120, c); }));
  }
  for (int c = 0; c < 4; ++c)
    ExpectExact(runs[c].get(), std::vector<std::vector<int>>(expected.begin() + 4 * c, expected.begin() + 4 * c + 4));
  uint64_t dropped = 0;
  for (const char* host : {"h1", "h2"}) {
    const Result<uint64_t> n = lab_->DroppedPackets(host);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (n.ok()) dropped += *n;
  }
  const nlohmann::json status = ClusterStatus();
  std::printf("[timing] 16 requests of 120 tokens under 1%% loss: %.1f s; %llu packets dropped; moved %s\n",
              Seconds(Clock::now() - start), static_cast<unsigned long long>(dropped),
              status.is_object() ? status["moved"].dump().c_str() : "?");
}

// Delay needs tc's netem qdisc; without the kernel's sch_netem this is skipped.
TEST_F(MultiHostTest, ServesExactTokensWithDelayedLinks) {
  if (const Status netem = lab_->ProbeNetem(); !netem.ok())
    GTEST_SKIP() << "SKIPPED LOUDLY: cannot emulate delay: tc qdisc netem is unavailable (the kernel lacks "
                    "sch_netem: \"Specified qdisc kind is unknown\"): "
                 << netem.ToString();
  WaitAllReady();
  for (const char* host : {"h1", "h2"}) {
    const Status delayed = lab_->Delay(host, 20);
    ASSERT_TRUE(delayed.ok()) << delayed.ToString();
  }
  const std::vector<std::vector<int>> prompts = Prompts(8, 4);
  const auto start = Clock::now();
  ExpectExact(Generate(prompts, 40, 0), testing::EngineGreedy(prompts, 40));
  std::printf("[timing] 8 requests of 40 tokens with 20 ms delay out of each host: %.1f s\n",
              Seconds(Clock::now() - start));
}

// Collects the runs of clients that submit batches in a loop until `stop`.
struct LoadClients {
  struct Batch {
    std::vector<std::vector<int>> prompts;
    GenerateRun run;
  };
  std::atomic<bool> stop{false};
  std::vector<std::future<std::vector<Batch>>> clients;
};

// h1's link goes down under load: replica 0 fails after the heartbeat timeout and its
// requests move to replica 1. Replica 0's ranks exit only after a second heartbeat
// timeout (each waits that long for its compute thread, stuck in a TCP collective with
// the lost peer), then their restart loops start them 1 s later; so the rejoin measured
// here is about 2 heartbeat timeouts + 1 s after the cut whenever the link comes back
// before that.
TEST_F(MultiHostTest, RequestsOfAPartitionedHostMoveAndItsWorkersRejoinAfterHealing) {
  WaitAllReady();
  constexpr int kTokens = 200;
  LoadClients load;
  for (int c = 0; c < 3; ++c)
    load.clients.push_back(std::async(std::launch::async, [this, &load, c] {
      std::vector<LoadClients::Batch> batches;
      for (int round = 0; !load.stop; ++round) {
        LoadClients::Batch b;
        b.prompts = Prompts(6, 100 * c + round);
        b.run = Generate(b.prompts, kTokens, 100 * c + round);
        batches.push_back(std::move(b));
      }
      return batches;
    }));
  // Partition h1 (replica 0's rank 0) while replica 0 has requests running.
  const std::optional<double> busy = WaitFor(
      [&] {
        const nlohmann::json s = ClusterStatus();
        return ReplicaField(s, 0, "running") > 0;
      },
      300s);
  EXPECT_TRUE(busy.has_value()) << "replica 0 never ran a request: " << ClusterStatus().dump();
  const auto cut = Clock::now();
  const Status down = lab_->SetLinkUp("h1", false);
  ASSERT_TRUE(down.ok()) << down.ToString();
  const std::optional<double> detected = WaitFor(
      [&] {
        const nlohmann::json s = ClusterStatus();
        const nlohmann::json state = ReplicaField(s, 0, "state");
        return state.is_string() && state != "ready";
      },
      300s);
  EXPECT_TRUE(detected.has_value()) << "replica 0 still ready 300 s after its host was cut off";
  std::this_thread::sleep_for(2s);  // requests keep coming while replica 0 is gone
  load.stop = true;
  std::vector<LoadClients::Batch> batches;
  for (auto& client : load.clients)
    for (LoadClients::Batch& b : client.get()) batches.push_back(std::move(b));
  size_t requests = 0;
  for (const LoadClients::Batch& b : batches) {
    ExpectExact(b.run, testing::EngineGreedy(b.prompts, kTokens));
    requests += b.prompts.size();
  }
  const nlohmann::json moved = ClusterStatus();
  ASSERT_TRUE(moved.is_object());
  EXPECT_GE(moved["moved"], 1) << "no request was moved off the partitioned replica: " << moved.dump();

  const Status up = lab_->SetLinkUp("h1", true);
  ASSERT_TRUE(up.ok()) << up.ToString();
  const std::optional<double> rejoined = WaitFor([&] { return ReplicasReady() == 2; }, 300s);
  ASSERT_TRUE(rejoined.has_value()) << "h1's worker did not rejoin within 300 s: " << ClusterStatus().dump();
  std::printf("[timing] partition of h1 under load: replica 0 failed %.1f s after the cut (heartbeat timeout %d ms); "
              "%zu requests, all exact, %s moved; healed: both replicas ready %.1f s after the link came up "
              "(%.1f s after the cut)\n",
              detected.value_or(-1), kHeartbeatTimeoutMs, requests, moved["moved"].dump().c_str(), *rejoined,
              Seconds(Clock::now() - cut));
  std::printf("[timing] worker restarts by the restart loops: %d\n", WorkerRestarts());
  // The healed replica serves again.
  const std::vector<std::vector<int>> prompts = Prompts(8, 7);
  ExpectExact(Generate(prompts, 60, 999), testing::EngineGreedy(prompts, 60));
  const nlohmann::json after = ClusterStatus();
  EXPECT_EQ(after["replicas_ready"], 2) << after.dump();
}

// The coordinator's eth0 drops every packet (iptables, a silent loss unlike the link
// down above: the workers' connection attempts time out rather than fail at once). The
// clients, in the coordinator's namespace, reach it by its local route as before. A
// request then fails after the heartbeat timeout (the workers are found gone) plus
// scheduler.failover_wait_ms (no replica came back).
TEST_F(MultiHostTest, ACoordinatorCutOffFromEveryWorkerFailsRequestsClearlyAndServesAfterHealing) {
  WaitAllReady();
  const Status cut = lab_->DropPackets("c", 1.0);
  ASSERT_TRUE(cut.ok()) << cut.ToString();
  const auto start = Clock::now();
  const std::vector<std::vector<int>> prompts = Prompts(4, 3);
  const GenerateRun failed = Generate(prompts, 40, 0);
  const double failed_after = Seconds(Clock::now() - start);
  EXPECT_EQ(failed.exit_code, 1) << failed.errors;
  ASSERT_EQ(failed.completions.size(), prompts.size()) << failed.errors;
  for (const nlohmann::json& c : failed.completions) {
    ASSERT_TRUE(c.contains("error")) << c.dump();
    EXPECT_NE(c["error"].get<std::string>().find("Unavailable"), std::string::npos) << c.dump();
  }
  std::printf("[timing] coordinator cut off: requests failed after %.1f s (heartbeat timeout %d ms + failover wait "
              "%d ms): %s\n",
              failed_after, kHeartbeatTimeoutMs, kFailoverWaitMs, failed.completions[0]["error"].dump().c_str());

  const Status healed = lab_->ClearDrops("c");
  ASSERT_TRUE(healed.ok()) << healed.ToString();
  const std::optional<double> ready = WaitFor([&] { return ReplicasReady() == 2; }, 300s);
  ASSERT_TRUE(ready.has_value()) << "the workers did not rejoin within 300 s: " << ClusterStatus().dump();
  std::printf("[timing] coordinator healed: both replicas ready %.1f s after (%.1f s after the cut)\n", *ready,
              Seconds(Clock::now() - start));
  std::printf("[timing] worker restarts by the restart loops: %d\n", WorkerRestarts());
  ExpectExact(Generate(prompts, 40, 1), testing::EngineGreedy(prompts, 40));
}

}  // namespace
}  // namespace flover
