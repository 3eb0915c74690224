// CoordinatorCore: every decision of flover-coordinator, as a state machine without
// sockets, threads or clocks (see common/proto/protocol.md for the protocol).
//
// Events go in, each with the time `now`: a client message, a worker message (control
// socket, step results included), a connection that closed (a socket monitor saw it,
// without saying whose), a peer that a send found gone, a client whose replies the
// shell cannot queue any more (it does not read them), a stop request, and Tick() for
// what is due by time. What the core wants sent collects in an Outbox that
// the caller takes with TakeOutbox(): the ZeroMQ shell (coordinator.h) sends it, and
// reports each peer that a send found gone back with On*Unreachable(); tests read it
// and drive time by hand, so every decision below is a deterministic table test.
//
// What it decides:
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
//    replica runs the configured one; NextWake() includes the moment a `dynamic` batch
//    window closes, so a batch forms on time without any other event.
//  * Steps: for each ready replica with work and fewer than scheduler.pipeline_depth
//    plans in flight, Scheduler::Schedule() -> a plan in the outbox; each StepResult ->
//    Scheduler::Apply() -> TokenEvent (stream) and Done to the clients. The core, not
//    the workers, decides when a request ends (max_tokens, the context, stop ids, EOS):
//    a result that disagrees with that rule, lacks an output for a request that sampled
//    in its plan, or answers a plan that was not published or was answered already
//    makes the replica unhealthy (Scheduler::Apply says what it checks), as does a token
//    outside the vocabulary.
//  * Who may say what: a message is taken only from the connection (ROUTER identity)
//    that owns it. A step result only from the registered rank 0 of a ready replica,
//    naming that replica; a WorkerReady or WorkerFailure only from a registered worker,
//    naming its own replica and rank; StoreSet/Get only from a registered worker (keys
//    are namespaced by its replica). Anything else from a registered worker, and any
//    message but register and heartbeat from a connection that is not one, is dropped
//    and counted (ClusterStatus.rejected_messages), logged at a limited rate. So no one
//    else can fail a replica, spend its supervisor's restarts, or write into a stream.
//  * Registration: a rank that is live under another connection is refused (with
//    `retry`) while that connection answers: the core sends the live worker a heartbeat
//    at once, and when the send finds it gone (OnWorkerUnreachable) the replica fails and
//    the rank's next registration is admitted.
//  * Health (Paranoid Pirate): Heartbeat to every live worker each interval_ms; a
//    worker silent for timeout_ms (before ready: the startup timeout,
//    max(timeout_ms, 120 s)), a WorkerFailure, a StepResult with an error, or a plan
//    without a result for step_timeout_ms makes its replica unhealthy: its live workers get
//    Shutdown, its requests move on to another replica from their generated tokens
//    (or wait for one, or fail with Error{Unavailable, "replica i is unhealthy: ..."}).
//    A closed control connection (OnWorkerConnectionClosed) starts kProbeFor of
//    heartbeats every kProbeEvery; the worker whose send fails (OnWorkerUnreachable)
//    fails its replica ("worker r/k (pid p) disconnected") within milliseconds
//    instead of at the heartbeat timeout. Workers registering again restart the
//    replica (plans count from seq 1 again).
//  * Plan subscriptions: PUB/SUB drops what is published before a subscription arrives.
//    While a replica is starting and some worker of it is registered but not ready,
//    its plan topic gets a probe every kProbeEvery (Outbox::topic_probes); a worker
//    reports ready only once a probe reached it, so no plan is published before every
//    rank of the replica can receive it.
//  * Clients that leave: a client that a send finds gone (OnClientUnreachable) has its
//    requests cancelled and their KV blocks freed. A streaming request finds out at its
//    next token; after a closed client connection (OnClientConnectionClosed), the
//    clients of requests that expect no reply soon (not streaming, or no token yet) get
//    Keepalive every kProbeEvery for kClientProbeFor.
//  * Limits (the config's `limits:`, docs/limits.md): admission refuses sizes over them
//    and more than max_requests_per_client requests in flight per connection; a reply
//    never echoes a client_request_id longer than max_request_id_bytes. A client whose
//    replies the shell can no longer queue (max_undelivered_per_client wait for it:
//    OnClientNotReading) is cut off: its requests are cancelled and nothing more is
//    queued for it (ClusterStatus.clients_cut_off counts it once). Each connection gets
//    at most status_per_client_per_second status replies (then Error ResourceExhausted,
//    at no cost), and the ClusterStatus is built at most once per kStatusEvery: a
//    request that comes sooner waits for the next build, which answers every request
//    waiting, so a status is never older than its request and a flood of them costs
//    one build per kStatusEvery (one per role waiting: see Roles). Log lines that peers trigger are rate-limited
//    (log_limiter.h): kPeerLogLines per second of each kind.
//  * Roles: a client's status shows the workers' hosts and pids, and the replicas'
//    failure reasons, only to admins (ClientRole).
//  * Stop: the first RequestStop() starts a drain of up to `drain_timeout`: new
//    submissions get Error{Unavailable, "the coordinator is shutting down"} while the
//    requests in flight run to their end; stopped() turns true once none is left, at
//    the drain's end, or at a second RequestStop(). Then Shutdown() fails what is still
//    in flight and tells every live worker to shut down.
// Malformed client messages get an Error; malformed worker messages are rejected (as
// above); nothing a peer sends stops the core.
//
// The implementation is in three files: coordinator_core.cc (construction, time,
// stop, status), coordinator_core_clients.cc (the client API) and
// coordinator_core_workers.cc (workers, health, steps).
//
// Metrics (metrics.h, docs/metrics.md): requests ended, failed and refused, first steps
// and plans are recorded where the core handles them, and its gauges (replicas,
// workers, requests, KV blocks, steps) are published after every Tick().
//
// Thread-safety: none; one thread drives a core. Only metrics() may be read from other
// threads (its Metrics is thread-safe).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/cluster_config.h"
#include "common/log_limiter.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/tokenizer.h"
#include "coordinator/client_limiter.h"
#include "coordinator/client_role.h"
#include "coordinator/latency_window.h"
#include "coordinator/metrics.h"
#include "coordinator/outbox.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/replica.h"
#include "coordinator/request_table.h"
#include "flover.pb.h"

