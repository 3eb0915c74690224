// The ZeroMQ shell of flover-coordinator. See coordinator.h.
#include "coordinator/coordinator.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <exception>
#include <iterator>
#include <string_view>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include "common/cluster_config_reader.h"
#include "common/curve_socket.h"
#include "common/protocol.h"
#include "coordinator/config_reload.h"
#include "coordinator/openai/exchange.h"
#include "coordinator/service_notifier.h"
#include "worker/model/model_tokenizer.h"

namespace flover {
namespace {

constexpr auto kMaxPoll = std::chrono::milliseconds(100);
constexpr int kMaxDrain = 256;  // messages read per socket per loop turn
constexpr int kShutdownLingerMs = 500;
// How long HTTP clients get to receive the errors of a shutdown before their connections close.
constexpr std::chrono::milliseconds kHttpShutdownGrace{2000};
// Messages queued for one worker that does not read them (clients: the config's
// limits.max_undelivered_per_client).
constexpr int kMaxQueuedPerWorker = 100000;
// What a plans subscriber may send: subscriptions to a topic "replica/<i>/".
constexpr int64_t kMaxSubscriptionBytes = 1024;
constexpr auto kErrorBackoff = std::chrono::milliseconds(10);  // no hot loop on a persistent error

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "127.0.0.1";
  return name;
}

// "tcp://0.0.0.0:5555" (a "*" bind) cannot be connected to from another machine: name
// this host instead.
std::string Advertised(const std::string& endpoint) {
  static const std::string kTcp = "tcp://";
  if (endpoint.rfind(kTcp, 0) != 0) return endpoint;
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon < kTcp.size()) return endpoint;
  const std::string host = endpoint.substr(kTcp.size(), colon - kTcp.size());
  if (host != "0.0.0.0" && host != "[::]" && host != "*") return endpoint;
  return kTcp + HostName() + endpoint.substr(colon);
}

// Binds `endpoint`; the address bound, as workers and clients reach it. Without a
// security section, an address off loopback (a host name that resolved to a LAN address,
// an interface name) is InvalidArgument: the socket has read nothing yet, and the caller
// closes it. With `mode: insecure` it is a warning.
Result<std::string> Bind(zmq::socket_t& socket, const std::string& endpoint, const char* name,
                         const ClusterConfig& config) {
  const std::string key = std::string("endpoints.") + name;
  if (endpoint.empty()) return InvalidArgument(key + " is empty");
  std::string bound;
  try {
    socket.bind(endpoint);
    bound = socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Unavailable(key + ": cannot bind " + endpoint + ": " + e.what());
  }
  if (!IsLoopbackEndpoint(bound)) {
    if (config.security.mode == SecurityMode::kNone) {
      return ConfigError(config.source, key,
                         "'" + endpoint + "' bound " + bound +
                             ", which is not a loopback address, and the config has no security section: add a "
                             "security section (docs/security.md) or bind 127.0.0.1");
    }
    if (config.security.mode == SecurityMode::kInsecure) {
      spdlog::warn("{}: {} is reachable from the network in plain text (security.mode: insecure): whoever reaches it "
                   "can connect, read and forge messages (docs/security.md)",
                   key, bound);
    }
  }
  return Advertised(bound);
}

enum class Sent { kOk, kGone, kFull };

// [identity][payload] on a ROUTER_MANDATORY socket. Never blocks: kGone when that peer
// is gone, kFull when as many messages as the socket's SNDHWM already wait for it (it
// does not read them; this one is not sent).
Sent SendRouted(zmq::socket_t& router, const std::string& identity, const std::string& payload) {
  const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(identity), zmq::buffer(payload)};
  try {
    if (!zmq::send_multipart(router, frames, zmq::send_flags::dontwait)) return Sent::kFull;
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) throw;
    return Sent::kGone;
  }
  return Sent::kOk;
}

}  // namespace

// ---------------------------------------------------------------- construction

