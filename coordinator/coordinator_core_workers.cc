// The worker side of the coordinator's loop: registration, readiness, step results,
// health, heartbeats, and publishing the step plans. See coordinator_core.h.
#include "coordinator/coordinator_core.h"

#include <algorithm>
#include <array>
#include <limits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/block_allocator.h"
#include "common/log_limiter.h"
#include "common/protocol.h"
#include "common/request_params.h"

namespace flover {
namespace {

// Models agree when every shape field does (descriptions may differ per rank).
bool SameModel(const proto::ModelInfo& a, const proto::ModelInfo& b) {
  return a.dim() == b.dim() && a.hidden_dim() == b.hidden_dim() && a.n_layers() == b.n_layers() &&
         a.n_heads() == b.n_heads() && a.n_kv_heads() == b.n_kv_heads() && a.vocab_size() == b.vocab_size() &&
         a.max_seq_len() == b.max_seq_len() && a.bos_id() == b.bos_id() && a.eos_id() == b.eos_id() &&
         std::equal(a.extra_eos_ids().begin(), a.extra_eos_ids().end(), b.extra_eos_ids().begin(),
                    b.extra_eos_ids().end());
}

// The worker's own text of its model's shape where it sent one (ModelInfo carries only
// the fields the coordinator uses, not the architecture's), at most kMaxShapeChars.
std::string Describe(const proto::ModelInfo& m) {
  constexpr size_t kMaxShapeChars = 256;
  std::string s = m.shape().empty() ? FromProto(m).ToString() : m.shape().substr(0, kMaxShapeChars);
  if (!m.description().empty()) s = m.description() + " (" + s + ")";
  return s;
}

std::string WorkerName(const WorkerSlot& w) {
  return fmt::format("worker {}/{} (pid {})", w.replica, w.rank, w.pid);
}

}  // namespace

WorkerSlot* CoordinatorCore::FindWorker(const std::string& identity) {
  auto it = worker_by_identity_.find(identity);
  if (it == worker_by_identity_.end()) return nullptr;
  return &replicas_[it->second.first].worker(it->second.second);
}

void CoordinatorCore::OnWorkerMessage(const std::string& identity, std::span<const std::string_view> frames,
                                      Clock::time_point now) {
  if (frames.size() != 1) {
    Reject(fmt::format("a worker message is one frame; got {}", frames.size()), now);
    return;
  }
  Result<proto::WorkerMessage> message = Parse<proto::WorkerMessage>(frames.front());
  if (!message.ok()) {
    Reject("unreadable: " + message.status().ToString(), now);
    return;
  }
  WorkerSlot* slot = FindWorker(identity);
  if (slot) slot->last_seen = now;
  const proto::WorkerMessage::BodyCase body = message->body_case();
  if (body == proto::WorkerMessage::kRegister) {
    HandleRegister(identity, message->register_(), now);
    return;
  }
  if (!slot) {
    // Heartbeats of workers that were just told to shut down, or registered with a
    // coordinator that has since restarted, are expected: not counted.
    if (body != proto::WorkerMessage::kHeartbeat)
      Reject(fmt::format("message (body {}) from a connection that is not a registered live worker",
                         static_cast<int>(body)),
             now);
    TellToRegister(identity);
    return;
  }
  Replica& replica = replicas_[slot->replica];
  // A message that names a replica and rank must name the sender's own.
  auto claims_own = [&](int replica_index, int rank, const char* what) {
    if (replica_index == slot->replica && rank == slot->rank) return true;
    Reject(fmt::format("{} sends a {} as worker {}/{}", WorkerName(*slot), what, replica_index, rank), now);
    return false;
  };
  switch (body) {
    case proto::WorkerMessage::kStepResult: {
      const proto::StepResult& result = message->step_result();
      if (slot->rank != 0 || result.replica() != slot->replica || replica.state() != Replica::State::kReady) {
        Reject(fmt::format("{} sends a step result for replica {}; only rank 0 of a ready replica sends its own "
                           "(its replica is {})",
                           WorkerName(*slot), result.replica(), Replica::StateName(replica.state())),
               now);
        break;
      }
      HandleStepResult(*slot, result, now);
      break;
    }
    case proto::WorkerMessage::kReady:
      if (claims_own(message->ready().replica(), message->ready().rank(), "ready"))
        HandleReady(*slot, message->ready(), now);
      break;
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
      (void)claims_own(message->heartbeat().replica(), message->heartbeat().rank(), "heartbeat");
      break;
    case proto::WorkerMessage::kFailure:
      if (claims_own(message->failure().replica(), message->failure().rank(), "failure"))
        MarkUnhealthy(replica, fmt::format("{} failed: {}", WorkerName(*slot), message->failure().message()), now);
      break;
    case proto::WorkerMessage::kRegister:
    case proto::WorkerMessage::BODY_NOT_SET:
      Reject(fmt::format("{} sends a message without a body", WorkerName(*slot)), now);
      break;
  }
}

void CoordinatorCore::Reject(const std::string& why, Clock::time_point now) {
  ++rejected_;
  if (const std::optional<uint64_t> more = rejected_log_.Allow(now))
    spdlog::warn("control socket: {}; dropped{}", why, SuppressedSuffix(*more));
}

void CoordinatorCore::TellToRegister(const std::string& identity) {
  // A worker this coordinator does not know: one registered with a coordinator that has
  // since restarted, or one declared dead. It must start again (exit non-zero, so that
  // its supervisor restarts it) and register; until then it would wait for heartbeats
  // that never come.
  proto::CoordinatorMessage m;
  m.mutable_shutdown()->set_reason(
      "the coordinator does not know this worker (it restarted, or declared the worker dead); start again to "
      "register");
  m.mutable_shutdown()->set_replica_failed(true);
  SendToWorker(identity, m);
}

void CoordinatorCore::HandleRegister(const std::string& identity, const proto::RegisterWorker& reg,
                                 Clock::time_point now) {
  proto::CoordinatorMessage m;
  proto::RegisterReply* reply = m.mutable_register_reply();
  auto reject = [&](const std::string& why, bool retry = false) {
    if (const std::optional<uint64_t> more = refused_log_.Allow(now))
      spdlog::warn("registration of replica {} rank {} (pid {} on {}) {}: {}{}", reg.replica(), reg.rank(), reg.pid(),
                   reg.host(), retry ? "deferred" : "rejected", why, SuppressedSuffix(*more));
    reply->set_accepted(false);
    reply->set_error(why);
    reply->set_retry(retry);
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
    // Is the live one still there? A heartbeat now: when the send finds it gone, the
    // replica fails (OnWorkerUnreachable) and the next registration of this rank is
    // admitted. While it answers, nobody else takes its place.
    proto::CoordinatorMessage probe;
    probe.mutable_heartbeat()->set_replica(slot.replica);
    probe.mutable_heartbeat()->set_rank(slot.rank);
    probe.mutable_heartbeat()->set_last_plan_seq(replica.last_plan_seq());
    SendToWorker(slot.identity, std::move(probe));
    reject(fmt::format("replica {} rank {} is already live (pid {} on {}); registering again succeeds once that "
                       "process is gone",
                       slot.replica, slot.rank, slot.pid, slot.host),
           /*retry=*/true);
    return;
  }
  if (slot.live()) {
    if (auto more = refused_log_.Allow(now))
      spdlog::info("{} registered again (same connection){}", WorkerName(slot), SuppressedSuffix(*more));
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
  *reply->mutable_config() = config_proto_;
  reply->set_plans_endpoint(endpoints_.plans);
  reply->set_plan_topic(PlanTopic(slot.replica));
  SendToWorker(identity, m);
}

void CoordinatorCore::HandleReady(WorkerSlot& slot, const proto::WorkerReady& ready, Clock::time_point now) {
  if (slot.state != WorkerState::kRegistered) {
    Reject(fmt::format("{} reports ready twice", WorkerName(slot)), now);
    return;
  }
  slot.state = WorkerState::kReady;
  slot.model = ready.model();
  slot.kv_blocks = ready.kv_blocks();
  spdlog::info("{} ready: {}, {} KV blocks", WorkerName(slot), Describe(slot.model), slot.kv_blocks);
  Replica& replica = replicas_[slot.replica];
  if (replica.state() == Replica::State::kStarting && replica.all_ready()) TryMakeReady(replica, now);
}

void CoordinatorCore::TryMakeReady(Replica& replica, Clock::time_point now) {
  const std::vector<WorkerSlot>& workers = replica.workers();
  const proto::ModelInfo& model = workers.front().model;
  int kv_blocks = std::numeric_limits<int>::max();
  for (const WorkerSlot& w : workers) {
    if (!SameModel(w.model, model)) {
      MarkUnhealthy(replica, fmt::format("ranks disagree on the model: rank 0 has {}, rank {} has {}",
                                         Describe(model), w.rank, Describe(w.model)), now);
      return;
    }
    if (w.kv_blocks < 1) {
      MarkUnhealthy(replica, fmt::format("{} reported {} KV blocks", WorkerName(w), w.kv_blocks), now);
      return;
    }
    kv_blocks = std::min(kv_blocks, w.kv_blocks);
  }
  const ModelSpec spec = FromProto(model);
  if (Status s = spec.Validate(); !s.ok()) {
    MarkUnhealthy(replica, "the workers report an invalid model: " + s.message(), now);
    return;
  }
  if (Status s = ValidateAgainstModel(config_, spec); !s.ok()) {
    MarkUnhealthy(replica, s.message(), now);
    return;
  }
  if (model_ && !SameModel(*model_, model)) {
    MarkUnhealthy(replica, fmt::format("it serves {}, but the cluster serves {}", Describe(model), Describe(*model_)), now);
    return;
  }
  if (tokenizer_ && tokenizer_->vocab_size() != spec.vocab_size)
    spdlog::warn("the tokenizer has {} pieces but the model's vocabulary is {}", tokenizer_->vocab_size(),
                 spec.vocab_size);
  SchedulerConfig sc;
  sc.replica = replica.index();
  sc.block_size = config_.kv_cache.block_size;
  sc.max_seq_len = spec.max_seq_len;
  sc.bos_id = spec.bos_id;
  sc.eos_id = spec.eos_id;
  sc.extra_eos_ids = spec.extra_eos_ids;
  ApplySchedulerSettings(sc);
  // Never more blocks than the requests that may run at once can use (bounds the
  // allocator).
  sc.n_blocks = CapKvBlocks(kv_blocks, sc.running_limit(), spec.max_seq_len, sc.block_size);
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

void CoordinatorCore::MarkUnhealthy(Replica& replica, const std::string& reason, Clock::time_point now) {
  if (replica.state() == Replica::State::kUnhealthy) return;
  recovery_until_ = now + std::chrono::milliseconds(config_.scheduler.failover_wait_ms);
  const std::string message = fmt::format("replica {} is unhealthy: {}", replica.index(), reason);
  spdlog::error("{}", message);
  proto::CoordinatorMessage shutdown;
  shutdown.mutable_shutdown()->set_reason(message);
  shutdown.mutable_shutdown()->set_replica_failed(true);
  for (WorkerSlot& w : replica.workers()) {
    if (!w.live()) continue;
    SendToWorker(w.identity, shutdown);
    worker_by_identity_.erase(w.identity);
  }
  const Status status = Unavailable(message);
  const std::string for_clients =
      fmt::format("replica {} is unhealthy (the reason, which names its workers, is shown to admins)", replica.index());
  std::vector<uint64_t> waiting;
  for (TakenRequest& taken : replica.MakeUnhealthy(message))
    if (requests_.Find(taken.id) && !Failover(taken, message, &waiting)) Fail(taken.id, status, for_clients);
  queued_.insert(queued_.begin(), waiting.begin(), waiting.end());  // oldest first, ahead of new ones
  store_.Clear(replica.index());
  RefreshKvCapacity();
  if (AnyReady() || AnyStarting()) return;
  const std::string why = "no healthy replica: " + UnhealthySummary();
  if (config_.scheduler.failover_wait_ms > 0)
    HoldQueued(why);
  else
    FailQueued(Unavailable(why), kNoHealthyReplicaForClients);
}

bool CoordinatorCore::NothingLeft(const TakenRequest& request) const {
  return StopsByLength(static_cast<int>(request.params.prompt.size()), static_cast<int>(request.generated.size()),
                       request.params.stop.max_tokens, spec_.max_seq_len);
}

void CoordinatorCore::GoOn(TakenRequest& request, const std::string& why, Clock::time_point wait_until,
                           std::vector<uint64_t>* waiting) {
  if (AnyReady()) {
    Assign(request.id, std::move(request.params), std::move(request.generated));
    return;
  }
  TrackedRequest* t = requests_.Find(request.id);
  t->replica = -1;
  t->params = std::move(request.params);
  t->generated_before = std::move(request.generated);
  t->failure = why;
  t->queue_deadline = wait_until;
  waiting->push_back(request.id);
}

bool CoordinatorCore::Failover(TakenRequest& request, const std::string& why, std::vector<uint64_t>* waiting) {
  TrackedRequest* t = requests_.Find(request.id);
  const bool ready = AnyReady();
  if (t->failovers >= kMaxFailovers || (!ready && config_.scheduler.failover_wait_ms <= 0)) return false;
  // Nothing left to generate (its workers never reported the finish): nothing to move.
  if (NothingLeft(request)) return false;
  ++t->failovers;
  spdlog::warn("request {} ('{}') {} from failed replica {} with {} generated tokens (failover {} of at most {})",
               request.id, t->client_request_id, ready ? "moves" : "waits for a ready replica", t->replica,
               request.generated.size(), t->failovers, kMaxFailovers);
  GoOn(request, why, recovery_until_, waiting);
  return true;
}

void CoordinatorCore::HandleStepResult(const WorkerSlot& sender, const proto::StepResult& result,
                                       Clock::time_point now) {
  Replica& replica = replicas_[sender.replica];
  if (!result.error().empty()) {
    MarkUnhealthy(replica, fmt::format("step {} failed: {}", result.seq(), result.error()), now);
    return;
  }
  // A token outside the vocabulary (or a log-probability that cannot be one) means a
  // broken worker (or device): its replica is not to be trusted, and the token must not
  // reach a client or another replica.
  for (const proto::TokenOutput& out : result.outputs()) {
    if (out.token() < 0 || out.token() >= spec_.vocab_size) {
      MarkUnhealthy(replica, fmt::format("step {} returned token {} for request {}, outside the vocabulary of {}",
                                         result.seq(), out.token(), out.request_id(), spec_.vocab_size), now);
      return;
    }
    if (Status s = CheckOutputLogprobs(out, spec_.vocab_size); !s.ok()) {
      MarkUnhealthy(replica, fmt::format("step {} returned broken log-probabilities: {}", result.seq(), s.message()),
                    now);
      return;
    }
  }
  // A result that cannot be the honest answer to the plan: the replica's workers are
  // broken, and their requests go on elsewhere from what was delivered.
  Result<AppliedStep> applied = replica.scheduler()->Apply(result);
  if (!applied.ok()) {
    MarkUnhealthy(replica, fmt::format("{} sent a wrong result: {}", WorkerName(sender), applied.status().message()),
                  now);
    return;
  }
  replica.OnResult(result.seq(), now, applied->n_generated, result.step_seconds(), result.wait_seconds());
  if (applied->n_stale > 0)
    spdlog::debug("replica {} step {}: {} stale output(s)", replica.index(), result.seq(), applied->n_stale);
  for (const RequestEvent& event : applied->events) Deliver(event, now);
}

void CoordinatorCore::CheckHealth(Clock::time_point now) {
  for (Replica& replica : replicas_) {
    if (replica.state() == Replica::State::kUnhealthy) continue;
    for (const WorkerSlot& w : replica.workers()) {
      if (!w.live()) continue;
      const Clock::duration limit = w.state == WorkerState::kReady ? heartbeat_timeout_ : startup_timeout_;
      const Clock::duration silence = now - w.last_seen;
      if (silence > limit) {
        MarkUnhealthy(replica, fmt::format("{} missed heartbeats for {:.1f} s", WorkerName(w), Seconds(silence)), now);
        break;
      }
    }
    if (replica.state() != Replica::State::kReady) continue;
    if (const auto oldest = replica.oldest_in_flight(); oldest && now - oldest->second > step_timeout_)
      MarkUnhealthy(replica, fmt::format("step {} got no result within {:.1f} s (heartbeat.step_timeout_ms)",
                                         oldest->first, Seconds(step_timeout_)), now);
  }
}

void CoordinatorCore::SendHeartbeats(Clock::time_point now) {
  if (now < next_heartbeat_) return;
  next_heartbeat_ = now + (now < probe_until_ ? std::min<Clock::duration>(kProbeEvery, heartbeat_interval_)
                                              : heartbeat_interval_);
  for (Replica& replica : replicas_) {
    for (const WorkerSlot& w : replica.workers()) {
      if (!w.live()) continue;
      proto::CoordinatorMessage m;
      proto::Heartbeat* hb = m.mutable_heartbeat();
      hb->set_replica(w.replica);
      hb->set_rank(w.rank);
      hb->set_last_plan_seq(replica.last_plan_seq());
      SendToWorker(w.identity, std::move(m));
    }
  }
}

void CoordinatorCore::OnWorkerUnreachable(const std::string& identity, Clock::time_point now) {
  const WorkerSlot* gone = FindWorker(identity);
  if (!gone) return;  // told to shut down already
  MarkUnhealthy(replicas_[gone->replica],
                fmt::format("{} disconnected (its process exited, or the network dropped its connection to the "
                            "coordinator)",
                            WorkerName(*gone)),
                now);
}

void CoordinatorCore::ProbePlanTopics(Clock::time_point now) {
  if (now < next_topic_probe_) return;
  probing_topics_ = false;
  for (const Replica& replica : replicas_) {
    if (replica.state() != Replica::State::kStarting) continue;
    const std::vector<WorkerSlot>& workers = replica.workers();
    if (std::none_of(workers.begin(), workers.end(),
                     [](const WorkerSlot& w) { return w.state == WorkerState::kRegistered; }))
      continue;
    outbox_.topic_probes.push_back(replica.index());
    probing_topics_ = true;
  }
  if (probing_topics_) next_topic_probe_ = now + kProbeEvery;
}

void CoordinatorCore::RunSteps(Clock::time_point now) {
  for (Replica& replica : replicas_) {
    Scheduler* scheduler = replica.scheduler();
    if (!scheduler) continue;
    while (scheduler->can_schedule() && scheduler->has_work()) {
      std::optional<proto::StepPlan> plan = scheduler->Schedule(now);
      if (!plan) break;
      for (const proto::PlanEntry& entry : plan->entries())
        if (TrackedRequest* t = requests_.Find(entry.request_id()); t && !t->first_step) {
          t->first_step = now;
          metrics_.RequestStarted(t->prompt_tokens, Seconds(now - t->submitted));
        }
      metrics_.StepPlanned(plan->entries_size(), plan->resets_size());
      replica.OnPlanPublished(plan->seq(), now);
      Outbox::Plan& published = outbox_.plans.emplace_back();
      published.replica = replica.index();
      *published.message.mutable_plan() = std::move(*plan);
    }
  }
}

}  // namespace flover
