#include "coordinator/coordinator.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <exception>
#include <iterator>
#include <limits>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include "common/block_allocator.h"
#include "common/protocol.h"
#include "coordinator/admission.h"

namespace flover {
namespace {

constexpr auto kMaxPoll = std::chrono::milliseconds(100);
constexpr auto kMinStartupTimeout = std::chrono::seconds(120);
constexpr int kMaxDrain = 256;                          // messages read per socket per loop turn
constexpr int64_t kMaxClientMessage = 16 << 20;         // bytes; larger messages drop the peer
constexpr int64_t kMaxWorkerMessage = 256 << 20;
constexpr int kShutdownLingerMs = 500;
constexpr auto kErrorBackoff = std::chrono::milliseconds(10);  // no hot loop on a persistent error

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string PlanTopic(int replica) { return "replica/" + std::to_string(replica) + "/"; }

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

// Models agree when every shape field does (descriptions may differ per rank).
bool SameModel(const proto::ModelInfo& a, const proto::ModelInfo& b) {
  return a.dim() == b.dim() && a.hidden_dim() == b.hidden_dim() && a.n_layers() == b.n_layers() &&
         a.n_heads() == b.n_heads() && a.n_kv_heads() == b.n_kv_heads() && a.vocab_size() == b.vocab_size() &&
         a.max_seq_len() == b.max_seq_len() && a.bos_id() == b.bos_id() && a.eos_id() == b.eos_id();
}

std::string Describe(const proto::ModelInfo& m) {
  std::string s = FromProto(m).ToString();
  if (!m.description().empty()) s = m.description() + " (" + s + ")";
  return s;
}

std::string WorkerName(const WorkerSlot& w) {
  return fmt::format("worker {}/{} (pid {})", w.replica, w.rank, w.pid);
}

}  // namespace

// ---------------------------------------------------------------- construction

Result<std::unique_ptr<Coordinator>> Coordinator::Create(ClusterConfig config) {
  if (config.replicas < 1 || config.tensor_parallel < 1)
    return InvalidArgument(fmt::format("{}: parallel: {} replicas x tensor {} has no worker", config.source,
                                       config.replicas, config.tensor_parallel));
  const SchedulerSettings& sched = config.scheduler;
  if (config.kv_cache.block_size < 1 || sched.max_step_tokens < 1 || sched.max_running < 1 ||
      sched.max_queued < 1 || sched.pipeline_depth < 1)
    return InvalidArgument(fmt::format("{}: kv_cache.block_size, scheduler.max_step_tokens, max_running, max_queued "
                                       "and pipeline_depth must be >= 1",
                                       config.source));
  if (!SchedulerPolicyFromName(sched.policy))
    return InvalidArgument(fmt::format("{}: scheduler.policy: '{}' is not one of fused, dynamic, instances, sequential",
                                       config.source, sched.policy));
  if (sched.batch_window_ms < 0 || sched.max_batch < 1)
    return InvalidArgument(fmt::format("{}: scheduler.batch_window_ms must be >= 0 and max_batch >= 1", config.source));
  std::optional<Tokenizer> tokenizer;
  if (!config.model.tokenizer.empty()) {
    FLOVER_ASSIGN_OR_RETURN(Tokenizer t, Tokenizer::LoadLlama2c(config.model.tokenizer));
    tokenizer.emplace(std::move(t));
  }
  std::unique_ptr<Coordinator> coordinator(new Coordinator(std::move(config), std::move(tokenizer)));
  FLOVER_RETURN_IF_ERROR(coordinator->BindAll());
  return coordinator;
}

Coordinator::Coordinator(ClusterConfig config, std::optional<Tokenizer> tokenizer)
    : config_(std::move(config)),
      tokenizer_(std::move(tokenizer)),
      heartbeat_interval_(std::chrono::milliseconds(std::max(1, config_.heartbeat.interval_ms))),
      heartbeat_timeout_(std::chrono::milliseconds(std::max(1, config_.heartbeat.timeout_ms))),
      startup_timeout_(std::max<Clock::duration>(heartbeat_timeout_, kMinStartupTimeout)),
      step_timeout_(std::chrono::milliseconds(std::max(1, config_.heartbeat.step_timeout_ms))),
      context_(1),
      client_(context_, zmq::socket_type::router),
      control_(context_, zmq::socket_type::router),
      plans_(context_, zmq::socket_type::pub),
      results_(context_, zmq::socket_type::pull) {
  replicas_.reserve(config_.replicas);
  for (int i = 0; i < config_.replicas; ++i) replicas_.emplace_back(i, config_.tensor_parallel);
}

Coordinator::~Coordinator() { CloseSockets(); }

Status Coordinator::BindAll() {
  try {
    for (zmq::socket_t* s : {&client_, &control_, &plans_, &results_}) s->set(zmq::sockopt::linger, 0);
    client_.set(zmq::sockopt::maxmsgsize, kMaxClientMessage);
    control_.set(zmq::sockopt::maxmsgsize, kMaxWorkerMessage);
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
  config_yaml_ = ToYaml(sent);
  return Status::Ok();
}

void Coordinator::CloseSockets() {
  try {
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
  while (!stop_.load(std::memory_order_relaxed)) {
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
  spdlog::info("stopping");
  try {
    ShutdownAll("coordinator is stopping");
  } catch (const std::exception& e) {
    spdlog::error("shutdown: {}", e.what());
  }
  CloseSockets();
}

void Coordinator::PollOnce() {
  std::array<zmq::pollitem_t, 3> items = {{{client_.handle(), 0, ZMQ_POLLIN, 0},
                                           {control_.handle(), 0, ZMQ_POLLIN, 0},
                                           {results_.handle(), 0, ZMQ_POLLIN, 0}}};
  zmq::poll(items, PollTimeout(Clock::now()));
  // Results first: they free blocks and finish requests that new submissions may need.
  if (items[2].revents & ZMQ_POLLIN) DrainResults();
  if (items[1].revents & ZMQ_POLLIN) DrainControl();
  if (items[0].revents & ZMQ_POLLIN) DrainClient();
  Tick(Clock::now());
}

std::chrono::milliseconds Coordinator::PollTimeout(Clock::time_point now) const {
  Clock::duration timeout = std::min<Clock::duration>(kMaxPoll, heartbeat_interval_);
  timeout = std::min(timeout, std::max<Clock::duration>(Clock::duration::zero(), next_heartbeat_ - now));
  if (const auto deadline = store_.next_deadline())
    timeout = std::min(timeout, std::max<Clock::duration>(Clock::duration::zero(), *deadline - now));
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
  for (const RendezvousStore::Reply& reply : store_.Expire(now)) {
    proto::CoordinatorMessage m;
    *m.mutable_store_value() = reply.value;
    SendToWorker(reply.identity, m);
  }
  ExpireQueued(now);
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

// ---------------------------------------------------------------- client API

void Coordinator::HandleClient(const std::string& identity, const std::string& payload, Clock::time_point now) {
  Result<proto::ClientMessage> message = ParseClientMessage(payload);
  if (!message.ok()) {
    spdlog::debug("client message rejected: {}", message.status().ToString());
    // Answer with the request's id when the bytes are readable at all (unknown fields,
    // wrong version), so the client can tell which request was refused.
    proto::ClientMessage lenient;
    std::string id;
    if (lenient.ParseFromString(payload)) {
      if (lenient.has_submit()) id = lenient.submit().client_request_id();
      if (lenient.has_cancel()) id = lenient.cancel().client_request_id();
    }
    SendToClient(identity, ErrorReply(id, message.status()));
    return;
  }
  switch (message->body_case()) {
    case proto::ClientMessage::kSubmit: HandleSubmit(identity, message->submit(), now); break;
    case proto::ClientMessage::kCancel: HandleCancel(identity, message->cancel(), now); break;
    case proto::ClientMessage::kStatus: {
      proto::ServerMessage reply;
      *reply.mutable_status() = BuildStatus(now);
      SendToClient(identity, reply);
      break;
    }
    case proto::ClientMessage::BODY_NOT_SET: break;  // rejected by ParseClientMessage
  }
}

void Coordinator::HandleSubmit(const std::string& identity, const proto::SubmitRequest& submit,
                               Clock::time_point now) {
  const std::string& cid = submit.client_request_id();
  AdmissionContext context;
  context.tokenizer = tokenizer();
  context.model = model_ ? &spec_ : nullptr;
  context.kv_capacity_tokens = kv_capacity_tokens_;
  context.id_in_flight = requests_.FindByClient(identity, cid) != nullptr;
  context.n_queued = NQueued();
  context.max_queued = config_.scheduler.max_queued;
  Result<RequestParams> params = Admit(submit, context);
  if (!params.ok()) {
    spdlog::debug("request '{}' rejected: {}", cid, params.status().ToString());
    SendToClient(identity, ErrorReply(cid, params.status()));
    return;
  }
  const bool ready = AnyReady();
  if (!ready && !AnyStarting()) {
    SendToClient(identity, ErrorReply(cid, Unavailable("no healthy replica: " + UnhealthySummary())));
    return;
  }

  TrackedRequest t;
  t.id = next_request_id_++;
  t.client = identity;
  t.client_request_id = cid;
  t.stream = submit.stream();
  t.priority = submit.priority();
  t.prompt_tokens = static_cast<int>(params->prompt.size());
  t.last_prompt_token = params->prompt.empty() ? -1 : params->prompt.back();
  t.submitted = now;
  const uint64_t id = t.id;
  if (ready) {
    requests_.Add(std::move(t));
    Assign(id, std::move(params).value());
    return;
  }
  // No replica is ready yet: queue until one is (or the startup timeout passes).
  t.params = std::move(params).value();
  t.model_checked = model_.has_value();
  t.queue_deadline = now + startup_timeout_;
  requests_.Add(std::move(t));
  queued_.push_back(id);
  spdlog::debug("request {} ('{}') queued: no replica is ready yet", id, cid);
}

void Coordinator::Assign(uint64_t id, RequestParams params) {
  TrackedRequest* t = requests_.Find(id);
  FLOVER_CHECK(t != nullptr) << "request " << id;
  Replica* best = nullptr;
  for (Replica& r : replicas_)
    if (r.state() == Replica::State::kReady && (!best || r.load() < best->load())) best = &r;
  FLOVER_CHECK(best != nullptr) << "no ready replica for request " << id;
  const int64_t pool = static_cast<int64_t>(best->n_kv_blocks()) * config_.kv_cache.block_size;
  Status status = t->model_checked ? Status::Ok() : CheckAgainstModel(params, spec_, pool);
  if (status.ok() && MaxKvPositions(params, spec_) > pool)
    status = ResourceExhausted(fmt::format("request needs up to {} KV slots, more than replica {}'s whole KV cache "
                                           "holds ({})",
                                           MaxKvPositions(params, spec_), best->index(), pool));
  if (!status.ok()) {
    Fail(id, status);
    return;
  }
  t->replica = best->index();
  t->model_checked = true;
  best->scheduler()->Add(id, std::move(params), t->priority, t->submitted);
  proto::ServerMessage reply;
  proto::Accepted* accepted = reply.mutable_accepted();
  accepted->set_client_request_id(t->client_request_id);
  accepted->set_request_id(id);
  accepted->set_prompt_tokens(t->prompt_tokens);
  accepted->set_replica(best->index());
  SendToClient(t->client, reply);
}

void Coordinator::AdmitQueued() {
  while (!queued_.empty() && AnyReady()) {
    const uint64_t id = queued_.front();
    queued_.pop_front();
    TrackedRequest* t = requests_.Find(id);
    if (!t) continue;
    Assign(id, std::move(t->params));
  }
}

void Coordinator::ExpireQueued(Clock::time_point now) {
  while (!queued_.empty()) {
    TrackedRequest* t = requests_.Find(queued_.front());
    if (t && t->queue_deadline > now) return;
    queued_.pop_front();
    if (t)
      Fail(t->id, Unavailable(fmt::format("no replica became ready within {:.1f} s", Seconds(startup_timeout_))));
  }
}

void Coordinator::FailQueued(const Status& status) {
  while (!queued_.empty()) {
    const uint64_t id = queued_.front();
    queued_.pop_front();
    if (requests_.Find(id)) Fail(id, status);
  }
}

void Coordinator::HandleCancel(const std::string& identity, const proto::CancelRequest& cancel,
                               Clock::time_point now) {
  TrackedRequest* t = requests_.FindByClient(identity, cancel.client_request_id());
  if (!t) {
    SendToClient(identity, ErrorReply(cancel.client_request_id(),
                                      NotFound("no request '" + cancel.client_request_id() +
                                               "' is in flight on this connection")));
    return;
  }
  if (t->replica < 0) {
    queued_.erase(std::remove(queued_.begin(), queued_.end(), t->id), queued_.end());
  } else if (Scheduler* s = replicas_[t->replica].scheduler()) {
    s->Cancel(t->id);
  }
  spdlog::debug("request {} ('{}') cancelled", t->id, t->client_request_id);
  Finish(t->id, FinishReason::kCancelled, now);
}

void Coordinator::Deliver(const RequestEvent& event, Clock::time_point now) {
  TrackedRequest* t = requests_.Find(event.request_id);
  if (!t) {
    spdlog::warn("step output for request {} that has no client; ignored", event.request_id);
    return;
  }
  if (event.token >= 0) {
    const int prev = t->tokens.empty() ? t->last_prompt_token : t->tokens.back();
    std::string piece = tokenizer_ ? tokenizer_->DecodeToken(prev, event.token) : std::string();
    t->tokens.push_back(event.token);
    t->text += piece;
    if (!t->first_token) t->first_token = now;
    if (t->stream) {
      proto::ServerMessage m;
      proto::TokenEvent* token = m.mutable_token();
      token->set_client_request_id(t->client_request_id);
      token->add_tokens(event.token);
      token->set_text(std::move(piece));
      SendToClient(t->client, m);
    }
  }
  if (event.finish != FinishReason::kNone) Finish(t->id, event.finish, now);
}

void Coordinator::Finish(uint64_t id, FinishReason reason, Clock::time_point now) {
  TrackedRequest* t = requests_.Find(id);
  FLOVER_CHECK(t != nullptr) << "request " << id;
  proto::ServerMessage m;
  proto::Done* done = m.mutable_done();
  done->set_client_request_id(t->client_request_id);
  done->set_finish_reason(ToProto(reason));
  done->mutable_tokens()->Add(t->tokens.begin(), t->tokens.end());
  done->set_text(t->text);
  done->set_prompt_tokens(t->prompt_tokens);
  done->set_completion_tokens(static_cast<int>(t->tokens.size()));
  // A request that never ran was queued all along.
  done->set_queue_seconds(Seconds(t->first_step.value_or(now) - t->submitted));
  done->set_first_token_seconds(t->first_token ? Seconds(*t->first_token - t->submitted) : 0.0);
  done->set_total_seconds(Seconds(now - t->submitted));
  SendToClient(t->client, m);
  requests_.Remove(id);
  ++completed_;
}

void Coordinator::Fail(uint64_t id, const Status& status) {
  TrackedRequest* t = requests_.Find(id);
  FLOVER_CHECK(t != nullptr) << "request " << id;
  SendToClient(t->client, ErrorReply(t->client_request_id, status));
  requests_.Remove(id);
}

proto::ClusterStatus Coordinator::BuildStatus(Clock::time_point now) const {
  proto::ClusterStatus s;
  s.set_name(config_.name);
  if (model_) *s.mutable_model() = *model_;
  for (const Replica& r : replicas_) {
    proto::ReplicaStatus* rs = s.add_replicas();
    rs->set_replica(r.index());
    rs->set_state(Replica::StateName(r.state()));
    for (const WorkerSlot& w : r.workers()) {
      proto::WorkerStatus* ws = rs->add_workers();
      ws->set_replica(w.replica);
      ws->set_rank(w.rank);
      ws->set_state(WorkerStateName(w.state));
      ws->set_host(w.host);
      ws->set_pid(w.pid);
      ws->set_device(w.device);
      if (w.state != WorkerState::kAbsent) ws->set_last_heartbeat_age_s(Seconds(now - w.last_seen));
    }
    if (const Scheduler* sched = r.scheduler()) {
      rs->set_running(sched->n_running());
      rs->set_waiting(sched->n_waiting());
      rs->set_kv_blocks_total(sched->n_blocks());
      rs->set_kv_blocks_used(sched->n_used_blocks());
    }
    rs->set_steps_per_second(r.rate().steps_per_second(now));
    rs->set_tokens_per_second(r.rate().tokens_per_second(now));
    rs->set_steps(r.steps());
    rs->set_tokens_generated(r.tokens_generated());
    rs->set_step_compute_seconds(r.step_compute_seconds());
    rs->set_error(r.error());
  }
  s.set_queued(NQueued());
  s.set_completed(completed_);
  s.set_uptime_seconds(Seconds(now - started_));
  return s;
}

// ---------------------------------------------------------------- workers

WorkerSlot* Coordinator::FindWorker(const std::string& identity) {
  auto it = worker_by_identity_.find(identity);
  if (it == worker_by_identity_.end()) return nullptr;
  return &replicas_[it->second.first].worker(it->second.second);
}

void Coordinator::HandleControl(const std::string& identity, const std::string& payload, Clock::time_point now) {
  Result<proto::WorkerMessage> message = Parse<proto::WorkerMessage>(payload);
  if (!message.ok()) {
    spdlog::warn("control socket: {}; ignored", message.status().ToString());
    return;
  }
  WorkerSlot* slot = FindWorker(identity);
  if (slot) slot->last_seen = now;
  const proto::WorkerMessage::BodyCase body = message->body_case();
  if (body == proto::WorkerMessage::kRegister) {
    HandleRegister(identity, message->register_(), now);
    return;
  }
  if (body == proto::WorkerMessage::kStepResult) {  // normally on the results socket
    HandleStepResult(message->step_result(), now);
    return;
  }
  if (!slot) {
    // Heartbeats of workers that were just told to shut down are expected; say less.
    spdlog::log(body == proto::WorkerMessage::kHeartbeat ? spdlog::level::debug : spdlog::level::warn,
                "control socket: message (body {}) from a connection that is not a registered live worker; ignored",
                static_cast<int>(body));
    return;
  }
  Replica& replica = replicas_[slot->replica];
  switch (body) {
    case proto::WorkerMessage::kReady: HandleReady(*slot, message->ready()); break;
    case proto::WorkerMessage::kStoreSet: {
      for (const RendezvousStore::Reply& reply :
           store_.Set(slot->replica, message->store_set().key(), message->store_set().value())) {
        proto::CoordinatorMessage m;
        *m.mutable_store_value() = reply.value;
        SendToWorker(reply.identity, m);
      }
      break;
    }
    case proto::WorkerMessage::kStoreGet: {
      const proto::StoreGet& get = message->store_get();
      if (std::optional<proto::StoreValue> value =
              store_.Get(slot->replica, identity, get.key(), now, now + std::chrono::milliseconds(get.timeout_ms()))) {
        proto::CoordinatorMessage m;
        *m.mutable_store_value() = std::move(*value);
        SendToWorker(identity, m);
      }
      break;
    }
    case proto::WorkerMessage::kHeartbeat:
      if (message->heartbeat().replica() != slot->replica || message->heartbeat().rank() != slot->rank)
        spdlog::warn("{} sends heartbeats as replica {} rank {}", WorkerName(*slot), message->heartbeat().replica(),
                     message->heartbeat().rank());
      break;
    case proto::WorkerMessage::kFailure:
      MarkUnhealthy(replica, fmt::format("{} failed: {}", WorkerName(*slot), message->failure().message()));
      break;
    default:
      spdlog::warn("control socket: unexpected message (body {}) from {}; ignored", static_cast<int>(body),
                   WorkerName(*slot));
      break;
  }
}

void Coordinator::HandleRegister(const std::string& identity, const proto::RegisterWorker& reg,
                                 Clock::time_point now) {
  proto::CoordinatorMessage m;
  proto::RegisterReply* reply = m.mutable_register_reply();
  auto reject = [&](const std::string& why) {
    spdlog::warn("registration of replica {} rank {} (pid {} on {}) rejected: {}", reg.replica(), reg.rank(),
                 reg.pid(), reg.host(), why);
    reply->set_accepted(false);
    reply->set_error(why);
    SendToWorker(identity, m);
  };
  if (reg.replica() < 0 || reg.replica() >= config_.replicas || reg.rank() < 0 ||
      reg.rank() >= config_.tensor_parallel) {
    reject(fmt::format("replica {} rank {} is not part of this cluster ({} replica(s) x tensor_parallel {})",
                       reg.replica(), reg.rank(), config_.replicas, config_.tensor_parallel));
    return;
  }
  Replica& replica = replicas_[reg.replica()];
  WorkerSlot& slot = replica.worker(reg.rank());
  if (WorkerSlot* other = FindWorker(identity); other && other != &slot) {
    reject(fmt::format("this connection is already registered as replica {} rank {}", other->replica, other->rank));
    return;
  }
  if (slot.live() && slot.identity != identity) {
    reject(fmt::format("replica {} rank {} is already live (pid {} on {})", slot.replica, slot.rank, slot.pid,
                       slot.host));
    return;
  }
  if (slot.live()) {
    spdlog::info("{} registered again (same connection)", WorkerName(slot));
  } else {
    slot.state = WorkerState::kRegistered;
    slot.identity = identity;
    slot.pid = reg.pid();
    slot.host = reg.host();
    slot.device = reg.device();
    slot.model.Clear();
    slot.kv_blocks = 0;
    worker_by_identity_[identity] = {slot.replica, slot.rank};
    replica.Restart();
    spdlog::info("{} registered from {} ({})", WorkerName(slot), slot.host, slot.device);
  }
  slot.last_seen = now;
  reply->set_accepted(true);
  reply->set_config_yaml(config_yaml_);
  reply->set_plans_endpoint(endpoints_.plans);
  reply->set_results_endpoint(endpoints_.results);
  reply->set_plan_topic(PlanTopic(slot.replica));
  SendToWorker(identity, m);
}

void Coordinator::HandleReady(WorkerSlot& slot, const proto::WorkerReady& ready) {
  if (ready.replica() != slot.replica || ready.rank() != slot.rank) {
    spdlog::warn("{} reports ready as replica {} rank {}; ignored", WorkerName(slot), ready.replica(), ready.rank());
    return;
  }
  if (slot.state != WorkerState::kRegistered) {
    spdlog::warn("{} reports ready twice; ignored", WorkerName(slot));
    return;
  }
  slot.state = WorkerState::kReady;
  slot.model = ready.model();
  slot.kv_blocks = ready.kv_blocks();
  spdlog::info("{} ready: {}, {} KV blocks", WorkerName(slot), Describe(slot.model), slot.kv_blocks);
  Replica& replica = replicas_[slot.replica];
  if (replica.state() == Replica::State::kStarting && replica.all_ready()) TryMakeReady(replica);
}

void Coordinator::TryMakeReady(Replica& replica) {
  const std::vector<WorkerSlot>& workers = replica.workers();
  const proto::ModelInfo& model = workers.front().model;
  int kv_blocks = std::numeric_limits<int>::max();
  for (const WorkerSlot& w : workers) {
    if (!SameModel(w.model, model)) {
      MarkUnhealthy(replica, fmt::format("ranks disagree on the model: rank 0 has {}, rank {} has {}",
                                         Describe(model), w.rank, Describe(w.model)));
      return;
    }
    if (w.kv_blocks < 1) {
      MarkUnhealthy(replica, fmt::format("{} reported {} KV blocks", WorkerName(w), w.kv_blocks));
      return;
    }
    kv_blocks = std::min(kv_blocks, w.kv_blocks);
  }
  const ModelSpec spec = FromProto(model);
  if (Status s = spec.Validate(); !s.ok()) {
    MarkUnhealthy(replica, "the workers report an invalid model: " + s.message());
    return;
  }
  if (Status s = ValidateAgainstModel(config_, spec); !s.ok()) {
    MarkUnhealthy(replica, s.message());
    return;
  }
  if (model_ && !SameModel(*model_, model)) {
    MarkUnhealthy(replica, fmt::format("it serves {}, but the cluster serves {}", Describe(model), Describe(*model_)));
    return;
  }
  if (tokenizer_ && tokenizer_->vocab_size() != spec.vocab_size)
    spdlog::warn("the tokenizer has {} pieces but the model's vocabulary is {}", tokenizer_->vocab_size(),
                 spec.vocab_size);
  SchedulerConfig sc;
  sc.replica = replica.index();
  sc.block_size = config_.kv_cache.block_size;
  sc.max_step_tokens = config_.scheduler.max_step_tokens;
  sc.max_running = config_.scheduler.max_running;
  sc.max_seq_len = spec.max_seq_len;
  sc.pipeline_depth = config_.scheduler.pipeline_depth;
  sc.policy = *SchedulerPolicyFromName(config_.scheduler.policy);  // checked by Create()
  sc.batch_window = std::chrono::milliseconds(config_.scheduler.batch_window_ms);
  sc.max_batch = config_.scheduler.max_batch;
  // Never more blocks than the requests that may run at once can use (bounds the
  // allocator).
  const int64_t useful =
      static_cast<int64_t>(sc.running_limit()) * BlockAllocator::BlocksFor(spec.max_seq_len, sc.block_size);
  sc.n_blocks = static_cast<int>(std::min<int64_t>(kv_blocks, useful));
  replica.MakeReady(sc, model);
  RefreshKvCapacity();
  if (!model_) {
    model_ = model;
    spec_ = spec;
  }
  spdlog::info("replica {} ready: {}; {} KV blocks of {} tokens (workers hold {})", replica.index(), Describe(model),
               sc.n_blocks, sc.block_size, kv_blocks);
  AdmitQueued();
}

void Coordinator::MarkUnhealthy(Replica& replica, const std::string& reason) {
  if (replica.state() == Replica::State::kUnhealthy) return;
  const std::string message = fmt::format("replica {} is unhealthy: {}", replica.index(), reason);
  spdlog::error("{}", message);
  proto::CoordinatorMessage shutdown;
  shutdown.mutable_shutdown()->set_reason(message);
  for (WorkerSlot& w : replica.workers()) {
    if (!w.live()) continue;
    SendToWorker(w.identity, shutdown);
    worker_by_identity_.erase(w.identity);
  }
  const Status status = Unavailable(message);
  for (uint64_t id : replica.MakeUnhealthy(message))
    if (requests_.Find(id)) Fail(id, status);
  store_.Clear(replica.index());
  RefreshKvCapacity();
  if (!AnyReady() && !AnyStarting()) FailQueued(Unavailable("no healthy replica: " + UnhealthySummary()));
}

void Coordinator::HandleStepResult(const proto::StepResult& result, Clock::time_point now) {
  if (result.replica() < 0 || result.replica() >= config_.replicas) {
    spdlog::warn("step result for replica {}, which is not part of this cluster; ignored", result.replica());
    return;
  }
  Replica& replica = replicas_[result.replica()];
  if (replica.state() != Replica::State::kReady) {
    spdlog::debug("step result {} for replica {} ({}); ignored", result.seq(), replica.index(),
                  Replica::StateName(replica.state()));
    return;
  }
  WorkerSlot& rank0 = replica.worker(0);
  if (rank0.live()) rank0.last_seen = now;
  if (!result.error().empty()) {
    MarkUnhealthy(replica, fmt::format("step {} failed: {}", result.seq(), result.error()));
    return;
  }
  Result<AppliedStep> applied = replica.scheduler()->Apply(result);
  if (!applied.ok()) {
    spdlog::warn("replica {}: {}; ignored", replica.index(), applied.status().message());
    return;
  }
  replica.OnResult(result.seq(), now, applied->n_generated, result.step_seconds());
  if (applied->n_stale > 0)
    spdlog::debug("replica {} step {}: {} stale output(s)", replica.index(), result.seq(), applied->n_stale);
  for (const RequestEvent& event : applied->events) Deliver(event, now);
}

void Coordinator::CheckHealth(Clock::time_point now) {
  for (Replica& replica : replicas_) {
    if (replica.state() == Replica::State::kUnhealthy) continue;
    for (const WorkerSlot& w : replica.workers()) {
      if (!w.live()) continue;
      const Clock::duration limit = w.state == WorkerState::kReady ? heartbeat_timeout_ : startup_timeout_;
      const Clock::duration silence = now - w.last_seen;
      if (silence > limit) {
        MarkUnhealthy(replica, fmt::format("{} missed heartbeats for {:.1f} s", WorkerName(w), Seconds(silence)));
        break;
      }
    }
    if (replica.state() != Replica::State::kReady) continue;
    if (const auto oldest = replica.oldest_in_flight(); oldest && now - oldest->second > step_timeout_)
      MarkUnhealthy(replica, fmt::format("step {} got no result within {:.1f} s (heartbeat.step_timeout_ms)",
                                         oldest->first, Seconds(step_timeout_)));
  }
}

void Coordinator::SendHeartbeats(Clock::time_point now) {
  if (now < next_heartbeat_) return;
  next_heartbeat_ = now + heartbeat_interval_;
  for (const Replica& replica : replicas_) {
    for (const WorkerSlot& w : replica.workers()) {
      if (!w.live()) continue;
      proto::CoordinatorMessage m;
      proto::Heartbeat* hb = m.mutable_heartbeat();
      hb->set_replica(w.replica);
      hb->set_rank(w.rank);
      hb->set_last_plan_seq(replica.last_plan_seq());
      SendToWorker(w.identity, m);
    }
  }
}

void Coordinator::RunSteps(Clock::time_point now) {
  for (Replica& replica : replicas_) {
    Scheduler* scheduler = replica.scheduler();
    if (!scheduler) continue;
    while (scheduler->can_schedule() && scheduler->has_work()) {
      std::optional<proto::StepPlan> plan = scheduler->Schedule(now);
      if (!plan) break;
      for (const proto::PlanEntry& entry : plan->entries())
        if (TrackedRequest* t = requests_.Find(entry.request_id()); t && !t->first_step) t->first_step = now;
      const uint64_t seq = plan->seq();
      proto::CoordinatorMessage m;
      *m.mutable_plan() = std::move(*plan);
      const std::string topic = PlanTopic(replica.index());
      const std::string payload = Serialize(m);
      const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(topic), zmq::buffer(payload)};
      zmq::send_multipart(plans_, frames, zmq::send_flags::dontwait);
      replica.OnPlanPublished(seq, now);
    }
  }
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

void Coordinator::SendToClient(const std::string& identity, const proto::ServerMessage& message) {
  const std::string payload = Serialize(message);
  const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(identity), zmq::buffer(payload)};
  // ROUTER drops messages for clients that are gone; it never blocks.
  zmq::send_multipart(client_, frames, zmq::send_flags::dontwait);
}

void Coordinator::SendToWorker(const std::string& identity, const proto::CoordinatorMessage& message) {
  const std::string payload = Serialize(message);
  const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(identity), zmq::buffer(payload)};
  zmq::send_multipart(control_, frames, zmq::send_flags::dontwait);
}

}  // namespace flover
