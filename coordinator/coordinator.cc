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

#include "common/protocol.h"

namespace flover {
namespace {

constexpr auto kMaxPoll = std::chrono::milliseconds(100);
constexpr int kMaxDrain = 256;  // messages read per socket per loop turn
constexpr int kShutdownLingerMs = 500;
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

Result<std::string> Bind(zmq::socket_t& socket, const std::string& endpoint, const char* name) {
  if (endpoint.empty()) return InvalidArgument(std::string("endpoints.") + name + " is empty");
  try {
    socket.bind(endpoint);
    return Advertised(socket.get(zmq::sockopt::last_endpoint));
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("endpoints.") + name + ": cannot bind " + endpoint + ": " + e.what());
  }
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
  std::unique_ptr<Coordinator> coordinator(new Coordinator());
  FLOVER_RETURN_IF_ERROR(coordinator->BindAll(config.endpoints, config.limits));
  FLOVER_ASSIGN_OR_RETURN(coordinator->core_, CoordinatorCore::Create(std::move(config), coordinator->endpoints_,
                                                                      drain_timeout, Clock::now()));
  return coordinator;
}

Coordinator::Coordinator()
    : context_(1),
      client_(context_, zmq::socket_type::router),
      control_(context_, zmq::socket_type::router),
      plans_(context_, zmq::socket_type::pub),
      control_monitor_(context_),
      client_monitor_(context_) {}

Coordinator::~Coordinator() { CloseSockets(); }

Status Coordinator::BindAll(const EndpointsConfig& wanted, const LimitsSettings& limits) {
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
    client_monitor_.Watch(client_, "client");
    plans_.set(zmq::sockopt::sndhwm, 100000);
    plans_.set(zmq::sockopt::maxmsgsize, kMaxSubscriptionBytes);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot configure sockets: ") + e.what());
  }
  FLOVER_ASSIGN_OR_RETURN(endpoints_.client, Bind(client_, wanted.client, "client"));
  FLOVER_ASSIGN_OR_RETURN(endpoints_.control, Bind(control_, wanted.control, "control"));
  FLOVER_ASSIGN_OR_RETURN(endpoints_.plans, Bind(plans_, wanted.plans, "plans"));
  return Status::Ok();
}

void Coordinator::CloseSockets() {
  try {
    control_monitor_.Close();
    client_monitor_.Close();
    for (zmq::socket_t* s : {&client_, &control_, &plans_})
      if (s->handle() != nullptr) s->close();
    context_.close();
  } catch (const zmq::error_t& e) {
    spdlog::error("closing sockets: {}", e.what());
  }
}

// ---------------------------------------------------------------- the loop

void Coordinator::Run() {
  const ClusterConfig& config = core_->config();
  spdlog::info("flover-coordinator '{}': client {}, control {}, plans {}; {} replica(s) x tensor {}", config.name,
               endpoints_.client, endpoints_.control, endpoints_.plans, config.replicas, config.tensor_parallel);
  for (;;) {
    const Clock::time_point now = Clock::now();
    for (const int stops = stops_.load(std::memory_order_relaxed); stops_seen_ < stops; ++stops_seen_)
      core_->RequestStop(now);
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
  CloseSockets();
}

void Coordinator::PollOnce() {
  std::array<zmq::pollitem_t, 4> items = {{{client_.handle(), 0, ZMQ_POLLIN, 0},
                                           {control_.handle(), 0, ZMQ_POLLIN, 0},
                                           {control_monitor_.handle(), 0, ZMQ_POLLIN, 0},
                                           {client_monitor_.handle(), 0, ZMQ_POLLIN, 0}}};
  const Clock::time_point before = Clock::now();
  const Clock::duration until_wake = core_->NextWake(before) - before;
  // Round up so that a wake-up 0.4 ms away does not spin.
  zmq::poll(items, std::chrono::ceil<std::chrono::milliseconds>(std::min<Clock::duration>(until_wake, kMaxPoll)));
  // Workers first: their step results free blocks and finish requests that new
  // submissions may need.
  if (items[1].revents & ZMQ_POLLIN) DrainControl(Clock::now());
  if (items[0].revents & ZMQ_POLLIN) DrainClient(Clock::now());
  if ((items[2].revents & ZMQ_POLLIN) && control_monitor_.Drain()) core_->OnWorkerConnectionClosed(Clock::now());
  if ((items[3].revents & ZMQ_POLLIN) && client_monitor_.Drain()) core_->OnClientConnectionClosed(Clock::now());
  // Replies first, so that the peers they find gone are known before the next plans.
  Flush(Clock::now());
  const Clock::time_point now = Clock::now();
  core_->Tick(now);
  Flush(now);
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
      std::vector<std::string_view> frames;
      for (size_t f = 1; f < parts.size(); ++f) frames.push_back(parts[f].to_string_view());
      core_->OnClientMessage(parts.front().to_string(), frames, now);
    } catch (const std::exception& e) {
      if (auto more = client_log_.Allow(now)) spdlog::error("client message: {}{}", e.what(), SuppressedSuffix(*more));
    }
  }
}

void Coordinator::DrainControl(Clock::time_point now) {
  for (int i = 0; i < kMaxDrain; ++i) {
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(control_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return;
    try {
      if (parts.empty()) continue;
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
      const Sent sent = SendRouted(client_, m.identity, Serialize(m.message));
      if (sent == Sent::kGone) gone_clients.push_back(m.identity);
      if (sent == Sent::kFull) full_clients.push_back(m.identity);
    }
    for (const std::string& identity : gone_workers) core_->OnWorkerUnreachable(identity, now);
    for (const std::string& identity : gone_clients) core_->OnClientUnreachable(identity, now);
    for (const std::string& identity : full_clients) core_->OnClientNotReading(identity, now);
  }
}

}  // namespace flover
