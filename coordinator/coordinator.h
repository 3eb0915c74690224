// Coordinator: flover-coordinator's ZeroMQ shell around its CoordinatorCore (every
// decision is there; see coordinator_core.h and common/proto/protocol.md).
//
// One thread, the one in Run(), owns every socket:
//   client  ROUTER  ClientMessage in, ServerMessage out (submit, cancel, status)
//   control ROUTER  WorkerMessage in, CoordinatorMessage out (register, ready, store,
//                   heartbeats, failures, and the step results of each replica's rank 0)
//   plans   PUB     [replica/<i>/][CoordinatorMessage{plan}], and [replica/<i>/] alone
//                   (a probe of a starting replica's topic)
// The loop polls them (and socket monitors that report closed connections) until the
// core's NextWake(), at most kMaxPoll so that Stop() is noticed; hands every message
// to the core with the time; calls Tick(); and sends the core's outbox. Both ROUTERs
// are ZMQ_ROUTER_MANDATORY: a send to a peer that is gone fails with EHOSTUNREACH, and
// the core is told (OnClientUnreachable / OnWorkerUnreachable). Sizes are bounded by
// the sockets, from the config's limits (docs/limits.md): a message over
// max_client_message_bytes (client) or max_worker_message_bytes (control)
// drops its connection (ZMQ_MAXMSGSIZE; on the plans socket, a subscription over 1 KiB
// does); a client with max_undelivered_per_client
// replies waiting (the client ROUTER's SNDHWM) is reported to the core
// (OnClientNotReading), which cuts it off; a worker that does not read has at most
// 100000 messages waiting, then loses them (logged).
// No exception escapes the loop: ZeroMQ errors are logged. Log lines that peers
// trigger are rate-limited (log_limiter.h).
//
// Thread-safety: Create() on any thread, then Run() on exactly one thread (the handover
// of the sockets is ordered by the thread start). Stop() from any thread or a signal
// handler. endpoints() is constant after Create().
#pragma once

#include <atomic>
#include <memory>

#include <zmq.hpp>

#include "common/cluster_config.h"
#include "common/disconnect_monitor.h"
#include "common/log_limiter.h"
#include "common/status.h"
#include "coordinator/coordinator_core.h"

namespace flover {

class Coordinator {
 public:
  // Binds every endpoint of config.endpoints and makes the core (CoordinatorCore::Create
  // errors). InvalidArgument for an empty endpoint, Unavailable when an endpoint cannot
  // be bound (address in use, ...).
  static Result<std::unique_ptr<Coordinator>> Create(ClusterConfig config,
                                                     Clock::duration drain_timeout = Clock::duration::zero());
  ~Coordinator();

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The endpoints as bound: "*" ports resolved (ZMQ_LAST_ENDPOINT), a wildcard host
  // ("tcp://*:5555", bound as 0.0.0.0) replaced by this machine's host name. These are
  // what clients and workers connect to, what RegisterReply carries, and what the
  // endpoints file holds.
  const EndpointsConfig& endpoints() const { return endpoints_; }

  // Runs the event loop until the core says it stopped, then shuts down (the core's
  // Shutdown, sent with a linger). Call at most once.
  void Run();

  // Asks Run() to drain and return; a second call ends the drain at once. Thread-safe
  // and async-signal-safe.
  void Stop() { stops_.fetch_add(1, std::memory_order_relaxed); }

 private:
  Coordinator();
  Status BindAll(const EndpointsConfig& wanted, const LimitsSettings& limits);
  void PollOnce();
  void DrainClient(Clock::time_point now);
  void DrainControl(Clock::time_point now);
  // Sends the core's outbox, then tells it which peers were gone, until it has nothing
  // more to say.
  void Flush(Clock::time_point now);
  void CloseSockets();

  // Constant after Create().
  EndpointsConfig endpoints_;

  std::atomic<int> stops_{0};  // Stop() calls
  static_assert(std::atomic<int>::is_always_lock_free);

  // Owned by the Run() thread.
  int stops_seen_ = 0;  // Stop() calls passed on to the core
  zmq::context_t context_;
  zmq::socket_t client_;
  zmq::socket_t control_;
  zmq::socket_t plans_;
  DisconnectMonitor control_monitor_;
  DisconnectMonitor client_monitor_;
  std::unique_ptr<CoordinatorCore> core_;
  // Log lines that peers trigger: CoordinatorCore::kPeerLogLines per second of each kind.
  LogLimiter client_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};   // bad client frames
  LogLimiter control_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};  // bad worker frames
  LogLimiter send_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};     // dropped sends
};

}  // namespace flover
