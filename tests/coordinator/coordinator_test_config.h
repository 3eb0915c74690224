// What the coordinator's tests share: the cluster they run (one YAML config from a few
// options), the model the scripted workers report, and the messages scripted workers and
// clients send. Used by the decision tests (core_harness.h) and the shell tests
// (coordinator_fixture.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/cluster_config.h"
#include "flover.pb.h"

namespace flover::coordinator_testing {

struct Options {
  int replicas = 1;
  int tensor = 1;
  int interval_ms = 50;
  int timeout_ms = 1000;
  int step_timeout_ms = 60000;
  int pipeline_depth = 1;  // lock-step: these tests follow plans and results one by one
  int max_queued = 16;
  int max_step_tokens = 16;
  int failover_wait_ms = 0;  // most tests want a failed replica's requests to fail at once
  std::string policy = "fused";
  int batch_window_ms = 10;
  std::chrono::milliseconds drain{0};  // a stop ends the loop at once
  std::string tokenizer = "";
  // The config's limits; status is asked for often by the tests (every 10 ms while they
  // wait for a state), so its rate is raised; the tests of that limit lower it.
  LimitsSettings limits = [] {
    LimitsSettings l;
    l.status_per_client_per_second = 1000;
    return l;
  }();
  SecuritySettings security;  // none: plain text on loopback
};

ClusterConfig TestConfig(const Options& o);
proto::ModelInfo TestModel(int vocab = 512);

// A scripted worker's messages (pid: the one it reports).
proto::WorkerMessage RegisterMessage(int replica, int rank, int pid);
proto::WorkerMessage HeartbeatMessage(int replica, int rank);
proto::WorkerMessage ReadyMessage(int replica, int rank, const proto::ModelInfo& model, int kv_blocks);
// The result of `plan` with the given (request id, token, finish) outputs.
using Outputs = std::vector<std::tuple<uint64_t, int, proto::FinishReason>>;
proto::StepResult ResultOf(const proto::StepPlan& plan, const Outputs& outs);

// A scripted client's messages.
proto::ClientMessage SubmitMessage(const std::string& id, const std::vector<int>& prompt, int max_tokens,
                                   bool stream);
proto::ClientMessage CancelMessage(const std::string& id);

}  // namespace flover::coordinator_testing