namespace flover {

class CoordinatorCore {
 public:
  static constexpr auto kProbeEvery = std::chrono::milliseconds(10);
  static constexpr auto kProbeFor = std::chrono::milliseconds(250);
  static constexpr auto kClientProbeFor = std::chrono::milliseconds(50);
  static constexpr auto kMinStartupTimeout = std::chrono::seconds(120);
  static constexpr int kMaxFailovers = 2;
  static constexpr auto kStatusEvery = std::chrono::milliseconds(50);
  static constexpr int kPeerLogLines = 10;  // per second and kind

  // Loads the tokenizer named by config.model.tokenizer (llama2.c format; none when
  // empty); its errors (NotFound, Corruption, ...) and InvalidArgument when
  // config.Validate() fails. `bound`: the endpoints as the shell bound them (what
  // workers are told).
  static Result<std::unique_ptr<CoordinatorCore>> Create(ClusterConfig config, EndpointsConfig bound,
                                                         Clock::duration drain_timeout, Clock::time_point now);

  CoordinatorCore(const CoordinatorCore&) = delete;
  CoordinatorCore& operator=(const CoordinatorCore&) = delete;

  // ---- events
  // `frames`: the frames of one message on the client socket after the identity (one:
  // a serialized ClientMessage). `role`: what the connection's key may see (the shell
  // takes it from the ZAP user id; client_role.h).
  void OnClientMessage(const std::string& identity, ClientRole role, std::span<const std::string_view> frames,
                       Clock::time_point now);
  // A message on the control socket from the connection `identity`: `frames` after the
  // identity (one: a serialized WorkerMessage, step results included).
  void OnWorkerMessage(const std::string& identity, std::span<const std::string_view> frames, Clock::time_point now);
  // Some connection of the control / client socket closed (whose is not known).
  void OnWorkerConnectionClosed(Clock::time_point now);
  void OnClientConnectionClosed(Clock::time_point now);
  // A send to this peer found it gone.
  void OnWorkerUnreachable(const std::string& identity, Clock::time_point now);
  void OnClientUnreachable(const std::string& identity, Clock::time_point now);
  // A send to this client found limits.max_undelivered_per_client replies already
  // waiting for it: it does not read them. Its requests are cancelled, and the messages
  // for it in the outbox dropped.
  void OnClientNotReading(const std::string& identity, Clock::time_point now);
  // Health checks, heartbeats, probes, expiries, and the next plans of every replica.
  // Call after every batch of events, and at NextWake() at the latest.
  void Tick(Clock::time_point now);

  // The latest time Tick() must be called (heartbeats, probes, deadlines, a dynamic
  // batch window, the drain's end); `now` when something is due.
  Clock::time_point NextWake(Clock::time_point now) const;

