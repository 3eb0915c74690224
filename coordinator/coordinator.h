// Coordinator: the event loop of flover-coordinator (see common/proto/protocol.md).
//
// One thread, the one in Run(), owns every socket:
//   client  ROUTER  ClientMessage in, ServerMessage out (submit, cancel, status)
//   control ROUTER  WorkerMessage in, CoordinatorMessage out (register, ready, store,
//                   heartbeats, failures)
//   plans   PUB     [replica/<i>/][CoordinatorMessage{plan}]
//   results PULL    WorkerMessage{step_result} from rank 0 of each replica
// and polls them with a timeout no longer than the heartbeat interval (and 100 ms, so
// that Stop() is noticed quickly).
//
// What it does:
//  * Admission (admission.h): bad requests get an Error at once and never reach a
//    worker. Requests submitted while no replica is ready yet (but some is starting)
//    are queued, bounded by scheduler.max_queued, and fail with Unavailable if no
//    replica becomes ready within the startup timeout. When every replica is unhealthy,
//    submissions wait the same way for one to come back (restarted by flover up,
//    systemd or Kubernetes) during scheduler.failover_wait_ms after the last failure
//    (the recovery window), and fail at once with Unavailable "no healthy replica"
//    outside it.
//  * Routing: each request goes to the ready replica with the fewest running + waiting
//    requests (ties: lowest index) and stays there.
//  * Policies (scheduler.policy; scheduler.h says what each does): the scheduler of each
//    replica runs the configured one. The loop passes it the time, and its poll timeout
//    also ends when a `dynamic` batch window closes, so a batch forms on time without
//    any other event.
//  * Steps: for each ready replica with work and fewer than scheduler.pipeline_depth
//    plans in flight, Scheduler::Schedule() -> publish; each StepResult ->
//    Scheduler::Apply() -> TokenEvent (stream) and Done to the clients.
//  * Health (Paranoid Pirate): Heartbeat to every live worker each interval_ms; a
//    worker silent for timeout_ms (before ready: the startup timeout,
//    max(timeout_ms, 120 s)), a WorkerFailure, a StepResult with an error, or a plan
//    without a result for step_timeout_ms makes its replica unhealthy: its live workers get
//    Shutdown, its requests get Error{Unavailable, "replica i is unhealthy: ..."}.
//    A worker whose control connection closes (its process exited or was killed, or
//    the network dropped it) fails its replica within milliseconds instead of at the
//    heartbeat timeout: a monitor of the control socket reports the disconnect, and the
//    coordinator then probes its live workers for kProbeFor with heartbeats; the
//    control ROUTER is ZMQ_ROUTER_MANDATORY, so a send to a peer that is gone fails
//    with EHOSTUNREACH ("worker r/k (pid p) disconnected").
//    Workers registering again restart the replica (plans count from seq 1 again).
//  * Clients that leave: the requests of a client whose connection closed are cancelled
//    (their KV blocks freed), so that a crashed or killed client does not keep the
//    replicas busy. A streaming request notices at its next token (the client ROUTER is
//    ZMQ_ROUTER_MANDATORY too); for the others, a monitor of the client socket reports
//    the disconnect and the coordinator sends Keepalive to the clients of requests that
//    expect no reply soon (not streaming, or no token yet) for kClientProbeFor.
//  * Stop: first a drain of up to `drain_timeout` (flover-coordinator --drain-timeout,
//    10 s by default; 0 in Create's default): new submissions get Error{Unavailable,
//    "the coordinator is shutting down"} while the requests in flight run to their end.
//    Then (or at once on a second Stop()) every live worker gets Shutdown, every request
//    still in flight gets Error{Unavailable}, and the sockets close.
// No exception escapes the loop: ZeroMQ errors are logged; malformed client messages
// get an Error, malformed worker messages are logged and ignored.
//
// The implementation is in three files: coordinator.cc (construction, the loop),
// coordinator_clients.cc (the client API) and coordinator_workers.cc (workers, health,
// steps).
//
// Thread-safety: Create() on any thread, then Run() on exactly one thread (the handover
// of the sockets is ordered by the thread start). Stop() from any thread or a signal
// handler. endpoints() is constant after Create().
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common/cluster_config.h"
#include "common/disconnect_monitor.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/tokenizer.h"
#include "coordinator/latency_window.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/replica.h"
#include "coordinator/request_table.h"
#include "flover.pb.h"