Result<std::unique_ptr<Coordinator>> Coordinator::Create(ClusterConfig config, Clock::duration drain_timeout) {
  FLOVER_RETURN_IF_ERROR(config.Validate());  // before its limits configure the sockets
  FLOVER_RETURN_IF_ERROR(CheckEndpointExposure(config));
  std::unique_ptr<Coordinator> coordinator;
  try {
    coordinator.reset(new Coordinator());
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot start the ZAP handler: ") + e.what());
  }
  FLOVER_RETURN_IF_ERROR(coordinator->Secure(config));
  FLOVER_RETURN_IF_ERROR(coordinator->BindAll(config));
  FLOVER_RETURN_IF_ERROR(coordinator->StartHttp(config));
  FLOVER_ASSIGN_OR_RETURN(coordinator->core_, CoordinatorCore::Create(std::move(config), coordinator->endpoints_,
                                                                      drain_timeout, Clock::now()));
  coordinator->published_metrics_.store(&coordinator->core_->metrics(), std::memory_order_release);
  return coordinator;
}

Coordinator::Coordinator()
    : context_(1),
      zap_(context_),
      client_(context_, zmq::socket_type::router),
      control_(context_, zmq::socket_type::router),
      plans_(context_, zmq::socket_type::pub),
      http_(context_, zmq::socket_type::router),
      control_monitor_(context_),
      client_monitor_(context_) {}

Coordinator::~Coordinator() { CloseSockets(); }

Status Coordinator::Secure(const ClusterConfig& config) {
  security_ = config.security;
  max_client_connections_ = config.limits.max_client_connections;
  if (security_.mode != SecurityMode::kCurve) return Status::Ok();
  const std::string prefix = config.source.empty() ? "" : config.source + ": ";
  Result<CurveKeyPair> own = LoadCurveKeyPair(security_.coordinator_key);
  if (!own.ok()) return own.status().WithContext(prefix + "security.coordinator_key");
  Result<CurvePublicKey> pinned = LoadCurvePublicKey(security_.coordinator_public_key);
  if (!pinned.ok()) return pinned.status().WithContext(prefix + "security.coordinator_public_key");
  if (*pinned != own->public_key) {
    return InvalidArgument(prefix + "security.coordinator_public_key: " + security_.coordinator_public_key +
                           " is not the public key of security.coordinator_key " + security_.coordinator_key +
                           ": the workers and clients that pin it would be refused");
  }
  Result<AccessList> keys = AccessList::Load(security_);
  if (!keys.ok()) return keys.status().WithContext(config.source);
  keys_ = std::move(keys).value();
  own_key_ = std::move(own).value();
  return Status::Ok();
}

Status Coordinator::BindAll(const ClusterConfig& config) {
  const EndpointsConfig& wanted = config.endpoints;
  const LimitsSettings& limits = config.limits;
  // Who may connect: the ZAP handler (bound already) admits each connection of these
  // three, in their domain; with CURVE only after the peer proved its key.
  const std::pair<zmq::socket_t*, const char*> admitted[] = {
      {&client_, kClientDomain}, {&control_, kWorkerDomain}, {&plans_, kWorkerDomain}};
  for (const auto& [socket, domain] : admitted)
    FLOVER_RETURN_IF_ERROR(own_key_ ? ApplyCurveServer(*socket, *own_key_, domain) : ApplyZapDomain(*socket, domain));
  try {
    for (zmq::socket_t* s : {&client_, &control_, &plans_}) s->set(zmq::sockopt::linger, 0);
    // Larger messages drop their connection; a client that leaves this many replies
    // unread is cut off (Flush).
    client_.set(zmq::sockopt::maxmsgsize, int64_t{limits.max_client_message_bytes});
    client_.set(zmq::sockopt::sndhwm, limits.max_undelivered_per_client);
    control_.set(zmq::sockopt::sndhwm, kMaxQueuedPerWorker);
    control_.set(zmq::sockopt::maxmsgsize, int64_t{limits.max_worker_message_bytes});
    // A send to a peer that is gone fails (EHOSTUNREACH) instead of vanishing.
    client_.set(zmq::sockopt::router_mandatory, true);
    control_.set(zmq::sockopt::router_mandatory, true);
    control_monitor_.Watch(control_, "control");
    client_monitor_.Watch(client_, "client", ZMQ_EVENT_ACCEPTED);  // open connections are counted
    plans_.set(zmq::sockopt::sndhwm, 100000);
    plans_.set(zmq::sockopt::maxmsgsize, kMaxSubscriptionBytes);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot configure sockets: ") + e.what());
  }
  FLOVER_ASSIGN_OR_RETURN(endpoints_.client, Bind(client_, wanted.client, "client", config));
  FLOVER_ASSIGN_OR_RETURN(endpoints_.control, Bind(control_, wanted.control, "control", config));
  FLOVER_ASSIGN_OR_RETURN(endpoints_.plans, Bind(plans_, wanted.plans, "plans", config));
  try {
    // The HTTP server's queue is never full (it drains it at once and bounds its
    // connections itself): a full queue would cut every HTTP client off together.
    http_.set(zmq::sockopt::linger, 0);
    http_.set(zmq::sockopt::sndhwm, 0);
    http_.set(zmq::sockopt::rcvhwm, 0);
    http_.set(zmq::sockopt::maxmsgsize, int64_t{limits.max_client_message_bytes});
    http_.set(zmq::sockopt::router_mandatory, true);
    http_.bind(kHttpGateway);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot bind the HTTP server's in-process socket: ") + e.what());
  }
  return Status::Ok();
}

