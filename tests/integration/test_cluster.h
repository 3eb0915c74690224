// TestCluster: a real Flover cluster for multi-process tests: writes a YAML config with
// random free ports ("tcp://127.0.0.1:*") and one single-threaded worker per rank, then
// starts it with LocalCluster (what `flover up` runs): the real flover-coordinator and
// flover-worker daemons as child processes, ready when every replica is. Everything
// stops (no process left) when it is destroyed.
//
// TextRequest, TokenRequest: the requests the tests submit through a RequestSession.
//
// EngineGreedy: the reference the clusters are checked against, the in-process engine
// (TP 1) running each request alone.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "client/child_process.h"
#include "client/client.h"
#include "client/local_cluster.h"
#include "client/request_session.h"
#include "common/request_params.h"
#include "common/status.h"

namespace flover::testing {

// How long a test waits for a status reply (Client::FetchStatus): one that must come,
// however loaded the machine.
inline constexpr std::chrono::seconds kStatusWait{30};

struct TestClusterOptions {
  std::string model;          // path or dummy:<preset>
  std::string tokenizer;      // optional
  std::string dtype = "auto";  // model.dtype
  std::string kv_dtype;        // kv_cache.dtype; empty: unset
  int replicas = 1;
  int tensor_parallel = 2;
  std::string cpu_transport = "auto";  // parallel.cpu_transport
  int heartbeat_interval_ms = 100;
  // Long: a test must never depend on a process being scheduled within a short time.
  // Deaths are found from closed connections and failed collectives, not by this.
  int heartbeat_timeout_ms = 30000;
  int step_timeout_ms = 60000;
  int max_step_tokens = 512;
  int block_size = 16;
  double kv_memory_mib = 16;
  int pipeline_depth = 1;
  std::string policy = "fused";  // scheduler.policy
  int max_running = 64;
  int batch_window_ms = 10;      // policy dynamic
  int max_batch = 32;            // policy dynamic
  int failover_wait_ms = 0;      // scheduler.failover_wait_ms (nothing restarts workers here)
  // limits.status_per_client_per_second: tests watch the cluster through status, some
  // every few milliseconds.
  int status_per_second = 1000;
  // More limits: (key, value) under `limits:` ("max_client_connections", 16).
  std::vector<std::pair<std::string, int64_t>> limits;
  // Serve HTTP too (endpoints.http on 127.0.0.1, port 0), with these `http:` settings
  // ("header_timeout_ms", 500).
  bool http = false;
  std::vector<std::pair<std::string, int64_t>> http_settings;
  // The daemons' output goes to files (coordinator_log()) instead of this process's.
  bool capture_logs = false;
  // Not empty: a secured cluster (security.mode curve) with the keys MakeClusterKeys
  // wrote into this folder.
  std::string keys_dir;
};

// DIR/NAME.key and DIR/NAME.pub for each name, by flover keygen's writer.
Status MakeKeys(const std::string& dir, const std::vector<std::string>& names);
// The keys of a secured test cluster, written into `dir` by MakeKeys:
// coordinator.{key,pub}; workers/worker.{key,pub} (the key pair its workers use);
// admins/up.{key,pub} (security.client_key: flover up's own client, an admin);
// clients/alice.{key,pub} (a client); other/eve.{key,pub} (admitted nowhere).
Status MakeClusterKeys(const std::string& dir);
// The credentials of `name` ("clients/alice", "admins/up", ...) of the keys in `dir`,
// pinning the coordinator's public key.
CurveClientKeys ClusterKeys(const std::string& dir, const std::string& name);

// The cluster file of `options`: random free ports on 127.0.0.1, one single-threaded
// worker per (replica, rank), and a security section when options.keys_dir is set.
std::string ClusterYaml(const TestClusterOptions& options);

// A test with the keys of a secured cluster (MakeClusterKeys) in a temporary folder,
// removed after it; Options() is a secured TP-2 stories260K cluster with those keys.
class SecuredClusterFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  TestClusterOptions Options() const;

  std::string dir_;
  std::string keys_;  // dir_/keys
};

class TestCluster {
 public:
  static Result<std::unique_ptr<TestCluster>> Start(const TestClusterOptions& options,
                                                    std::chrono::seconds ready_timeout = std::chrono::seconds(120));
  ~TestCluster();

  const std::string& client_endpoint() const { return cluster_->client_endpoint(); }
  // Worker (replica, rank); nullptr if absent.
  ChildProcess* worker(int replica, int rank) { return cluster_->worker(replica, rank); }
  ChildProcess* coordinator() { return cluster_->coordinator(); }
  std::string coordinator_log() const { return cluster_->coordinator_log(); }  // "" without capture_logs
  const std::string& control_endpoint() const { return cluster_->control_endpoint(); }
  const std::string& plans_endpoint() const { return cluster_->plans_endpoint(); }
  const std::string& http_endpoint() const { return cluster_->http_endpoint(); }  // "" without options.http

  Result<std::unique_ptr<Client>> Connect() const { return Client::Connect(client_endpoint()); }

  // Writes the cluster file of `options` over this cluster's and has the coordinator read
  // it again, starting the workers of added replicas (LocalCluster::Reload).
  Result<proto::ReloadReply> Reload(const TestClusterOptions& options);

 private:
  TestCluster() = default;

  std::string dir_;  // the config file; removed by the destructor
  std::unique_ptr<LocalCluster> cluster_;
};

// Requests for RequestSession::Submit: the prompt as text, or as token ids.
SessionRequest TextRequest(const std::string& id, const std::string& text, const StopParams& stop,
                           bool stream = true);
SessionRequest TokenRequest(const std::string& id, const std::vector<int>& prompt, const StopParams& stop,
                            bool stream = true);

struct EngineResult {
  std::vector<int> tokens;
  FinishReason finish = FinishReason::kNone;
  std::vector<TokenLogprobs> logprobs;  // one per token, when the request asked
};

// The in-process engine's tokens for each request of stories260K (Stories260kBin()),
// each run alone to its end, on one OpenMP thread. Aborts if the model cannot be loaded
// or a request is bad.
std::vector<EngineResult> EngineGreedy(const std::vector<RequestParams>& requests);
// The same for greedy prompts that stop at max_tokens (or EOS/BOS): the tokens only.
std::vector<std::vector<int>> EngineGreedy(const std::vector<std::vector<int>>& prompts, int max_tokens);

// `command` run by /bin/sh, stdout and stderr together.
struct ShellRun {
  int exit_code = -1;  // -1: did not exit normally
  std::string output;
};
ShellRun RunShell(const std::string& command);

// True while `pid` exists and is not a zombie.
bool ProcessAlive(int pid);

// Paths of the daemons built with the tests (compile definitions from CMake).
std::string CoordinatorBinary();
std::string WorkerBinary();
std::string FloverBinary();

}  // namespace flover::testing