namespace flover {

class Coordinator {
 public:
  // Loads the tokenizer named by config.model.tokenizer (llama2.c format; none when
  // empty) and binds every endpoint of config.endpoints. Errors: those of the tokenizer
  // file (NotFound, Corruption, ...), InvalidArgument for an empty endpoint or a bad
  // layout, Unavailable when an endpoint cannot be bound (address in use, ...).
  static Result<std::unique_ptr<Coordinator>> Create(ClusterConfig config,
                                                     Clock::duration drain_timeout = Clock::duration::zero());
  ~Coordinator();

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The endpoints as bound: "*" ports resolved (ZMQ_LAST_ENDPOINT), a wildcard host
  // ("tcp://*:5555", bound as 0.0.0.0) replaced by this machine's host name. These are
  // what clients and workers connect to, what RegisterReply and the config YAML sent
  // to workers carry, and what the endpoints file holds.
  const EndpointsConfig& endpoints() const { return endpoints_; }

  // Runs the event loop until Stop(), then shuts down (see above). Call at most once.
  void Run();

  // Asks Run() to drain and return; a second call ends the drain at once. Thread-safe
  // and async-signal-safe.
  void Stop() { stops_.fetch_add(1, std::memory_order_relaxed); }

 private:
  Coordinator(ClusterConfig config, std::optional<Tokenizer> tokenizer, Clock::duration drain_timeout);
  // Whether the loop should end now; starts the drain at the first Stop().
  bool Stopping(Clock::time_point now);
  Status BindAll();

  // ---- the loop
  void PollOnce();
  void DrainClient();
  void DrainControl();
  void DrainResults();
  void Tick(Clock::time_point now);
  std::chrono::milliseconds PollTimeout(Clock::time_point now) const;
  void ShutdownAll(const std::string& reason);
  void CloseSockets();

  // ---- client API
  void HandleClient(const std::string& identity, const std::string& payload, Clock::time_point now);
  void HandleSubmit(const std::string& identity, const proto::SubmitRequest& submit, Clock::time_point now);
  void HandleCancel(const std::string& identity, const proto::CancelRequest& cancel, Clock::time_point now);
  proto::ClusterStatus BuildStatus(Clock::time_point now) const;
  // Sends the request to the least-loaded ready replica (Accepted, the first time), or
  // fails it. `generated`: tokens it generated on a replica that failed (Scheduler::Add).
  // REQUIRES: the request is in requests_ and some replica is ready.
  void Assign(uint64_t id, RequestParams params, std::vector<int> generated = {});
  void AdmitQueued();
  void ExpireQueued(Clock::time_point now);
  // Fails the queued requests, except those moved from a failed replica (their own
  // deadline fails them).
  void FailQueued(const Status& status);
  // The queued requests not moved from a failed replica wait until recovery_until_ at
  // most, and then fail with `why`.
  void HoldQueued(const std::string& why);
  void Deliver(const RequestEvent& event, Clock::time_point now);
  // A TokenEvent for the streaming request `t`: `token` (none for held-back text only)
  // and its text. False when its client is gone.
  bool SendTokenEvent(const TrackedRequest& t, std::optional<int> token, std::string text);
  // Sends Done / Error for a request and removes it from requests_.
  void Finish(uint64_t id, FinishReason reason, Clock::time_point now);
  void Fail(uint64_t id, const Status& status);
  // Takes the request out of its queue or scheduler (its workers drop it at the next
  // plan); the caller then finishes or fails it.
  void Withdraw(uint64_t id);
  // Withdraw, then Finish (as cancelled, or as stopped when a stop string ended its text).
  void Cancel(uint64_t id, Clock::time_point now, FinishReason reason = FinishReason::kCancelled);
  // Fails the requests whose SubmitRequest.timeout_ms has passed (DeadlineExceeded).
  void ExpireDeadlines(Clock::time_point now);
  // Cancels every request of a client whose connection is gone. `identity` is a copy:
  // callers pass a request's own `client`, which cancelling that request frees.
  void AbandonClient(std::string identity, Clock::time_point now);
  // Within the probe window after a client disconnect, every kProbeEvery: Keepalive to
  // the clients of requests that expect no reply soon; abandons those that are gone.
  void ProbeClients(Clock::time_point now);
  static constexpr auto kClientProbeFor = std::chrono::milliseconds(50);