Status Coordinator::StartHttp(const ClusterConfig& config) {
  if (config.endpoints.http.empty()) return Status::Ok();
  const std::optional<HttpAddress> address = ParseHttpEndpoint(config.endpoints.http);
  if (!address) return ConfigError(config.source, "endpoints.http", "'" + config.endpoints.http + "' is not http://host:port");
  Result<std::optional<Tokenizer>> tokenizer = LoadModelTokenizer(config.model.tokenizer, config.model.path);
  if (!tokenizer.ok()) return tokenizer.status().WithContext(config.source + ": model.tokenizer");
  http_tokenizer_ = std::move(tokenizer).value();
  const openai::ServedModel model{.id = ServedModelName(config.model),
                                  .tokenizer = http_tokenizer_ ? &*http_tokenizer_ : nullptr,
                                  .chat_template = config.model.chat_template,
                                  .request_timeout_ms = static_cast<uint32_t>(config.http.request_timeout_ms),
                                  .max_n = config.http.max_n};
  const int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  http::HttpServerOptions options;
  options.host = address->host;
  options.port = address->port;
  options.settings = config.http;
  options.context = &context_;
  options.gateway_endpoint = kHttpGateway;
  options.start_exchange = [this, model](std::string_view path, std::string_view body) {
    if (path != "/v1/chat/completions") return openai::StartCompletions(body, model);
    if (!model.chat_template.empty()) return openai::StartChatCompletions(body, model);
    openai::ServedModel with_template = model;  // the model's own template, once known
    {
      const std::lock_guard<std::mutex> lock(chat_template_mu_);
      with_template.chat_template = model_chat_template_;
    }
    return openai::StartChatCompletions(body, with_template);
  };
  options.models_body = [model, created] { return openai::ModelsBody(model, created); };
  // The core is made after the server (it needs the bound endpoints): until it is,
  // /health says so and /metrics is empty.
  options.health = [this]() -> std::pair<bool, std::string> {
    const Metrics* metrics = published_metrics_.load(std::memory_order_acquire);
    return metrics ? metrics->Health() : std::pair<bool, std::string>{false, "the coordinator is starting"};
  };
  options.metrics_text = [this] {
    const Metrics* metrics = published_metrics_.load(std::memory_order_acquire);
    return metrics ? metrics->RenderPrometheus() : std::string();
  };
  Result<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Start(std::move(options));
  if (!server.ok()) return config.source.empty() ? server.status() : server.status().WithContext(config.source);
  http_server_ = std::move(server).value();
  endpoints_.http = http_server_->endpoint();
  return Status::Ok();
}

void Coordinator::CloseSockets() {
  http_server_.reset();  // its socket is in context_
  try {
    control_monitor_.Close();
    client_monitor_.Close();
    for (zmq::socket_t* s : {&client_, &control_, &plans_, &http_})
      if (s->handle() != nullptr) s->close();
    zap_.Close();
    context_.close();
  } catch (const zmq::error_t& e) {
    spdlog::error("closing sockets: {}", e.what());
  }
}

// ---------------------------------------------------------------- the loop

