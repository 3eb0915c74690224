// Coordinator: flover-coordinator's ZeroMQ shell around its CoordinatorCore (every
// decision is there; see coordinator_core.h and common/proto/protocol.md).
//
// One thread, the one in Run(), owns every socket:
//   client  ROUTER  ClientMessage in, ServerMessage out (submit, cancel, status)
//   control ROUTER  WorkerMessage in, CoordinatorMessage out (register, ready, store,
//                   heartbeats, failures, and the step results of each replica's rank 0)
//   plans   PUB     [replica/<i>/][CoordinatorMessage{plan}], and [replica/<i>/] alone
//                   (a probe of a starting replica's topic)
//   http_   ROUTER  in-process (kHttpGateway): the coordinator's own HTTP server
//                   (coordinator/http, on its own thread, when endpoints.http is set)
//                   is a client over it; its messages reach the core as from the peer
//                   kHttpPeerPrefix + its routing id, with ClientRole::kClient
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
// Security (docs/security.md): every connection of the client, control and plans
// sockets is admitted by the ZAP handler (zap_handler.h), polled in the same loop: in
// domain "client" the client socket, in domain "worker" the others. With `security.mode:
// curve` they are CURVE servers with the coordinator's key pair, and only the keys of
// security.*_keys get in, each on its side; without a security section every endpoint
// must be on loopback (Create fails otherwise). The client socket's open connections are
// counted (its monitor's accepted and closed connections), and a client handshake beyond
// limits.max_client_connections is refused. Each client message goes to the core with
// the role of its connection's key (ClientRole); a message whose key is no longer
// admitted (keys reloaded) is answered with PermissionDenied (client) or dropped
// (worker). ReloadKeys() (SIGHUP) reads the admitted keys again; until they read
// without error the old ones stay. It also reads the cluster file again (SetConfigFile)
// and applies what may change live (config_reload.h), as a client's `reload` does.
//
// Thread-safety: Create() on any thread, then Run() on exactly one thread (the handover
// of the sockets is ordered by the thread start). Stop() from any thread or a signal
// handler. endpoints() is constant after Create().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <zmq.hpp>

#include "common/cluster_config.h"
#include "common/curve_keys.h"
#include "common/disconnect_monitor.h"
#include "common/log_limiter.h"
#include "common/status.h"
#include "coordinator/coordinator_core.h"
#include "coordinator/http/http_server.h"
#include "coordinator/zap_handler.h"

namespace flover {

class Coordinator {
 public:
  // The in-process endpoint of the HTTP server's client socket (in the coordinator's context).
  static constexpr const char* kHttpGateway = "inproc://flover-http";