  // ---- stop
  // The first call starts the drain; a second ends it.
  void RequestStop(Clock::time_point now);
  // True once the caller should stop the loop (see the header comment).
  bool stopped(Clock::time_point now) const;
  // Fails every request in flight (Unavailable: the coordinator is shutting down) and
  // sends Shutdown{reason} to every live worker.
  void Shutdown(const std::string& reason);

  // ---- live reconfiguration (config_reload.h says what may change)
  struct Reconfigured {
    uint64_t generation = 0;
    std::string summary;  // DescribeLiveChange's
  };
  // Applies `next`, in which CheckLiveChange(config(), next) found nothing that cannot
  // change live. Replicas added start empty and take their workers' registrations.
  // Replicas removed (the highest indices) are `retiring`: they take no new requests,
  // run those they have for up to the drain timeout, then those left move on to other
  // replicas from their generated tokens (as on a failure, without counting as one;
  // queued up to failover_wait_ms when none is ready), and their workers are told to
  // shut down cleanly (Shutdown without replica_failed: they exit 0). Adding a replica
  // back before it is gone cancels its retirement. scheduler.* applies to every replica
  // from its next step (Scheduler::UpdateSettings). The generation counts up by one.
  Reconfigured Reconfigure(const ClusterConfig& next, Clock::time_point now);
  // Answers a client's reload request (taken from Outbox::reloads) with what the shell
  // made of it: ReloadReply, or the Error.
  void AnswerReload(const std::string& identity, const Result<Reconfigured>& result);
  uint64_t config_generation() const { return config_generation_; }

  // ---- output and observation
  // What was decided since the last call, in order.
  Outbox TakeOutbox();
  // The status as `role` may see it: for kClient without the workers' hosts and pids
  // and without failure reasons (which name them); a replica's error then only says
  // that the reason is shown to admins.
  proto::ClusterStatus BuildStatus(Clock::time_point now, ClientRole role) const;
  int n_requests() const { return requests_.size(); }
  uint64_t n_status_builds() const { return n_status_builds_; }  // BuildStatus calls for status requests
  const EndpointsConfig& endpoints() const { return endpoints_; }
  const ClusterConfig& config() const { return config_; }
  // Updated by this core's thread, readable from any (metrics.h).
  const Metrics& metrics() const { return metrics_; }
  // The model the cluster serves, as the first replica that became ready reported it
  // (its chat_template included); nullptr until one did.
  const proto::ModelInfo* served_model() const { return model_ ? &*model_ : nullptr; }

 private:
  CoordinatorCore(ClusterConfig config, EndpointsConfig bound, std::optional<Tokenizer> tokenizer,
                  Clock::duration drain_timeout, Clock::time_point now);

  // ---- client API
  void HandleSubmit(const std::string& identity, ClientRole role, const proto::SubmitRequest& submit,
                    Clock::time_point now);
  void HandleCancel(const std::string& identity, const proto::CancelRequest& cancel, Clock::time_point now);
  // A status request: refused beyond the client's rate, else answered with the next
  // build (at once when none was made within kStatusEvery).
  void HandleStatus(const std::string& identity, ClientRole role, Clock::time_point now);
  // Builds the status once and sends it to every client waiting for one.
  void SendStatus(Clock::time_point now);
  // An Error for a refused message about request `cid` of this connection. An Error
  // that names a request ends it for its client, so when `cid` is in flight there (a
  // second submission of its id, an unreadable cancel) the Error leaves the id empty,
  // its message names it, and the request goes on.
  void Refuse(const std::string& identity, const std::string& cid, const Status& status);
  // Sends the request to the least-loaded ready replica (Accepted, the first time), or
  // fails it. `generated`: tokens it generated on a replica that failed (Scheduler::Add).
  // REQUIRES: the request is in requests_ and some replica is ready.
  void Assign(uint64_t id, RequestParams params, std::vector<int> generated = {});
  void AdmitQueued();
  void ExpireQueued(Clock::time_point now);
  // Fails the queued requests, except those moved from a failed replica (their own
  // deadline fails them).
  void FailQueued(const Status& status, std::string_view for_clients = {});
  // The queued requests not moved from a failed replica wait until recovery_until_ at
  // most, and then fail with `why`.
  void HoldQueued(const std::string& why);
  void Deliver(const RequestEvent& event, Clock::time_point now);
  // A TokenEvent for the streaming request `t`: `token` (none for held-back text only)
  // and its text.
  void SendTokenEvent(const TrackedRequest& t, std::optional<int> token, std::string text);
  // Sends Done / Error for a request and removes it from requests_.
  void Finish(uint64_t id, FinishReason reason, Clock::time_point now);
  // `for_clients`, when given, replaces the message for a client that is no admin: the
  // message names workers (pids, failure reasons), which only admins may see.
  void Fail(uint64_t id, const Status& status, std::string_view for_clients = {});
  // Takes the request out of its queue or scheduler (its workers drop it at the next
  // plan); the caller then finishes or fails it.
  void Withdraw(uint64_t id);
  // Withdraw, then Finish (as cancelled, or as stopped when a stop string ended its text).
  void Cancel(uint64_t id, Clock::time_point now, FinishReason reason = FinishReason::kCancelled);
  // Fails the requests whose SubmitRequest.timeout_ms has passed (DeadlineExceeded).
  void ExpireDeadlines(Clock::time_point now);
  // Cancels every request of a client whose connection is gone. `identity` is a copy:
  // callers may pass a field of a request this cancels.
  void AbandonClient(std::string identity, Clock::time_point now);
  // Cancels every request of `identity` and drops what waits for it in the outbox (it
  // cannot be delivered); the number of requests cancelled.
  int ForgetClient(const std::string& identity, Clock::time_point now);
  // Within the probe window after a client disconnect, every kProbeEvery: Keepalive to
  // the clients of requests that expect no reply soon.
  void ProbeClients(Clock::time_point now);