void Coordinator::Run() {
  const ClusterConfig& config = core_->config();
  spdlog::info("flover-coordinator '{}': client {}, control {}, plans {}{}; {} replica(s) x tensor {}", config.name,
               endpoints_.client, endpoints_.control, endpoints_.plans,
               endpoints_.http.empty() ? "" : ", http " + endpoints_.http, config.replicas, config.tensor_parallel);
  switch (security_.mode) {
    case SecurityMode::kNone:
      spdlog::info("security: none (plain text on loopback; every local peer is an admin)");
      break;
    case SecurityMode::kInsecure: spdlog::warn("security: insecure (plain text; nobody is an admin)"); break;
    case SecurityMode::kCurve:
      spdlog::info("security: curve, public key {}; admitted: {} worker key(s), {} client key(s), {} admin key(s)",
                   own_key_->public_key.Z85(), keys_.Count(PeerRole::kWorker), keys_.Count(PeerRole::kClient),
                   keys_.Count(PeerRole::kAdmin));
      break;
  }
  ServiceNotifier notifier(core_->metrics());  // systemd's Type=notify: READY=1 once a replica is ready
  for (;;) {
    notifier.Update();
    const Clock::time_point now = Clock::now();
    if (const int reloads = reloads_.load(std::memory_order_relaxed); reloads_seen_ < reloads) {
      reloads_seen_ = reloads;
      (void)Reload();  // logged
      Flush(now);
    }
    for (const int stops = stops_.load(std::memory_order_relaxed); stops_seen_ < stops; ++stops_seen_) {
      core_->RequestStop(now);
      if (http_server_) http_server_->BeginDrain();
    }
    if (core_->stopped(now)) break;
    try {
      PollOnce();
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal; Stop() may have been called
      spdlog::error("event loop: {}", e.what());
      std::this_thread::sleep_for(kErrorBackoff);
    } catch (const std::exception& e) {
      spdlog::error("event loop: {}", e.what());
      std::this_thread::sleep_for(kErrorBackoff);
    }
  }
  const int n_requests = core_->n_requests();
  spdlog::info("stopping{}", n_requests > 0 ? fmt::format(" with {} request(s) in flight", n_requests) : "");
  try {
    core_->Shutdown("coordinator is stopping");
    Flush(Clock::now());
    // Let the Shutdown and Error messages leave before the context closes.
    for (zmq::socket_t* s : {&client_, &control_}) s->set(zmq::sockopt::linger, kShutdownLingerMs);
  } catch (const std::exception& e) {
    spdlog::error("shutdown: {}", e.what());
  }
  if (http_server_) http_server_->Stop(kHttpShutdownGrace);
  CloseSockets();
}

void Coordinator::PollOnce() {
  std::array<zmq::pollitem_t, 6> items = {{{client_.handle(), 0, ZMQ_POLLIN, 0},
                                           {control_.handle(), 0, ZMQ_POLLIN, 0},
                                           {control_monitor_.handle(), 0, ZMQ_POLLIN, 0},
                                           {client_monitor_.handle(), 0, ZMQ_POLLIN, 0},
                                           {zap_.handle(), 0, ZMQ_POLLIN, 0},
                                           {http_.handle(), 0, ZMQ_POLLIN, 0}}};
  const Clock::time_point before = Clock::now();
  const Clock::duration until_wake = core_->NextWake(before) - before;
  // Round up so that a wake-up 0.4 ms away does not spin.
  zmq::poll(items, std::chrono::ceil<std::chrono::milliseconds>(std::min<Clock::duration>(until_wake, kMaxPoll)));
  // Handshakes wait for their ZAP answer: give it first.
  if (items[4].revents & ZMQ_POLLIN) AnswerZap();
  // Workers next: their step results free blocks and finish requests that new
  // submissions may need.
  if (items[1].revents & ZMQ_POLLIN) DrainControl(Clock::now());
  if (items[0].revents & ZMQ_POLLIN) DrainClient(Clock::now());
  if (items[5].revents & ZMQ_POLLIN) DrainHttp(Clock::now());
  if ((items[2].revents & ZMQ_POLLIN) && control_monitor_.Drain()) core_->OnWorkerConnectionClosed(Clock::now());
  if (items[3].revents & ZMQ_POLLIN) DrainClientMonitor(Clock::now());
  // Replies first, so that the peers they find gone are known before the next plans.
  Flush(Clock::now());
  const Clock::time_point now = Clock::now();
  core_->Tick(now);
  Flush(now);
  PublishChatTemplate();
}

void Coordinator::PublishChatTemplate() {
  if (chat_template_published_ || !http_server_) return;
  const proto::ModelInfo* served = core_->served_model();
  if (served == nullptr) return;
  chat_template_published_ = true;
  const std::lock_guard<std::mutex> lock(chat_template_mu_);
  model_chat_template_ = served->chat_template();
}

