#include "tests/integration/test_cluster.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

namespace flover::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string CoordinatorBinary() { return FLOVER_COORDINATOR_BIN; }
std::string WorkerBinary() { return FLOVER_WORKER_BIN; }
std::string FloverBinary() { return FLOVER_BIN; }

Result<std::unique_ptr<TestCluster>> TestCluster::Start(const TestClusterOptions& o,
                                                        std::chrono::seconds ready_timeout) {
  std::unique_ptr<TestCluster> c(new TestCluster());
  char tmpl[] = "/tmp/flover-test-XXXXXX";
  if (!mkdtemp(tmpl)) return IoError("mkdtemp failed");
  c->dir_ = tmpl;
  c->config_path_ = c->dir_ + "/cluster.yaml";
  {
    std::ofstream yaml(c->config_path_);
    yaml << "cluster:\n  name: test\n"
         << "endpoints:\n  client: tcp://127.0.0.1:*\n  control: tcp://127.0.0.1:*\n"
         << "  plans: tcp://127.0.0.1:*\n  results: tcp://127.0.0.1:*\n"
         << "model:\n  path: " << o.model << "\n";
    if (!o.tokenizer.empty()) yaml << "  tokenizer: " << o.tokenizer << "\n";
    yaml << "parallel:\n  replicas: " << o.replicas << "\n  tensor: " << o.tensor_parallel << "\n"
         << "kv_cache:\n  block_size: " << o.block_size << "\n  memory_mib: " << o.kv_memory_mib << "\n"
         << "scheduler:\n  max_step_tokens: " << o.max_step_tokens << "\n  pipeline_depth: " << o.pipeline_depth
         << "\n"
         << "heartbeat:\n  interval_ms: " << o.heartbeat_interval_ms << "\n  timeout_ms: " << o.heartbeat_timeout_ms
         << "\n";
  }
  const std::string endpoints_file = c->dir_ + "/endpoints.json";
  FLOVER_ASSIGN_OR_RETURN(ChildProcess coordinator,
                          ChildProcess::Spawn({CoordinatorBinary(), "--config", c->config_path_, "--endpoints-file",
                                               endpoints_file},
                                              "flover-coordinator"));
  c->coordinator_ = std::make_unique<ChildProcess>(std::move(coordinator));
  const auto deadline = std::chrono::steady_clock::now() + ready_timeout;
  for (;; std::this_thread::sleep_for(20ms)) {
    if (auto exit = c->coordinator_->PollExit()) return Unavailable("coordinator exited at start-up: " + *exit);
    if (std::chrono::steady_clock::now() > deadline) return Unavailable("coordinator did not write its endpoints");
    std::ifstream in(endpoints_file);
    if (!in) continue;
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object() || !j.contains("client") || !j.contains("control")) continue;
    c->client_endpoint_ = j["client"];
    c->control_endpoint_ = j["control"];
    break;
  }
  for (int r = 0; r < o.replicas; ++r) {
    for (int k = 0; k < o.tensor_parallel; ++k) {
      FLOVER_ASSIGN_OR_RETURN(
          ChildProcess w, ChildProcess::Spawn({WorkerBinary(), "--coordinator", c->control_endpoint_, "--replica",
                                               std::to_string(r), "--rank", std::to_string(k), "--threads", "1"},
                                              "worker " + std::to_string(r) + "/" + std::to_string(k)));
      c->workers_.push_back({r, k, std::make_unique<ChildProcess>(std::move(w))});
    }
  }
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, c->Connect());
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) return Unavailable("cluster not ready in time");
    for (Worker& w : c->workers_)
      if (auto exit = w.process->PollExit()) return Unavailable(w.process->name() + " exited at start-up: " + *exit);
    Result<proto::ClusterStatus> s = client->FetchStatus(1000ms);
    if (!s.ok()) continue;
    bool ready = s->replicas_size() == o.replicas;
    for (const auto& r : s->replicas()) ready = ready && r.state() == "ready";
    if (ready) break;
    std::this_thread::sleep_for(50ms);
  }
  return c;
}

ChildProcess* TestCluster::worker(int replica, int rank) {
  for (Worker& w : workers_)
    if (w.replica == replica && w.rank == rank) return w.process.get();
  return nullptr;
}

std::vector<int> TestCluster::pids() const {
  std::vector<int> out;
  if (coordinator_) out.push_back(coordinator_->pid());
  for (const Worker& w : workers_) out.push_back(w.process->pid());
  return out;
}

void TestCluster::Stop() {
  if (coordinator_) coordinator_->Stop(5000ms);
  for (Worker& w : workers_) w.process->Stop(5000ms);
}

TestCluster::~TestCluster() {
  Stop();
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

}  // namespace flover::testing
