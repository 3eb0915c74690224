// WorkerDaemon: one tensor-parallel rank of one replica (protocol.md, "Worker life
// cycle"). Registers with the coordinator, receives the cluster config, loads and shards
// the model, connects the collectives through the coordinator's rendezvous store, then
// executes the replica's step plans: every rank runs the same fused forward pass and
// samples the same tokens; rank 0 sends the StepResults on its control connection.
//
// It stops loudly rather than diverge: a lost plan (sequence gap), an inconsistent plan,
// or a failed collective makes it report WorkerFailure and exit non-zero.
//
// Two threads (the zguide's pattern): the I/O thread (the caller of Start and Run) owns
// every TCP socket; it heartbeats, watches the coordinator, and hands plans to the
// compute thread over an inproc PAIR pipe, which returns serialized StepResults (or a
// failure) that it sends on the control connection. So a step of any length never
// silences the heartbeats: the coordinator tells a slow step (heartbeat.step_timeout_ms)
// from a dead worker (timeout_ms).
//
// The backend (model, KV cache, communicator, on the CPU or a GPU) comes from
// CreateBackend (backend.h); plans run through the PlanRunner (worker/engine/plan_runner.h)
// that the in-process engine uses too.
//
// Messages larger than limits.max_worker_message_bytes drop their connection
// (ZMQ_MAXMSGSIZE on the control DEALER and the plans SUB; see WorkerOptions for the
// bound before the config is known). A signal that interrupts a wait is not an error:
// Run() returns kExitOk once `stop` is set (SIGTERM/SIGINT). Log lines that the
// coordinator's messages trigger are rate-limited (log_limiter.h).
//
// Thread-safety: each socket belongs to one thread; the model state (backend, executor)
// to the compute thread while Run runs.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "common/cluster_config.h"
#include "common/curve_socket.h"
#include "common/protocol.h"
#include "common/status.h"
#include "worker/control_channel.h"
#include "worker/engine/executor.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/plan_runner.h"

namespace flover {

struct WorkerOptions {
  std::string coordinator;  // control endpoint
  // CURVE (the cluster's security.mode is curve): this worker's key pair and the
  // coordinator's public key, for the control connection and the plans subscription.
  std::optional<CurveClientKeys> curve;
  int replica = 0;
  int rank = 0;
  int threads = 0;          // 0: the config's, else OpenMP's default
  // The address the collectives bind and the coordinator shows. "": Start() takes the
  // local address of this host's route to `coordinator` (local_address.h), and logs it.
  std::string host;
  std::chrono::milliseconds register_timeout{30000};
  // The largest message accepted on the control connection until the coordinator's
  // config arrives (then its limits.max_worker_message_bytes holds, for the plans and
  // for the control connection's reconnects): the --config file's, else the default.
  int64_t max_message_bytes = LimitsSettings{}.max_worker_message_bytes;
};

// Exit codes of flover-worker.
inline constexpr int kExitOk = 0;
inline constexpr int kExitStartup = 2;   // registration, config, model or rendezvous failed
inline constexpr int kExitFailure = 3;   // a plan or a collective failed; WorkerFailure was sent
inline constexpr int kExitOrphaned = 4;  // the coordinator went silent
inline constexpr int kExitReplicaFailed = 5;  // shut down because another rank or a step failed

class WorkerDaemon {
 public:
  // Registers, loads, connects; returns once WorkerReady has been sent. Cancelled (or
  // another error) when `stop` turns true meanwhile (a signal): the caller exits 0.
  static Result<std::unique_ptr<WorkerDaemon>> Start(const WorkerOptions& options,
                                                     const std::atomic<bool>* stop = nullptr);

  // Executes plans until Shutdown, `stop`, or a failure. Returns an exit code.
  int Run(const std::atomic<bool>& stop);

  ~WorkerDaemon();

 private:
  explicit WorkerDaemon(const WorkerOptions& options);
  Status Register();
  Status Load();
  // Waits until something arrives on the plans socket (the coordinator probes the topic
  // of a starting replica), so that no plan can be published before this rank's
  // subscription is in place; or a Shutdown (kept in pending_shutdown_). Unavailable
  // after the register timeout.
  Status AwaitPlanTopic();
  // Once the plans reach this worker, sends WorkerReady for the backend_ just made
  // (loading started at t0).
  Status Ready(const std::string& description, std::chrono::steady_clock::time_point t0);
  // Compute thread: executes plans received on `pipe` until told to stop.
  void ComputeLoop(zmq::socket_t pipe);
  // Runs one plan; on rank 0 `result` gets the serialized StepResult.
  Status ExecutePlan(const proto::StepPlan& plan, std::string* result);
  // Tells the compute thread to stop and joins it; false if it did not stop in time (it
  // is stuck in a collective whose peer is gone).
  bool StopCompute(zmq::socket_t& pipe);
  void ReportFailure(const std::string& message);
  std::string Name() const;
  bool stopping() const;  // *stop_ (Start)

  WorkerOptions options_;
  const std::atomic<bool>* stop_ = nullptr;  // Start's; may be null
  zmq::context_t context_;
  std::unique_ptr<ControlChannel> control_;
  std::unique_ptr<zmq::socket_t> plans_;    // SUB
  ClusterConfig config_;
  std::string plan_topic_;
  std::string plans_endpoint_;
  std::optional<proto::Shutdown> pending_shutdown_;  // received before Run()

  std::unique_ptr<ForwardBackend> backend_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<PlanRunner> runner_;
  PlanSequence plan_sequence_;                    // compute thread
  std::atomic<uint64_t> last_plan_seq_{0};        // published for heartbeats
  std::thread compute_thread_;
  int compute_threads_ = 1;                       // OpenMP threads of the compute thread
  std::atomic<bool> compute_exited_{false};

  proto::WorkerMessage step_result_;  // per-plan scratch (compute thread)
};

}  // namespace flover