void Coordinator::DrainClientMonitor(Clock::time_point now) {
  bool closed = false;
  for (const DisconnectMonitor::Event& e : client_monitor_.DrainEvents()) {
    if (e.event == ZMQ_EVENT_ACCEPTED) client_connections_.insert(e.value);
    if (e.event == ZMQ_EVENT_DISCONNECTED) {
      client_connections_.erase(e.value);
      closed = true;
    }
  }
  if (closed) core_->OnClientConnectionClosed(now);
}

void Coordinator::AnswerZap() {
  // Every connection accepted before these requests were made is counted, each of them
  // included (the monitor's event came before the peer's handshake).
  DrainClientMonitor(Clock::now());
  const ZapPolicy policy{.mode = security_.mode,
                         .keys = &keys_,
                         .client_connections = static_cast<int>(client_connections_.size()),
                         .max_client_connections = max_client_connections_};
  for (const ZapDecision& d : zap_.Drain([&](const ZapRequest& r) { return DecideZap(r, policy); })) {
    if (d.admitted) {
      spdlog::debug("connection admitted: {}", d.user_id);
    } else if (const auto more = refused_log_.Allow(Clock::now())) {
      spdlog::warn("connection refused (ZAP {}): {}{}", d.status_code, d.status_text, SuppressedSuffix(*more));
    }
  }
}

void Coordinator::SetConfigFile(std::string path, ClusterConfig as_read) {
  config_path_ = std::move(path);
  file_config_ = std::move(as_read);
}

Status Coordinator::ReloadAdmittedKeys() {
  if (security_.mode != SecurityMode::kCurve) {
    spdlog::info("reload: no keys to read again (security.mode is not curve)");
    return Status::Ok();
  }
  Result<AccessList> keys = AccessList::Load(security_);
  if (!keys.ok()) {
    spdlog::error("reload: {}; the keys loaded before stay in force", keys.status().ToString());
    return keys.status();
  }
  keys_ = std::move(keys).value();
  spdlog::info("reload: admitted {} worker key(s), {} client key(s), {} admin key(s)", keys_.Count(PeerRole::kWorker),
               keys_.Count(PeerRole::kClient), keys_.Count(PeerRole::kAdmin));
  return Status::Ok();
}

Result<CoordinatorCore::Reconfigured> Coordinator::Reload() {
  const Status keys = ReloadAdmittedKeys();
  if (config_path_.empty()) {
    if (!keys.ok()) return keys;
    return CoordinatorCore::Reconfigured{core_->config_generation(), "keys only (no cluster file to read)"};
  }
  Result<ClusterConfig> next = LoadClusterConfig(config_path_);
  Status status = next.ok() ? CheckLiveChange(file_config_, *next) : next.status();
  if (!status.ok()) {
    status = Status(status.code(), status.message() + " (reload refused: nothing was changed)");
    spdlog::error("reload: {}", status.ToString());
    return status;
  }
  CoordinatorCore::Reconfigured done = core_->Reconfigure(*next, Clock::now());
  file_config_ = std::move(next).value();
  if (!keys.ok()) done.summary += "; the admitted keys did not read (" + keys.message() + "): the old ones stay";
  return done;
}