  // A reload request: admins only (else PermissionDenied), at the status requests' rate
  // (else ResourceExhausted); queued for the shell.
  void HandleReload(const std::string& identity, ClientRole role, Clock::time_point now);

  // ---- workers
  void HandleRegister(const std::string& identity, const proto::RegisterWorker& reg, Clock::time_point now);
  void HandleReady(WorkerSlot& slot, const proto::WorkerReady& ready, Clock::time_point now);
  // A step result from `sender`, the registered rank 0 of its ready replica.
  void HandleStepResult(const WorkerSlot& sender, const proto::StepResult& result, Clock::time_point now);
  // Drops a worker message its sender may not send: counted, logged at a limited rate.
  void Reject(const std::string& why, Clock::time_point now);
  // Answers a message from a connection that is no registered live worker: it must
  // start again and register (Shutdown{replica_failed}).
  void TellToRegister(const std::string& identity);
  void TryMakeReady(Replica& replica, Clock::time_point now);
  void MarkUnhealthy(Replica& replica, const std::string& reason, Clock::time_point now);
  // A request of the failed replica that `why` describes goes on from the tokens it had
  // generated: on another ready replica, or, when none is, after waiting in queued_ up
  // to scheduler.failover_wait_ms for one (its id is appended to `waiting`). False (the
  // caller fails it) when it already moved kMaxFailovers times, or no replica is ready
  // and failover_wait_ms is 0.
  bool Failover(TakenRequest& request, const std::string& why, std::vector<uint64_t>* waiting);
  // True when the request has nothing left to generate (its workers never reported the
  // finish): there is nothing to move.
  bool NothingLeft(const TakenRequest& request) const;
  // A request taken from its replica goes on from its generated tokens: on a ready
  // replica, or queued (its id appended to `waiting`) until `wait_until`, failing then
  // with `why`.
  void GoOn(TakenRequest& request, const std::string& why, Clock::time_point wait_until,
            std::vector<uint64_t>* waiting);
  void CheckHealth(Clock::time_point now);
  // Heartbeats to every live worker, each interval_ms, and every kProbeEvery while
  // probing.
  void SendHeartbeats(Clock::time_point now);
  // Every kProbeEvery: a probe on the plan topic of each starting replica with a
  // registered worker that is not ready yet.
  void ProbePlanTopics(Clock::time_point now);
  void RunSteps(Clock::time_point now);
  WorkerSlot* FindWorker(const std::string& identity);

  // ---- retiring replicas (Reconfigure)
  // Removes each retiring replica with nothing left to run, or whose drain time passed;
  // then drops the removed replicas from the end of replicas_.
  void RetireReplicas(Clock::time_point now);
  // Tells the replica's workers to shut down cleanly, moves its requests on, forgets it.
  void RemoveReplica(Replica& replica, Clock::time_point now);
  // A request of a removed replica goes on from its generated tokens: on a ready replica,
  // or queued for one (`waiting`) up to failover_wait_ms. False (the caller fails it)
  // when it has nothing left to generate.
  bool MoveOn(TakenRequest& request, Clock::time_point now, std::vector<uint64_t>* waiting);
  // The SchedulerConfig fields that follow scheduler.* (Scheduler::UpdateSettings's).
  void ApplySchedulerSettings(SchedulerConfig& sc) const;
  // Index >= config_.replicas: removed by a reload, until it is gone.
  bool Retiring(const Replica& r) const { return r.index() >= config_.replicas; }
  // Ready and not retiring: may take new requests.
  bool Accepting(const Replica& r) const { return r.state() == Replica::State::kReady && !Retiring(r); }

