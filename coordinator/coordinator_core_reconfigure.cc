// CoordinatorCore: live reconfiguration (a reload of the cluster file) and the
// retirement of the replicas it removes. See coordinator_core.h.
#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/cluster_config_proto.h"
#include "common/protocol.h"
#include "coordinator/config_reload.h"
#include "coordinator/coordinator_core.h"

namespace flover {

void CoordinatorCore::ApplySchedulerSettings(SchedulerConfig& sc) const {
  sc.max_step_tokens = config_.scheduler.max_step_tokens;
  sc.max_running = config_.scheduler.max_running;
  sc.pipeline_depth = config_.scheduler.pipeline_depth;
  sc.policy = config_.scheduler.policy;
  sc.batch_window = std::chrono::milliseconds(config_.scheduler.batch_window_ms);
  sc.max_batch = config_.scheduler.max_batch;
}

CoordinatorCore::Reconfigured CoordinatorCore::Reconfigure(const ClusterConfig& next, Clock::time_point now) {
  const std::string summary = DescribeLiveChange(config_, next);
  config_.source = next.source;
  config_.replicas = next.replicas;
  config_.workers = next.workers;
  config_.scheduler = next.scheduler;
  ClusterConfig sent = config_;
  sent.endpoints = endpoints_;
  config_proto_ = ToProto(sent);  // what workers registering from now on are told

  for (int i = 0; i < config_.replicas; ++i) {
    if (i == static_cast<int>(replicas_.size())) {
      replicas_.emplace_back(i, config_.tensor_parallel);
    } else if (removed_.erase(i) > 0) {
      replicas_[i] = Replica(i, config_.tensor_parallel);  // gone: starts again empty
    } else if (retire_deadlines_.erase(i) > 0) {
      spdlog::info("replica {} stays: its retirement is cancelled", i);
    }
  }
  for (int i = config_.replicas; i < static_cast<int>(replicas_.size()); ++i)
    if (!removed_.contains(i) && !retire_deadlines_.contains(i)) retire_deadlines_[i] = now + drain_timeout_;

  for (Replica& replica : replicas_) {
    Scheduler* s = replica.scheduler();
    if (s == nullptr) continue;
    SchedulerConfig sc = s->config();
    ApplySchedulerSettings(sc);
    s->UpdateSettings(sc);
  }
  ++config_generation_;
  spdlog::info("config generation {} ({}): {}", config_generation_, config_.source.empty() ? "reload" : config_.source,
               summary);
  RetireReplicas(now);
  RefreshKvCapacity();
  AdmitQueued();
  return {config_generation_, summary};
}

void CoordinatorCore::HandleReload(const std::string& identity, ClientRole role, Clock::time_point now) {
  if (role != ClientRole::kAdmin) {
    SendToClient(identity, ErrorReply("", PermissionDenied("reloading the cluster file is for admin keys only")));
    return;
  }
  // Each reload reads files: it shares the status requests' rate per connection.
  if (!client_limiter_.AllowStatus(identity, now)) {
    SendToClient(identity, ErrorReply("", ResourceExhausted(fmt::format(
                                              "reload: at most {} status or reload requests per second per "
                                              "connection (limits.status_per_client_per_second)",
                                              config_.limits.status_per_client_per_second))));
    return;
  }
  outbox_.reloads.push_back(identity);
}

void CoordinatorCore::AnswerReload(const std::string& identity, const Result<Reconfigured>& result) {
  if (!result.ok()) {
    SendToClient(identity, ErrorReply("", result.status()));
    return;
  }
  proto::ServerMessage reply;
  reply.mutable_reload()->set_config_generation(result->generation);
  reply.mutable_reload()->set_summary(result->summary);
  SendToClient(identity, std::move(reply));
}

void CoordinatorCore::RetireReplicas(Clock::time_point now) {
  for (int i = config_.replicas; i < static_cast<int>(replicas_.size()); ++i) {
    if (removed_.contains(i)) continue;
    const Scheduler* s = replicas_[i].scheduler();
    if (s != nullptr && s->has_work() && now < retire_deadlines_.at(i)) continue;
    RemoveReplica(replicas_[i], now);
  }
  while (static_cast<int>(replicas_.size()) > config_.replicas && removed_.contains(replicas_.size() - 1)) {
    removed_.erase(static_cast<int>(replicas_.size()) - 1);
    replicas_.pop_back();
  }
}

void CoordinatorCore::RemoveReplica(Replica& replica, Clock::time_point now) {
  const int index = replica.index();
  const std::string reason =
      fmt::format("replica {} was removed from the cluster (config generation {})", index, config_generation_);
  proto::CoordinatorMessage shutdown;
  shutdown.mutable_shutdown()->set_reason(reason);
  shutdown.mutable_shutdown()->set_replica_failed(false);  // a clean exit (0): nothing to restart
  for (WorkerSlot& w : replica.workers()) {
    if (!w.live()) continue;
    SendToWorker(w.identity, shutdown);
    worker_by_identity_.erase(w.identity);
  }
  int n_moved = 0;
  std::vector<uint64_t> waiting;
  if (replica.state() != Replica::State::kUnhealthy) {
    for (TakenRequest& taken : replica.MakeUnhealthy(reason)) {
      if (!requests_.Find(taken.id)) continue;
      if (MoveOn(taken, now, &waiting)) {
        ++n_moved;
      } else {
        Fail(taken.id, Unavailable(reason + " before the request finished"));
      }
    }
  }
  queued_.insert(queued_.begin(), waiting.begin(), waiting.end());  // oldest first, ahead of new ones
  store_.Clear(index);
  retire_deadlines_.erase(index);
  removed_.insert(index);
  spdlog::info("{}{}", reason, n_moved > 0 ? fmt::format("; {} request(s) moved on", n_moved) : "");
}

bool CoordinatorCore::MoveOn(TakenRequest& request, Clock::time_point now, std::vector<uint64_t>* waiting) {
  if (NothingLeft(request)) return false;
  const TrackedRequest* t = requests_.Find(request.id);
  spdlog::info("request {} ('{}') moves on from retired replica {} with {} generated tokens", request.id,
               t->client_request_id, t->replica, request.generated.size());
  GoOn(request, fmt::format("replica {} was removed from the cluster and no other replica is ready", t->replica),
       now + std::chrono::milliseconds(config_.scheduler.failover_wait_ms), waiting);
  return true;
}

}  // namespace flover