void Coordinator::DrainClient(Clock::time_point now) {
  for (int i = 0; i < kMaxDrain; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(client_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    try {
      if (parts.size() < 2) {
        if (auto more = client_log_.Allow(now))
          spdlog::warn("client socket: message of {} frame(s) without a payload; ignored{}", parts.size(),
                       SuppressedSuffix(*more));
        continue;
      }
      // The connection's ZAP user id, on every frame it sent; checked against the keys of
      // now, which may have been reloaded since its handshake.
      const std::optional<ClientRole> role =
          ClientRoleOf(zmq_msg_gets(parts[1].handle(), "User-Id"), security_.mode, keys_);
      if (!role) {
        if (const auto more = revoked_log_.Allow(now))
          spdlog::warn("client socket: a message from a key that is no longer admitted; refused{}",
                       SuppressedSuffix(*more));
        (void)SendRouted(client_, parts.front().to_string(),
                         Serialize(ErrorReply("", PermissionDenied("this connection's key is no longer admitted"))));
        continue;
      }
      std::vector<std::string_view> frames;
      for (size_t f = 1; f < parts.size(); ++f) frames.push_back(parts[f].to_string_view());
      core_->OnClientMessage(parts.front().to_string(), *role, frames, now);
    } catch (const std::exception& e) {
      if (auto more = client_log_.Allow(now)) spdlog::error("client message: {}{}", e.what(), SuppressedSuffix(*more));
    }
  }
}

void Coordinator::DrainHttp(Clock::time_point now) {
  for (int i = 0; i < kMaxDrain; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(http_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    try {
      if (parts.size() < 2) continue;  // our own server sends [payload]: never
      std::vector<std::string_view> frames;
      for (size_t f = 1; f < parts.size(); ++f) frames.push_back(parts[f].to_string_view());
      core_->OnClientMessage(std::string(kHttpPeerPrefix) + parts.front().to_string(), ClientRole::kClient, frames, now);
    } catch (const std::exception& e) {
      if (auto more = client_log_.Allow(now)) spdlog::error("http message: {}{}", e.what(), SuppressedSuffix(*more));
    }
  }
}

void Coordinator::DrainControl(Clock::time_point now) {
  for (int i = 0; i < kMaxDrain; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(control_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    try {
      if (parts.empty()) continue;
      // A key revoked by a reload keeps its open connection: drop what it sends.
      if (parts.size() >= 2 && !IsAdmittedWorker(zmq_msg_gets(parts[1].handle(), "User-Id"), security_.mode, keys_)) {
        if (const auto more = revoked_log_.Allow(now))
          spdlog::warn("control socket: a message from a key that is no longer admitted; dropped{}",
                       SuppressedSuffix(*more));
        continue;
      }
      std::vector<std::string_view> frames;
      for (size_t f = 1; f < parts.size(); ++f) frames.push_back(parts[f].to_string_view());
      core_->OnWorkerMessage(parts.front().to_string(), frames, now);
    } catch (const std::exception& e) {
      if (auto more = control_log_.Allow(now))
        spdlog::error("control message: {}{}", e.what(), SuppressedSuffix(*more));
    }
  }
}

void Coordinator::Flush(Clock::time_point now) {
  for (Outbox out = core_->TakeOutbox(); !out.empty(); out = core_->TakeOutbox()) {
    for (int replica : out.topic_probes) {
      const std::string topic = PlanTopic(replica);
      (void)plans_.send(zmq::buffer(topic), zmq::send_flags::dontwait);
    }
    for (const Outbox::Plan& plan : out.plans) {
      const std::string topic = PlanTopic(plan.replica);
      const std::string payload = Serialize(plan.message);
      const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(topic), zmq::buffer(payload)};
      (void)zmq::send_multipart(plans_, frames, zmq::send_flags::dontwait);
    }
    // Once a send finds a peer gone (or a client's queue full), its other messages are
    // not tried.
    std::vector<std::string> gone_workers;
    for (const Outbox::ToWorker& m : out.workers) {
      if (std::find(gone_workers.begin(), gone_workers.end(), m.identity) != gone_workers.end()) continue;
      const Sent sent = SendRouted(control_, m.identity, Serialize(m.message));
      if (sent == Sent::kGone) gone_workers.push_back(m.identity);
      if (sent == Sent::kFull)
        if (auto more = send_log_.Allow(now))
          spdlog::warn("a worker does not read its messages ({} are waiting): one was dropped{}", kMaxQueuedPerWorker,
                       SuppressedSuffix(*more));
    }
    std::vector<std::string> gone_clients;
    std::vector<std::string> full_clients;
    for (const Outbox::ToClient& m : out.clients) {
      if (std::find(gone_clients.begin(), gone_clients.end(), m.identity) != gone_clients.end()) continue;
      if (std::find(full_clients.begin(), full_clients.end(), m.identity) != full_clients.end()) continue;
      // The HTTP server's replies go back over its in-process socket; its queue has no
      // bound (BindAll), so it is never full.
      const bool http = IsHttpPeer(m.identity);
      const Sent sent = http ? SendRouted(http_, m.identity.substr(kHttpPeerPrefix.size()), Serialize(m.message))
                             : SendRouted(client_, m.identity, Serialize(m.message));
      if (sent == Sent::kGone) gone_clients.push_back(m.identity);
      if (sent == Sent::kFull) full_clients.push_back(m.identity);
    }
    for (const std::string& identity : out.reloads) core_->AnswerReload(identity, Reload());
    for (const std::string& identity : gone_workers) core_->OnWorkerUnreachable(identity, now);
    for (const std::string& identity : gone_clients) core_->OnClientUnreachable(identity, now);
    for (const std::string& identity : full_clients) core_->OnClientNotReading(identity, now);
  }
}

}  // namespace flover