  // ---- helpers
  bool AnyReady() const;  // some replica is Accepting
  bool AnyStarting() const;
  bool draining() const { return stop_requests_ > 0; }
  int NQueued() const;  // queued_ + waiting in every ready replica
  // kv_capacity_tokens_ = the smallest pool of the ready replicas (unchanged when none
  // is ready: the last known one).
  void RefreshKvCapacity();
  std::string UnhealthySummary() const;
  // The gauges of metrics_ (after every Tick).
  void PublishMetrics();
  // What a client that is no admin reads instead of UnhealthySummary().
  static constexpr std::string_view kNoHealthyReplicaForClients =
      "no healthy replica (the reasons, which name the workers, are shown to admins)";
  void SendToClient(const std::string& identity, proto::ServerMessage message);
  void SendToWorker(const std::string& identity, proto::CoordinatorMessage message);
  const Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }
  // client_request_id as replies echo it (admission.h, EchoedRequestId).
  std::string Echoed(const std::string& client_request_id) const;

  // Constant after construction, but for what Reconfigure changes (replicas, workers,
  // scheduler, config_proto_).
  ClusterConfig config_;
  std::optional<Tokenizer> tokenizer_;
  Clock::duration heartbeat_interval_;
  Clock::duration heartbeat_timeout_;
  Clock::duration startup_timeout_;
  Clock::duration step_timeout_;
  Clock::duration drain_timeout_;
  EndpointsConfig endpoints_;  // as bound
  proto::ClusterConfig config_proto_;  // config_ with endpoints_, sent in RegisterReply
  Clock::time_point started_{};

  uint64_t config_generation_ = 1;
  std::map<int, Clock::time_point> retire_deadlines_;  // retiring replicas not removed yet
  std::set<int> removed_;  // retiring replicas removed, until they leave the end of replicas_
  Outbox outbox_;
  int stop_requests_ = 0;
  std::optional<Clock::time_point> drain_deadline_;  // set: draining
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
  uint64_t moved_ = 0;      // failovers
  uint64_t abandoned_ = 0;  // requests cancelled because their client left
  uint64_t rejected_ = 0;   // worker messages dropped (Reject)
  LogLimiter rejected_log_{kPeerLogLines, std::chrono::seconds(1)};
  LogLimiter refused_log_{kPeerLogLines, std::chrono::seconds(1)};  // registrations refused or repeated
  LatencyWindow latency_;   // of the requests that finished recently
  Metrics metrics_;
  Metrics::Gauges gauges_;  // PublishMetrics()'s, kept to reuse its storage
  Clock::time_point next_heartbeat_{};
  std::multimap<Clock::time_point, uint64_t> deadlines_;  // of requests with timeout_ms; stale entries skipped
  Clock::time_point recovery_until_{};  // the last failure + failover_wait_ms
  Clock::time_point probe_until_{};  // after a worker disconnect: heartbeats every kProbeEvery
  Clock::time_point next_topic_probe_{};
  bool probing_topics_ = false;  // the last ProbePlanTopics() found a replica to probe
  Clock::time_point client_probe_until_{};  // after a client disconnect: ProbeClients()
  Clock::time_point next_client_probe_{};

  // Limits (docs/limits.md).
  ClientLimiter client_limiter_;
  Clock::time_point next_client_prune_{};
  uint64_t clients_cut_off_ = 0;
  struct StatusWait {
    std::string identity;
    ClientRole role;
  };
  std::vector<StatusWait> status_waiting_;  // clients whose status goes out with the next build
  Clock::time_point next_status_build_{};    // the earliest time of the next build
  uint64_t n_status_builds_ = 0;
  // Log lines that peers trigger, kPeerLogLines per second of each kind: refused client
  // messages and requests; clients that left or were cut off. (Worker messages: the
  // rejected_log_ and refused_log_ above.)
  LogLimiter client_log_{kPeerLogLines, std::chrono::seconds(1)};
  LogLimiter leaving_log_{kPeerLogLines, std::chrono::seconds(1)};
};

}  // namespace flover
