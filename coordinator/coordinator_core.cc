// CoordinatorCore: construction, incoming messages, time, stop and status. See
// coordinator_core.h.
#include "coordinator/coordinator_core.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/cluster_config_proto.h"
#include "common/protocol.h"
#include "coordinator/admission.h"
#include "worker/model/model_tokenizer.h"

namespace flover {

Result<std::unique_ptr<CoordinatorCore>> CoordinatorCore::Create(ClusterConfig config, EndpointsConfig bound,
                                                                 Clock::duration drain_timeout,
                                                                 Clock::time_point now) {
  FLOVER_RETURN_IF_ERROR(config.Validate());
  FLOVER_ASSIGN_OR_RETURN(std::optional<Tokenizer> tokenizer,
                          LoadModelTokenizer(config.model.tokenizer, config.model.path));
  return std::unique_ptr<CoordinatorCore>(new CoordinatorCore(std::move(config), std::move(bound), std::move(tokenizer),
                                                              std::max(drain_timeout, Clock::duration::zero()), now));
}

CoordinatorCore::CoordinatorCore(ClusterConfig config, EndpointsConfig bound, std::optional<Tokenizer> tokenizer,
                                 Clock::duration drain_timeout, Clock::time_point now)
    : config_(std::move(config)),
      tokenizer_(std::move(tokenizer)),
      heartbeat_interval_(std::chrono::milliseconds(std::max(1, config_.heartbeat.interval_ms))),
      heartbeat_timeout_(std::chrono::milliseconds(std::max(1, config_.heartbeat.timeout_ms))),
      startup_timeout_(std::max<Clock::duration>(heartbeat_timeout_, kMinStartupTimeout)),
      step_timeout_(std::chrono::milliseconds(std::max(1, config_.heartbeat.step_timeout_ms))),
      drain_timeout_(drain_timeout),
      endpoints_(std::move(bound)),
      started_(now),
      next_heartbeat_(now),
      client_limiter_(config_.limits.status_per_client_per_second),
      next_client_prune_(now),
      next_status_build_(now) {
  ClusterConfig sent = config_;
  sent.endpoints = endpoints_;
  config_proto_ = ToProto(sent);
  replicas_.reserve(config_.replicas);
  for (int i = 0; i < config_.replicas; ++i) replicas_.emplace_back(i, config_.tensor_parallel);
}

// ---------------------------------------------------------------- events

void CoordinatorCore::OnClientMessage(const std::string& identity, ClientRole role,
                                      std::span<const std::string_view> frames, Clock::time_point now) {
  if (frames.size() != 1) {
    SendToClient(identity, ErrorReply("", InvalidArgument(fmt::format("a client message is one frame; got {}",
                                                                      frames.size()))));
    return;
  }
  const std::string_view payload = frames.front();
  Result<proto::ClientMessage> message = ParseClientMessage(payload);
  if (!message.ok()) {
    if (spdlog::should_log(spdlog::level::debug))
      if (auto more = client_log_.Allow(now))
        spdlog::debug("client message rejected: {}{}", message.status().ToString(), SuppressedSuffix(*more));
    // Answer with the request's id when the bytes are readable at all (unknown fields,
    // wrong version), so the client can tell which request was refused.
    proto::ClientMessage lenient;
    std::string id;
    if (lenient.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      if (lenient.has_submit()) id = lenient.submit().client_request_id();
      if (lenient.has_cancel()) id = lenient.cancel().client_request_id();
    }
    Refuse(identity, id, message.status());
    return;
  }
  switch (message->body_case()) {
    case proto::ClientMessage::kSubmit: HandleSubmit(identity, role, message->submit(), now); break;
    case proto::ClientMessage::kCancel: HandleCancel(identity, message->cancel(), now); break;
    case proto::ClientMessage::kStatus: HandleStatus(identity, role, now); break;
    case proto::ClientMessage::kReload: HandleReload(identity, role, now); break;
    case proto::ClientMessage::BODY_NOT_SET: break;  // rejected by ParseClientMessage
  }
}

void CoordinatorCore::OnWorkerConnectionClosed(Clock::time_point now) {
  // Find out whose, by sending: heartbeats every kProbeEvery for a while.
  probe_until_ = now + kProbeFor;
  next_heartbeat_ = now;
}

void CoordinatorCore::OnClientConnectionClosed(Clock::time_point now) {
  client_probe_until_ = now + kClientProbeFor;
  next_client_probe_ = now;
}

void CoordinatorCore::OnClientUnreachable(const std::string& identity, Clock::time_point now) {
  AbandonClient(identity, now);
}

void CoordinatorCore::OnClientNotReading(const std::string& identity, Clock::time_point now) {
  const bool first = client_limiter_.CutOff(identity, now);
  const int n = ForgetClient(identity, now);
  if (!first) return;  // counted when it was cut off
  ++clients_cut_off_;
  if (auto more = leaving_log_.Allow(now))
    spdlog::warn("a client does not read its replies ({} wait for it, limits.max_undelivered_per_client): cut off, "
                 "{} request(s) cancelled{}",
                 config_.limits.max_undelivered_per_client, n, SuppressedSuffix(*more));
}

void CoordinatorCore::Tick(Clock::time_point now) {
  if (!status_waiting_.empty() && now >= next_status_build_) SendStatus(now);
  if (now >= next_client_prune_) {
    client_limiter_.Prune(now);
    next_client_prune_ = now + ClientLimiter::kStatusWindow;
  }
  CheckHealth(now);
  SendHeartbeats(now);
  ProbeClients(now);
  for (const RendezvousStore::Reply& reply : store_.Expire(now)) {
    proto::CoordinatorMessage m;
    *m.mutable_store_value() = reply.value;
    SendToWorker(reply.identity, std::move(m));
  }
  ExpireQueued(now);
  ExpireDeadlines(now);
  RetireReplicas(now);
  RunSteps(now);
  ProbePlanTopics(now);
  PublishMetrics();
}

Clock::time_point CoordinatorCore::NextWake(Clock::time_point now) const {
  Clock::time_point wake = next_heartbeat_;
  if (now < probe_until_ || now < client_probe_until_) wake = std::min(wake, now + kProbeEvery);
  if (now < client_probe_until_) wake = std::min(wake, next_client_probe_);
  if (const auto deadline = store_.next_deadline()) wake = std::min(wake, *deadline);
  if (!deadlines_.empty()) wake = std::min(wake, deadlines_.begin()->first);
  if (drain_deadline_) wake = std::min(wake, *drain_deadline_);
  if (probing_topics_) wake = std::min(wake, next_topic_probe_);
  if (!status_waiting_.empty()) wake = std::min(wake, next_status_build_);
  for (const auto& [replica, deadline] : retire_deadlines_) wake = std::min(wake, deadline);
  // Silences and step timeouts are checked at every heartbeat, which comes often enough.
  // A dynamic batch window (a replica with its pipeline full is woken by the result
  // instead). A window that closed already was served by the last Tick(): at least
  // 1 ms then, never a hot loop.
  for (const Replica& replica : replicas_)
    if (const Scheduler* s = replica.scheduler(); s && s->can_schedule())
      if (const auto deadline = s->batch_deadline())
        wake = std::min(wake, std::max(*deadline, now + std::chrono::milliseconds(1)));
  return std::max(wake, now);
}

// ---------------------------------------------------------------- stop

void CoordinatorCore::RequestStop(Clock::time_point now) {
  ++stop_requests_;
  if (stop_requests_ > 1 || drain_deadline_ || drain_timeout_ <= Clock::duration::zero()) return;
  drain_deadline_ = now + drain_timeout_;
  if (requests_.size() > 0)
    spdlog::info("draining: {} request(s) in flight, for up to {:.1f} s (a second signal stops at once); new "
                 "requests are refused",
                 requests_.size(), Seconds(drain_timeout_));
}

bool CoordinatorCore::stopped(Clock::time_point now) const {
  if (stop_requests_ == 0) return false;
  if (stop_requests_ >= 2 || !drain_deadline_) return true;
  return requests_.size() == 0 || now >= *drain_deadline_;
}

void CoordinatorCore::Shutdown(const std::string& reason) {
  for (uint64_t id : requests_.ids()) Fail(id, Unavailable("the coordinator is shutting down"));
  queued_.clear();
  proto::CoordinatorMessage m;
  m.mutable_shutdown()->set_reason(reason);
  for (Replica& replica : replicas_)
    for (WorkerSlot& w : replica.workers())
      if (w.live()) SendToWorker(w.identity, m);
}

// ---------------------------------------------------------------- output

Outbox CoordinatorCore::TakeOutbox() { return std::exchange(outbox_, Outbox()); }

void CoordinatorCore::SendToClient(const std::string& identity, proto::ServerMessage message) {
  outbox_.clients.push_back({identity, std::move(message)});
}

void CoordinatorCore::SendToWorker(const std::string& identity, proto::CoordinatorMessage message) {
  outbox_.workers.push_back({identity, std::move(message)});
}

proto::ClusterStatus CoordinatorCore::BuildStatus(Clock::time_point now, ClientRole role) const {
  const bool admin = role == ClientRole::kAdmin;
  proto::ClusterStatus s;
  s.set_name(config_.name);
  if (model_) *s.mutable_model() = *model_;
  for (const Replica& r : replicas_) {
    if (removed_.contains(r.index())) continue;  // gone; only its slot waits for the others
    proto::ReplicaStatus* rs = s.add_replicas();
    rs->set_replica(r.index());
    rs->set_state(Retiring(r) ? "retiring" : Replica::StateName(r.state()));
    for (const WorkerSlot& w : r.workers()) {
      proto::WorkerStatus* ws = rs->add_workers();
      ws->set_replica(w.replica);
      ws->set_rank(w.rank);
      ws->set_state(WorkerStateName(w.state));
      if (admin) {
        ws->set_host(w.host);
        ws->set_pid(w.pid);
      }
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
    rs->set_step_wait_seconds(r.step_wait_seconds());
    if (admin || r.error().empty()) {
      rs->set_error(r.error());
    } else {
      rs->set_error(
          fmt::format("replica {} failed (the reason, which names its workers, is shown to admins)", r.index()));
    }
  }
  s.set_queued(NQueued());
  s.set_completed(completed_);
  s.set_moved(moved_);
  s.set_abandoned(abandoned_);
  s.set_rejected_messages(rejected_);
  s.set_clients_cut_off(clients_cut_off_);
  s.set_config_generation(config_generation_);
  const LatencyWindow::Summary latency = latency_.Summarize(now);
  proto::LatencySummary* ls = s.mutable_latency();
  ls->set_window_seconds(Seconds(latency_.window()));
  ls->set_requests(static_cast<uint32_t>(latency.requests));
  const std::pair<proto::LatencyPercentiles*, const LatencyStats*> fields[] = {
      {ls->mutable_queue(), &latency.queue},
      {ls->mutable_first_token(), &latency.first_token},
      {ls->mutable_per_token(), &latency.per_token},
      {ls->mutable_total(), &latency.total}};
  for (const auto& [out, in] : fields) {
    out->set_mean(in->mean);
    out->set_p50(in->p50);
    out->set_p90(in->p90);
    out->set_p99(in->p99);
  }
  s.set_uptime_seconds(Seconds(now - started_));
  return s;
}

void CoordinatorCore::PublishMetrics() {
  gauges_.replicas.resize(replicas_.size());
  for (size_t i = 0; i < replicas_.size(); ++i) {
    const Replica& r = replicas_[i];
    Metrics::ReplicaGauges& g = gauges_.replicas[i];
    g = Metrics::ReplicaGauges{.state = Replica::StateName(r.state()),
                               .workers_total = static_cast<int>(r.workers().size()),
                               .steps = r.steps(),
                               .tokens_generated = r.tokens_generated()};
    for (const WorkerSlot& w : r.workers()) {
      g.workers_registered += w.live();
      g.workers_ready += w.state == WorkerState::kReady;
    }
    if (const Scheduler* s = r.scheduler()) {
      g.running = s->n_running();
      g.waiting = s->n_waiting();
      g.kv_blocks_used = s->n_used_blocks();
      g.kv_blocks_total = s->n_blocks();
    }
  }
  gauges_.queued = static_cast<int>(queued_.size());
  gauges_.moved = moved_;
  gauges_.draining = draining();
  metrics_.Publish(gauges_);
}

// ---------------------------------------------------------------- helpers

bool CoordinatorCore::AnyReady() const {
  return std::any_of(replicas_.begin(), replicas_.end(), [this](const Replica& r) { return Accepting(r); });
}

bool CoordinatorCore::AnyStarting() const {
  return std::any_of(replicas_.begin(), replicas_.end(), [this](const Replica& r) {
    return r.state() == Replica::State::kStarting && !Retiring(r);
  });
}

int CoordinatorCore::NQueued() const {
  int n = static_cast<int>(queued_.size());
  for (const Replica& r : replicas_)
    if (const Scheduler* s = r.scheduler()) n += s->n_waiting();
  return n;
}

void CoordinatorCore::RefreshKvCapacity() {
  int64_t smallest = 0;
  for (const Replica& r : replicas_) {
    if (!Accepting(r)) continue;
    const int64_t pool = static_cast<int64_t>(r.n_kv_blocks()) * config_.kv_cache.block_size;
    if (smallest == 0 || pool < smallest) smallest = pool;
  }
  if (smallest > 0) kv_capacity_tokens_ = smallest;
}

std::string CoordinatorCore::UnhealthySummary() const {
  std::string out;
  for (const Replica& r : replicas_) {
    if (r.state() != Replica::State::kUnhealthy || Retiring(r)) continue;
    if (!out.empty()) out += "; ";
    out += r.error();
  }
  return out.empty() ? "no replica is ready" : out;
}

}  // namespace flover
