// The real flover-coordinator and flover-worker processes as a supervisor sees them:
// SIGTERM stops a registered worker with exit 0 (a stop, not a failure that asks for a
// restart) and the coordinator with exit 0 after its drain; and both raise their
// open-file soft limit to the hard limit at start-up (docs/limits.md), which this test
// checks in /proc after starting them with a lower soft limit. Every process is reaped.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "client/child_process.h"
#include "client/client.h"
#include "coordinator/endpoints_file.h"
#include "tests/integration/test_cluster.h"
#include "tests/lowered_file_limit.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::kStatusWait;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "exit 0", "signal Killed", ...; "" when it did not exit within `timeout`.
std::string WaitExit(ChildProcess& process, std::chrono::seconds timeout) {
  for (auto deadline = std::chrono::steady_clock::now() + timeout;; std::this_thread::sleep_for(20ms)) {
    if (std::optional<std::string> exit = process.PollExit()) return *exit;
    if (std::chrono::steady_clock::now() > deadline) return "";
  }
}

// The "Max open files" soft and hard limits of process `pid`, as /proc shows them.
std::pair<std::string, std::string> OpenFileLimits(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream fields(line.substr(std::string("Max open files").size()));
    std::string soft, hard;
    fields >> soft >> hard;
    return {soft, hard};
  }
  return {"?", "?"};
}

TEST(DaemonProcessTest, SigtermStopsAWorkerAndTheCoordinatorWithExitZero) {
  const std::string dir = ::testing::TempDir() + "/daemon_process_test_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  testing::TestClusterOptions o;
  o.model = testing::Stories260kBin();
  o.tokenizer = testing::Tok512Bin();
  o.tensor_parallel = 1;
  std::ofstream(dir + "/cluster.yaml") << testing::ClusterYaml(o);
  const std::string coordinator_log = dir + "/coordinator.log";
  const std::string worker_log = dir + "/worker.log";

  std::optional<ChildProcess> coordinator;
  std::optional<ChildProcess> worker;
  rlim_t lowered = 0;
  {
    testing::LoweredFileLimit lower;
    lowered = lower.soft();
    Result<ChildProcess> c =
        ChildProcess::Spawn({testing::CoordinatorBinary(), "--config", dir + "/cluster.yaml", "--endpoints-file",
                             dir + "/endpoints.json", "--drain-timeout", "300"},
                            "flover-coordinator", coordinator_log);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    coordinator.emplace(std::move(c).value());
  }
  Result<EndpointsConfig> endpoints = Unavailable("no endpoints file");
  for (auto deadline = std::chrono::steady_clock::now() + 60s; !endpoints.ok(); std::this_thread::sleep_for(10ms)) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << ReadFile(coordinator_log);
    if (std::filesystem::exists(dir + "/endpoints.json")) endpoints = ReadEndpointsFile(dir + "/endpoints.json");
  }
  auto start_worker = [&] {
    testing::LoweredFileLimit lower;
    Result<ChildProcess> w = ChildProcess::Spawn({testing::WorkerBinary(), "--coordinator", endpoints->control,
                                                  "--replica", "0", "--rank", "0", "--threads", "1"},
                                                 "flover-worker", worker_log);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    if (w.ok()) worker.emplace(std::move(w).value());
  };
  Result<std::unique_ptr<Client>> client = Client::Connect(endpoints->client);
  ASSERT_TRUE(client.ok());
  auto wait_ready = [&] {
    for (auto deadline = std::chrono::steady_clock::now() + 120s;; std::this_thread::sleep_for(20ms)) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      Result<proto::ClusterStatus> s = (*client)->FetchStatus(kStatusWait);
      if (s.ok() && AllReplicasReady(*s)) return true;
    }
  };
  start_worker();
  ASSERT_TRUE(worker.has_value());
  ASSERT_TRUE(wait_ready()) << ReadFile(worker_log);

  // Both raised the soft limit they inherited to the hard limit, and said so.
  for (ChildProcess* p : {&*coordinator, &*worker}) {
    const auto [soft, hard] = OpenFileLimits(p->pid());
    EXPECT_EQ(soft, hard) << p->name() << " kept the soft limit " << soft;
  }
  EXPECT_NE(ReadFile(coordinator_log)
                .find("open files (RLIMIT_NOFILE): soft limit " + std::to_string(lowered) + " raised to"),
            std::string::npos)
      << ReadFile(coordinator_log);

  // A registered, idle worker: SIGTERM interrupts its wait, which is no failure.
  worker->Signal(SIGTERM);
  EXPECT_EQ(WaitExit(*worker, 60s), "exit 0") << ReadFile(worker_log);

  // Another worker takes the rank; the coordinator gets SIGTERM while a request streams:
  // it drains (the request ends with Done), tells the worker to stop, and both exit 0.
  start_worker();
  ASSERT_TRUE(wait_ready()) << ReadFile(worker_log);
  StopParams stop;
  stop.max_tokens = 400;
  stop.ignore_eos = true;
  ASSERT_TRUE((*client)->Submit("story", "Once upon a time", {}, SamplingParams(), stop, /*stream=*/true).ok());
  std::optional<proto::ServerMessage> m;
  for (auto deadline = std::chrono::steady_clock::now() + 60s; !(m && (m->has_token() || m->has_done()));) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no token";
    Result<std::optional<proto::ServerMessage>> r = (*client)->Receive(100ms);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    m = *r;
  }
  coordinator->Signal(SIGTERM);
  for (auto deadline = std::chrono::steady_clock::now() + 60s; !m->has_done();) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the request in flight did not finish in the drain";
    Result<std::optional<proto::ServerMessage>> r = (*client)->Receive(100ms);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (*r) m = *r;
    ASSERT_FALSE(m->has_error()) << m->error().message();
  }
  EXPECT_EQ(m->done().completion_tokens(), 400);
  EXPECT_EQ(WaitExit(*coordinator, 60s), "exit 0") << ReadFile(coordinator_log);
  EXPECT_EQ(WaitExit(*worker, 60s), "exit 0") << ReadFile(worker_log);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flover
