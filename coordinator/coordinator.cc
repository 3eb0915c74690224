#include "coordinator/coordinator.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <exception>
#include <iterator>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include "common/cluster_config_proto.h"
#include "common/protocol.h"

namespace flover {
namespace {

constexpr auto kMaxPoll = std::chrono::milliseconds(100);
constexpr auto kMinStartupTimeout = std::chrono::seconds(120);
constexpr int kMaxDrain = 256;                          // messages read per socket per loop turn
constexpr int64_t kMaxClientMessage = 16 << 20;         // bytes; larger messages drop the peer
constexpr int64_t kMaxWorkerMessage = 256 << 20;
constexpr int kShutdownLingerMs = 500;
// Messages queued for one client or worker that does not read them (a client that
// submits many requests before it reads any reply must not lose replies).
constexpr int kMaxQueuedPerPeer = 100000;
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

Result<std::string> Bind(zmq::socket_t& socket, const std::string& endpoint, const char* name) {
  if (endpoint.empty()) return InvalidArgument(std::string("endpoints.") + name + " is empty");
  try {
    socket.bind(endpoint);
    return Advertised(socket.get(zmq::sockopt::last_endpoint));
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("endpoints.") + name + ": cannot bind " + endpoint + ": " + e.what());
  }
}

// [identity][payload] on a ROUTER_MANDATORY socket; false when that peer is gone. Never
// blocks: a peer that does not read, with kMaxQueuedPerPeer messages already waiting
// for it, loses the message (logged).
bool SendRouted(zmq::socket_t& router, const char* what, const std::string& identity, const std::string& payload) {
  const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(identity), zmq::buffer(payload)};
  try {
    if (!zmq::send_multipart(router, frames, zmq::send_flags::dontwait))
      spdlog::warn("a {} does not read its messages ({} are waiting): one was dropped", what, kMaxQueuedPerPeer);
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) throw;
    return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------- construction

Result<std::unique_ptr<Coordinator>> Coordinator::Create(ClusterConfig config, Clock::duration drain_timeout) {
  FLOVER_RETURN_IF_ERROR(config.Validate());
  std::optional<Tokenizer> tokenizer;
  if (!config.model.tokenizer.empty()) {
    FLOVER_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::LoadLlama2c(config.model.tokenizer));
    tokenizer.emplace(std::move(t));
  }
  std::unique_ptr<Coordinator> coordinator(
      new Coordinator(std::move(config), std::move(tokenizer), std::max(drain_timeout, Clock::duration::zero())));
  FLOVER_RETURN_IF_ERROR(coordinator->BindAll());
  return coordinator;
}

Coordinator::Coordinator(ClusterConfig config, std::optional<Tokenizer> tokenizer, Clock::duration drain_timeout)
    : config_(std::move(config)),
      tokenizer_(std::move(tokenizer)),
      heartbeat_interval_(std::chrono::milliseconds(std::max(1, config_.heartbeat.interval_ms))),
      heartbeat_timeout_(std::chrono::milliseconds(std::max(1, config_.heartbeat.timeout_ms))),
      startup_timeout_(std::max<Clock::duration>(heartbeat_timeout_, kMinStartupTimeout)),
      step_timeout_(std::chrono::milliseconds(std::max(1, config_.heartbeat.step_timeout_ms))),
      drain_timeout_(drain_timeout),
      context_(1),
      client_(context_, zmq::socket_type::router),
      control_(context_, zmq::socket_type::router),
      plans_(context_, zmq::socket_type::pub),
      results_(context_, zmq::socket_type::pull),
      control_monitor_(context_),
      client_monitor_(context_) {
  replicas_.reserve(config_.replicas);
  for (int i = 0; i < config_.replicas; ++i) replicas_.emplace_back(i, config_.tensor_parallel);
}

Coordinator::~Coordinator() { CloseSockets(); }

Status Coordinator::BindAll() {
  try {
    for (zmq::socket_t* s : {&client_, &control_, &plans_, &results_}) s->set(zmq::sockopt::linger, 0);
    client_.set(zmq::sockopt::maxmsgsize, kMaxClientMessage);
    client_.set(zmq::sockopt::sndhwm, kMaxQueuedPerPeer);
    control_.set(zmq::sockopt::sndhwm, kMaxQueuedPerPeer);
    control_.set(zmq::sockopt::maxmsgsize, kMaxWorkerMessage);
    // A send to a peer that is gone fails (EHOSTUNREACH) instead of vanishing.
    client_.set(zmq::sockopt::router_mandatory, true);
    control_.set(zmq::sockopt::router_mandatory, true);
    control_monitor_.Watch(control_, "control");
    client_monitor_.Watch(client_, "client");
    results_.set(zmq::sockopt::maxmsgsize, kMaxWorkerMessage);
    plans_.set(zmq::sockopt::sndhwm, 100000);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot configure sockets: ") + e.what());
  }
  FLOVER_ASSIGN_OR_RETURN(endpoints_.client, Bind(client_, config_.endpoints.client, "client"));
  FLOVER_ASSIGN_OR_RETURN(endpoints_.control, Bind(control_, config_.endpoints.control, "control"));
  FLOVER_ASSIGN_OR_RETURN(endpoints_.plans, Bind(plans_, config_.endpoints.plans, "plans"));
  FLOVER_ASSIGN_OR_RETURN(endpoints_.results, Bind(results_, config_.endpoints.results, "results"));
  ClusterConfig sent = config_;
  sent.endpoints = endpoints_;
  config_proto_ = ToProto(sent);
  return Status::Ok();
}