  // ---- workers
  void HandleControl(const std::string& identity, const std::string& payload, Clock::time_point now);
  void HandleRegister(const std::string& identity, const proto::RegisterWorker& reg, Clock::time_point now);
  void HandleReady(WorkerSlot& slot, const proto::WorkerReady& ready);
  void HandleStepResult(const proto::StepResult& result, Clock::time_point now);
  void TryMakeReady(Replica& replica);
  void MarkUnhealthy(Replica& replica, const std::string& reason);
  // A request of the failed replica that `why` describes goes on from the tokens it had
  // generated: on another ready replica, or, when none is, after waiting in queued_ up
  // to scheduler.failover_wait_ms for one (its id is appended to `waiting`). False (the
  // caller fails it) when it already moved kMaxFailovers times, or no replica is ready
  // and failover_wait_ms is 0.
  bool Failover(TakenRequest& request, const std::string& why, std::vector<uint64_t>* waiting);
  static constexpr int kMaxFailovers = 2;
  void CheckHealth(Clock::time_point now);
  // Heartbeats to every live worker, each interval_ms, and every kProbeEvery while
  // probing; a worker that is no longer connected makes its replica unhealthy.
  void SendHeartbeats(Clock::time_point now);
  static constexpr auto kProbeEvery = std::chrono::milliseconds(10);
  static constexpr auto kProbeFor = std::chrono::milliseconds(250);
  void RunSteps(Clock::time_point now);
  WorkerSlot* FindWorker(const std::string& identity);

  // ---- helpers
  bool AnyReady() const;
  bool AnyStarting() const;
  int NQueued() const;  // queued_ + waiting in every ready replica
  // kv_capacity_tokens_ = the smallest pool of the ready replicas (unchanged when none
  // is ready: the last known one).
  void RefreshKvCapacity();
  std::string UnhealthySummary() const;
  // False when no client is connected with that identity (any more).
  bool SendToClient(const std::string& identity, const proto::ServerMessage& message);
  // False when no worker is connected with that identity (any more); a full queue
  // drops the message and counts as sent, like a slow network.
  bool SendToWorker(const std::string& identity, const proto::CoordinatorMessage& message);
  const Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }

  // Constant after construction.
  const ClusterConfig config_;
  const std::optional<Tokenizer> tokenizer_;
  const Clock::duration heartbeat_interval_;
  const Clock::duration heartbeat_timeout_;
  const Clock::duration startup_timeout_;
  const Clock::duration step_timeout_;
  // Constant after Create().
  EndpointsConfig endpoints_;
  std::string config_yaml_;  // ToYaml(config_ with endpoints_), sent in RegisterReply

  std::atomic<int> stops_{0};  // Stop() calls
  static_assert(std::atomic<int>::is_always_lock_free);
  const Clock::duration drain_timeout_;
  std::optional<Clock::time_point> drain_deadline_;  // set: draining

  // Owned by the Run() thread.
  zmq::context_t context_;
  zmq::socket_t client_;
  zmq::socket_t control_;
  zmq::socket_t plans_;
  zmq::socket_t results_;
  DisconnectMonitor control_monitor_;
  DisconnectMonitor client_monitor_;

  std::vector<Replica> replicas_;
  std::map<std::string, std::pair<int, int>> worker_by_identity_;  // live workers: (replica, rank)
  RendezvousStore store_;
  RequestTable requests_;
  std::deque<uint64_t> queued_;  // waiting for a ready replica, in submission order
  std::optional<proto::ModelInfo> model_;  // from the first replica that became ready
  ModelSpec spec_;                         // FromProto(*model_)
  int64_t kv_capacity_tokens_ = 0;  // KV slots; 0 until a replica was ready
  uint64_t next_request_id_ = 1;
  uint64_t completed_ = 0;
  uint64_t moved_ = 0;  // failovers
  uint64_t abandoned_ = 0;  // requests cancelled because their client left
  LatencyWindow latency_;   // of the requests that finished recently
  Clock::time_point started_{};
  Clock::time_point next_heartbeat_{};
  std::multimap<Clock::time_point, uint64_t> deadlines_;  // of requests with timeout_ms; stale entries skipped
  Clock::time_point recovery_until_{};  // the last failure + failover_wait_ms
  Clock::time_point probe_until_{};  // after a worker disconnect: heartbeats every kProbeEvery
  Clock::time_point client_probe_until_{};  // after a client disconnect: ProbeClients()
  Clock::time_point next_client_probe_{};
};

}  // namespace flover