  // Binds every endpoint of config.endpoints and makes the core (CoordinatorCore::Create
  // errors). InvalidArgument for an empty endpoint, for a non-loopback endpoint without a
  // security section (CheckEndpointExposure; for a host name, the address it bound), and
  // for key files that are missing or malformed (PermissionDenied for a key pair others
  // may read); Unavailable when an endpoint cannot be bound (address in use, ...).
  static Result<std::unique_ptr<Coordinator>> Create(ClusterConfig config,
                                                     Clock::duration drain_timeout = Clock::duration::zero());
  ~Coordinator();

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The endpoints as bound: "*" ports (and endpoints.http's port 0) resolved (ZMQ_LAST_ENDPOINT), a wildcard host
  // ("tcp://*:5555", bound as 0.0.0.0) replaced by this machine's host name. These are
  // what clients and workers connect to, what RegisterReply carries, and what the
  // endpoints file holds.
  const EndpointsConfig& endpoints() const { return endpoints_; }

  // The core's metrics and health (metrics.h), readable from any thread while this
  // Coordinator lives (/metrics and /health).
  const Metrics& metrics() const { return core_->metrics(); }

  // Runs the event loop until the core says it stopped, then shuts down (the core's
  // Shutdown, sent with a linger). Call at most once.
  void Run();

  // Asks Run() to drain and return; a second call ends the drain at once. Thread-safe
  // and async-signal-safe.
  void Stop() { stops_.fetch_add(1, std::memory_order_relaxed); }

  // Asks Run() to read the admitted keys (security.worker_keys, client_keys, admin_keys)
  // again, and the cluster file when SetConfigFile named one (Reload). Thread-safe and
  // async-signal-safe.
  void ReloadKeys() { reloads_.fetch_add(1, std::memory_order_relaxed); }

  // The cluster file a reload reads again, and the config as read from it at start
  // (before the coordinator adjusted anything): what the next version is compared with
  // (CheckLiveChange). Without it a reload reads the keys only. Call before Run().
  void SetConfigFile(std::string path, ClusterConfig as_read);

 private:
  Coordinator();
  Status Secure(const ClusterConfig& config);
  Status BindAll(const ClusterConfig& config);
  // Starts the HTTP server of endpoints.http (none when it is empty).
  Status StartHttp(const ClusterConfig& config);
  void PollOnce();
  void AnswerZap();
  // Reads the client monitor: counts the open client connections, and tells the core
  // when one closed.
  void DrainClientMonitor(Clock::time_point now);
  // SIGHUP and `flover reload`: the keys (mode curve), then the cluster file, whose
  // live changes go to the core (CoordinatorCore::Reconfigure). Logged; the result
  // (the file's errors or a change that cannot apply live: nothing changes) for the reply.
  Result<CoordinatorCore::Reconfigured> Reload();
  // Reads the admitted keys again; an error keeps the old ones (and is returned).
  Status ReloadAdmittedKeys();
  void DrainClient(Clock::time_point now);
  void DrainControl(Clock::time_point now);
  void DrainHttp(Clock::time_point now);
  // Sends the core's outbox, then tells it which peers were gone, until it has nothing
  // more to say.
  void Flush(Clock::time_point now);
  void CloseSockets();

  // Constant after Create().
  EndpointsConfig endpoints_;

  SecuritySettings security_;
  int max_client_connections_ = 0;

  std::atomic<int> stops_{0};  // Stop() calls
  std::atomic<int> reloads_{0};  // ReloadKeys() calls
  static_assert(std::atomic<int>::is_always_lock_free);
  // The core's metrics once it exists, for the HTTP thread (GET /health, /metrics); the
  // HTTP server starts before the core, which needs its bound endpoint.
  std::atomic<const Metrics*> published_metrics_{nullptr};
  // The chat template the HTTP API renders when model.chat_template is not set: the
  // served model's own (GGUF metadata), once a replica reported it. Written by the Run()
  // thread (PublishChatTemplate), read by the HTTP thread.
  mutable std::mutex chat_template_mu_;
  std::string model_chat_template_;  // guarded by chat_template_mu_
  bool chat_template_published_ = false;  // Run() thread only
  void PublishChatTemplate();

  // Owned by the Run() thread.
  int stops_seen_ = 0;  // Stop() calls passed on to the core
  int reloads_seen_ = 0;
  std::string config_path_;    // SetConfigFile
  ClusterConfig file_config_;  // the cluster file's config in force, as read
  AccessList keys_;                        // mode curve: who is admitted
  std::optional<CurveKeyPair> own_key_;    // mode curve
  std::set<uint32_t> client_connections_;  // file descriptors of the open client connections
  LogLimiter refused_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};  // refused handshakes
  LogLimiter revoked_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};  // revoked worker keys
  zmq::context_t context_;
  ZapHandler zap_;  // before the sockets: bound before they bind, closed after them
  zmq::socket_t client_;
  zmq::socket_t control_;
  zmq::socket_t plans_;
  zmq::socket_t http_;  // in-process ROUTER of the HTTP server's requests
  DisconnectMonitor control_monitor_;
  DisconnectMonitor client_monitor_;
  std::unique_ptr<CoordinatorCore> core_;
  std::optional<Tokenizer> http_tokenizer_;          // the HTTP API's (LoadModelTokenizer)
  std::unique_ptr<http::HttpServer> http_server_;    // stopped before the sockets close
  // Log lines that peers trigger: CoordinatorCore::kPeerLogLines per second of each kind.
  LogLimiter client_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};   // bad client frames
  LogLimiter control_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};  // bad worker frames
  LogLimiter send_log_{CoordinatorCore::kPeerLogLines, std::chrono::seconds(1)};     // dropped sends
};

}  // namespace flover