void Coordinator::CloseSockets() {
  try {
    control_monitor_.Close();
    client_monitor_.Close();
    for (zmq::socket_t* s : {&client_, &control_, &plans_, &results_})
      if (s->handle() != nullptr) s->close();
    context_.close();
  } catch (const zmq::error_t& e) {
    spdlog::error("closing sockets: {}", e.what());
  }
}

// ---------------------------------------------------------------- the loop

void Coordinator::Run() {
  started_ = Clock::now();
  next_heartbeat_ = started_;
  spdlog::info("flover-coordinator '{}': client {}, control {}, plans {}, results {}; {} replica(s) x tensor {}",
               config_.name, endpoints_.client, endpoints_.control, endpoints_.plans, endpoints_.results,
               config_.replicas, config_.tensor_parallel);
  while (!Stopping(Clock::now())) {
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
  spdlog::info("stopping{}", requests_.size() > 0 ? fmt::format(" with {} request(s) in flight", requests_.size()) : "");
  try {
    ShutdownAll("coordinator is stopping");
  } catch (const std::exception& e) {
    spdlog::error("shutdown: {}", e.what());
  }
  CloseSockets();
}

bool Coordinator::Stopping(Clock::time_point now) {
  const int stops = stops_.load(std::memory_order_relaxed);
  if (stops == 0) return false;
  if (stops >= 2 || drain_timeout_ <= Clock::duration::zero()) return true;
  if (!drain_deadline_) {
    drain_deadline_ = now + drain_timeout_;
    if (requests_.size() > 0)
      spdlog::info("draining: {} request(s) in flight, for up to {:.1f} s (a second signal stops at once); new "
                   "requests are refused",
                   requests_.size(), Seconds(drain_timeout_));
  }
  return requests_.size() == 0 || now >= *drain_deadline_;
}

void Coordinator::PollOnce() {
  std::array<zmq::pollitem_t, 5> items = {{{client_.handle(), 0, ZMQ_POLLIN, 0},
                                           {control_.handle(), 0, ZMQ_POLLIN, 0},
                                           {results_.handle(), 0, ZMQ_POLLIN, 0},
                                           {control_monitor_.handle(), 0, ZMQ_POLLIN, 0},
                                           {client_monitor_.handle(), 0, ZMQ_POLLIN, 0}}};
  zmq::poll(items, PollTimeout(Clock::now()));
  // Results first: they free blocks and finish requests that new submissions may need.
  if (items[2].revents & ZMQ_POLLIN) DrainResults();
  if (items[1].revents & ZMQ_POLLIN) DrainControl();
  if (items[0].revents & ZMQ_POLLIN) DrainClient();
  // A closed connection: find out whose, by sending (see Health and Clients that leave).
  if ((items[3].revents & ZMQ_POLLIN) && control_monitor_.Drain()) {
    probe_until_ = Clock::now() + kProbeFor;
    next_heartbeat_ = Clock::now();
  }
  if ((items[4].revents & ZMQ_POLLIN) && client_monitor_.Drain()) {
    client_probe_until_ = Clock::now() + kClientProbeFor;
    next_client_probe_ = Clock::now();
  }
  Tick(Clock::now());
}

std::chrono::milliseconds Coordinator::PollTimeout(Clock::time_point now) const {
  Clock::duration timeout = std::min<Clock::duration>(kMaxPoll, heartbeat_interval_);
  auto wake_at = [&](Clock::time_point t) {
    timeout = std::min(timeout, std::max<Clock::duration>(Clock::duration::zero(), t - now));
  };
  wake_at(next_heartbeat_);
  if (now < probe_until_ || now < client_probe_until_) timeout = std::min<Clock::duration>(timeout, kProbeEvery);
  if (const auto deadline = store_.next_deadline()) wake_at(*deadline);
  if (!deadlines_.empty()) wake_at(deadlines_.begin()->first);
  // Wake up when a dynamic batch window closes (a replica with its pipeline full is
  // woken by the result instead). A window that closed already was served by the last
  // Tick(): at least 1 ms then, never a hot loop.
  for (const Replica& replica : replicas_)
    if (const Scheduler* s = replica.scheduler(); s && s->can_schedule())
      if (const auto deadline = s->batch_deadline())
        timeout = std::min(timeout, std::max<Clock::duration>(std::chrono::milliseconds(1), *deadline - now));
  // Round up so that a deadline 0.4 ms away does not spin.
  return std::chrono::ceil<std::chrono::milliseconds>(timeout);
}

void Coordinator::DrainClient() {
  for (int i = 0; i < kMaxDrain; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(client_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    try {
      if (parts.size() < 2) {
        spdlog::warn("client socket: message of {} frame(s) without a payload; ignored", parts.size());
        continue;
      }
      const std::string identity = parts.front().to_string();
      if (parts.size() > 2) {
        SendToClient(identity, ErrorReply("", InvalidArgument(fmt::format(
                                                  "a client message is one frame; got {}", parts.size() - 1))));
        continue;
      }
      HandleClient(identity, parts[1].to_string(), Clock::now());
    } catch (const std::exception& e) {
      spdlog::error("client message: {}", e.what());
    }
  }
}

void Coordinator::DrainControl() {
  for (int i = 0; i < kMaxDrain; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(control_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    try {
      if (parts.size() != 2) {
        spdlog::warn("control socket: message of {} frame(s); expected [identity][WorkerMessage]; ignored",
                     parts.size());
        continue;
      }
      HandleControl(parts[0].to_string(), parts[1].to_string(), Clock::now());
    } catch (const std::exception& e) {
      spdlog::error("control message: {}", e.what());
    }
  }
}

void Coordinator::DrainResults() {
  for (int i = 0; i < kMaxDrain; ++i) {
    zmq::message_t message;
    if (!results_.recv(message, zmq::recv_flags::dontwait)) return;
    try {
      Result<proto::WorkerMessage> parsed = Parse<proto::WorkerMessage>(message.to_string_view());
      if (!parsed.ok()) {
        spdlog::warn("results socket: {}; ignored", parsed.status().ToString());
      } else if (!parsed->has_step_result()) {
        spdlog::warn("results socket: WorkerMessage without a step_result (body {}); ignored",
                     static_cast<int>(parsed->body_case()));
      } else {
        HandleStepResult(parsed->step_result(), Clock::now());
      }
      // A multi-frame message is read frame by frame; the extra frames fail to parse.
    } catch (const std::exception& e) {
      spdlog::error("step result: {}", e.what());
    }
  }
}

void Coordinator::Tick(Clock::time_point now) {
  CheckHealth(now);
  SendHeartbeats(now);
  ProbeClients(now);
  for (const RendezvousStore::Reply& reply : store_.Expire(now)) {
    proto::CoordinatorMessage m;
    *m.mutable_store_value() = reply.value;
    SendToWorker(reply.identity, m);
  }
  ExpireQueued(now);
  ExpireDeadlines(now);
  RunSteps(now);
}

void Coordinator::ShutdownAll(const std::string& reason) {
  for (uint64_t id : requests_.ids()) Fail(id, Unavailable("the coordinator is shutting down"));
  queued_.clear();
  proto::CoordinatorMessage m;
  m.mutable_shutdown()->set_reason(reason);
  for (Replica& replica : replicas_)
    for (WorkerSlot& w : replica.workers())
      if (w.live()) SendToWorker(w.identity, m);
  // Let the Shutdown and Error messages leave before the context closes.
  for (zmq::socket_t* s : {&client_, &control_}) s->set(zmq::sockopt::linger, kShutdownLingerMs);
}

// ---------------------------------------------------------------- helpers

bool Coordinator::AnyReady() const {
  return std::any_of(replicas_.begin(), replicas_.end(),
                     [](const Replica& r) { return r.state() == Replica::State::kReady; });
}

bool Coordinator::AnyStarting() const {
  return std::any_of(replicas_.begin(), replicas_.end(),
                     [](const Replica& r) { return r.state() == Replica::State::kStarting; });
}

int Coordinator::NQueued() const {
  int n = static_cast<int>(queued_.size());
  for (const Replica& r : replicas_)
    if (const Scheduler* s = r.scheduler()) n += s->n_waiting();
  return n;
}

void Coordinator::RefreshKvCapacity() {
  int64_t smallest = 0;
  for (const Replica& r : replicas_) {
    if (r.state() != Replica::State::kReady) continue;
    const int64_t pool = static_cast<int64_t>(r.n_kv_blocks()) * config_.kv_cache.block_size;
    if (smallest == 0 || pool < smallest) smallest = pool;
  }
  if (smallest > 0) kv_capacity_tokens_ = smallest;
}

std::string Coordinator::UnhealthySummary() const {
  std::string out;
  for (const Replica& r : replicas_) {
    if (r.state() != Replica::State::kUnhealthy) continue;
    if (!out.empty()) out += "; ";
    out += r.error();
  }
  return out.empty() ? "no replica is ready" : out;
}

bool Coordinator::SendToClient(const std::string& identity, const proto::ServerMessage& message) {
  return SendRouted(client_, "client", identity, Serialize(message));
}

bool Coordinator::SendToWorker(const std::string& identity, const proto::CoordinatorMessage& message) {
  return SendRouted(control_, "worker", identity, Serialize(message));
}

}  // namespace flover
