// The client API of the coordinator's loop: submissions, cancellations, status, and
// what goes back to the clients (tokens, Done, errors). See coordinator_core.h.
#include "coordinator/coordinator_core.h"

#include <algorithm>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/protocol.h"
#include "coordinator/admission.h"

namespace flover {

void CoordinatorCore::HandleSubmit(const std::string& identity, ClientRole role, const proto::SubmitRequest& submit,
                                   Clock::time_point now) {
  // Valid once admitted; until then only its start is echoed.
  const std::string& cid = submit.client_request_id();
  if (draining()) {
    Refuse(identity, cid, Unavailable("the coordinator is shutting down; no new requests"));
    return;
  }
  AdmissionContext context;
  context.tokenizer = tokenizer();
  context.model = model_ ? &spec_ : nullptr;
  context.kv_capacity_tokens = kv_capacity_tokens_;
  context.id_in_flight = requests_.FindByClient(identity, cid) != nullptr;
  context.n_queued = NQueued();
  context.max_queued = config_.scheduler.max_queued;
  context.client_in_flight = IsHttpPeer(identity) ? 0 : requests_.CountOf(identity);  // http.* bounds it
  context.limits = config_.limits;
  Result<RequestParams> params = Admit(submit, context);
  if (!params.ok()) {
    if (spdlog::should_log(spdlog::level::debug))
      if (auto more = client_log_.Allow(now))
        spdlog::debug("request '{}' rejected: {}{}", Echoed(cid), params.status().ToString(), SuppressedSuffix(*more));
    Refuse(identity, cid, params.status());
    return;
  }
  const bool ready = AnyReady();
  const bool starting = AnyStarting();
  if (!ready && !starting && now >= recovery_until_) {
    Refuse(identity, cid,
           Unavailable(role == ClientRole::kAdmin ? "no healthy replica: " + UnhealthySummary()
                                                  : std::string(kNoHealthyReplicaForClients)));
    return;
  }

  TrackedRequest t;
  t.id = next_request_id_++;
  t.client = identity;
  t.client_request_id = cid;
  t.role = role;
  t.stream = submit.stream();
  t.priority = submit.priority();
  t.prompt_tokens = static_cast<int>(params->prompt.size());
  t.last_prompt_token = params->prompt.empty() ? -1 : params->prompt.back();
  if (tokenizer_) t.decoder = TokenStreamDecoder(*tokenizer_, t.last_prompt_token);
  t.want_logprobs = params->sampling.logprobs;
  if (!params->stop.stop_strings.empty()) t.stop_strings.emplace(params->stop.stop_strings);
  t.submitted = now;
  if (submit.timeout_ms() > 0) {
    t.deadline = now + std::chrono::milliseconds(submit.timeout_ms());
    deadlines_.emplace(*t.deadline, t.id);
  }
  const uint64_t id = t.id;
  if (ready) {
    requests_.Add(std::move(t));
    Assign(id, std::move(params).value());
    return;
  }
  // No replica is ready yet: queue until one is, or until the startup timeout passes
  // (the recovery window closes, when every replica failed).
  t.params = std::move(params).value();
  t.model_checked = model_.has_value();
  if (starting) {
    t.queue_deadline = now + startup_timeout_;
  } else {
    t.queue_deadline = recovery_until_;
    t.failure = "no healthy replica: " + UnhealthySummary();
  }
  requests_.Add(std::move(t));
  queued_.push_back(id);
  spdlog::debug("request {} ('{}') queued: no replica is ready {}", id, cid,
                starting ? "yet" : "while the failed ones may come back");
}

void CoordinatorCore::Refuse(const std::string& identity, const std::string& cid, const Status& status) {
  metrics_.RequestRefused(status.code());
  if (!cid.empty() && requests_.FindByClient(identity, cid) != nullptr) {
    SendToClient(identity, ErrorReply("", Status(status.code(), status.message() + " (a message about request '" +
                                                                    Echoed(cid) + "', which is in flight and goes on)")));
    return;
  }
  SendToClient(identity, ErrorReply(Echoed(cid), status));
}

void CoordinatorCore::Assign(uint64_t id, RequestParams params, std::vector<int> generated) {
  TrackedRequest* t = requests_.Find(id);
  FLOVER_CHECK(t != nullptr) << "request " << id;
  Replica* best = nullptr;
  for (Replica& r : replicas_)
    if (Accepting(r) && (!best || r.load() < best->load())) best = &r;
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
  params.stop.stop_strings.clear();  // applied here (t->stop_strings); the workers need none
  best->scheduler()->Add(id, std::move(params), t->priority, t->submitted, std::move(generated));
  t->failure.clear();
  if (t->accepted) {  // moved on from another replica: the client got its Accepted the first time
    ++moved_;
    return;
  }
  t->accepted = true;
  proto::ServerMessage reply;
  proto::Accepted* accepted = reply.mutable_accepted();
  accepted->set_client_request_id(t->client_request_id);
  accepted->set_request_id(id);
  accepted->set_prompt_tokens(t->prompt_tokens);
  accepted->set_replica(best->index());
  SendToClient(t->client, std::move(reply));
}

void CoordinatorCore::AdmitQueued() {
  while (!queued_.empty() && AnyReady()) {
    const uint64_t id = queued_.front();
    queued_.pop_front();
    TrackedRequest* t = requests_.Find(id);
    if (!t) continue;
    Assign(id, std::move(t->params), std::move(t->generated_before));
  }
}

void CoordinatorCore::ExpireQueued(Clock::time_point now) {
  // Deadlines are not in queue order: requests moved from a failed replica go first.
  for (auto it = queued_.begin(); it != queued_.end();) {
    TrackedRequest* t = requests_.Find(*it);
    if (t && t->queue_deadline > now) {
      ++it;
      continue;
    }
    it = queued_.erase(it);
    if (!t) continue;
    if (!t->failure.empty())
      Fail(t->id,
           Unavailable(fmt::format("{}; no replica became ready within {:.1f} s", t->failure,
                                   config_.scheduler.failover_wait_ms / 1000.0)),
           fmt::format("{}; no replica became ready within {:.1f} s", kNoHealthyReplicaForClients,
                       config_.scheduler.failover_wait_ms / 1000.0));
    else
      Fail(t->id, Unavailable(fmt::format("no replica became ready within {:.1f} s", Seconds(startup_timeout_))));
  }
}

void CoordinatorCore::HoldQueued(const std::string& why) {
  for (uint64_t id : queued_) {
    TrackedRequest* t = requests_.Find(id);
    if (!t || !t->failure.empty()) continue;
    t->failure = why;
    t->queue_deadline = std::min(t->queue_deadline, recovery_until_);
  }
}

void CoordinatorCore::FailQueued(const Status& status, std::string_view for_clients) {
  for (auto it = queued_.begin(); it != queued_.end();) {
    TrackedRequest* t = requests_.Find(*it);
    if (t && !t->failure.empty()) {  // moved from a failed replica: waits for its deadline
      ++it;
      continue;
    }
    it = queued_.erase(it);
    if (t) Fail(t->id, status, for_clients);
  }
}

void CoordinatorCore::HandleCancel(const std::string& identity, const proto::CancelRequest& cancel,
                               Clock::time_point now) {
  TrackedRequest* t = requests_.FindByClient(identity, cancel.client_request_id());
  if (!t) {
    const std::string id = Echoed(cancel.client_request_id());
    SendToClient(identity, ErrorReply(id, NotFound("no request '" + id + "' is in flight on this connection")));
    return;
  }
  Cancel(t->id, now);
}

void CoordinatorCore::HandleStatus(const std::string& identity, ClientRole role, Clock::time_point now) {
  if (!IsHttpPeer(identity) && !client_limiter_.AllowStatus(identity, now)) {
    SendToClient(identity,
                 ErrorReply("", ResourceExhausted(fmt::format("status: at most {} per second per connection "
                                                              "(limits.status_per_client_per_second); ask less often",
                                                              config_.limits.status_per_client_per_second))));
    return;
  }
  status_waiting_.push_back({identity, role});
  if (now >= next_status_build_) SendStatus(now);
}

void CoordinatorCore::SendStatus(Clock::time_point now) {
  // One build per role that someone waits for: an admin's status shows what a client's
  // must not (client_role.h).
  for (const ClientRole role : {ClientRole::kClient, ClientRole::kAdmin}) {
    auto waits = [role](const StatusWait& w) { return w.role == role; };
    if (std::ranges::none_of(status_waiting_, waits)) continue;
    proto::ServerMessage reply;
    *reply.mutable_status() = BuildStatus(now, role);
    ++n_status_builds_;
    for (const StatusWait& w : status_waiting_)
      if (waits(w)) SendToClient(w.identity, reply);
  }
  next_status_build_ = now + kStatusEvery;
  status_waiting_.clear();
}

void CoordinatorCore::Withdraw(uint64_t id) {
  TrackedRequest* t = requests_.Find(id);
  FLOVER_CHECK(t != nullptr) << "request " << id;
  if (t->replica < 0) {
    queued_.erase(std::remove(queued_.begin(), queued_.end(), t->id), queued_.end());
  } else if (Scheduler* s = replicas_[t->replica].scheduler()) {
    s->Cancel(t->id);
  }
}

void CoordinatorCore::Cancel(uint64_t id, Clock::time_point now, FinishReason reason) {
  Withdraw(id);
  spdlog::debug("request {} ends ({})", id, FinishReasonName(reason));
  Finish(id, reason, now);
}

void CoordinatorCore::ExpireDeadlines(Clock::time_point now) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const auto [deadline, id] = *deadlines_.begin();
    deadlines_.erase(deadlines_.begin());
    const TrackedRequest* t = requests_.Find(id);
    if (!t || t->deadline != deadline) continue;  // finished already
    const std::string why =
        fmt::format("request '{}' did not finish within its timeout of {:.3f} s ({} token(s) generated)",
                    t->client_request_id, Seconds(deadline - t->submitted), t->tokens.size());
    Withdraw(id);
    Fail(id, DeadlineExceeded(why));
  }
}

void CoordinatorCore::AbandonClient(std::string identity, Clock::time_point now) {
  const int n = ForgetClient(identity, now);
  if (n == 0) return;
  abandoned_ += n;
  if (auto more = leaving_log_.Allow(now))
    spdlog::info("a client left with {} request(s) in flight: cancelled{}", n, SuppressedSuffix(*more));
}

int CoordinatorCore::ForgetClient(const std::string& identity, Clock::time_point now) {
  // Only this client's requests: a scan of the whole table per client that leaves
  // would cost every request in flight.
  int n = 0;
  for (uint64_t id : requests_.IdsOf(identity)) {
    if (!requests_.Find(id)) continue;  // ended meanwhile
    Cancel(id, now);
    ++n;
  }
  std::erase_if(outbox_.clients, [&](const Outbox::ToClient& m) { return m.identity == identity; });
  std::erase_if(status_waiting_, [&](const StatusWait& w) { return w.identity == identity; });
  return n;
}

std::string CoordinatorCore::Echoed(const std::string& client_request_id) const {
  return EchoedRequestId(client_request_id, config_.limits.max_request_id_bytes);
}

void CoordinatorCore::ProbeClients(Clock::time_point now) {
  if (now >= client_probe_until_ || now < next_client_probe_) return;
  next_client_probe_ = now + kProbeEvery;
  // Streaming requests that already produce tokens find out at their next one.
  std::set<std::string> probed;
  proto::ServerMessage keepalive;
  keepalive.mutable_keepalive();
  for (uint64_t id : requests_.ids()) {
    const TrackedRequest* t = requests_.Find(id);
    if (t->stream && !t->tokens.empty()) continue;
    if (probed.insert(t->client).second) SendToClient(t->client, keepalive);
  }
}

void CoordinatorCore::Deliver(const RequestEvent& event, Clock::time_point now) {
  TrackedRequest* t = requests_.Find(event.request_id);
  if (!t) {
    spdlog::debug("step output for request {}, which is no longer in flight (cancelled); ignored", event.request_id);
    return;
  }
  if (event.token >= 0) {
    // Only whole characters: a character split over byte tokens goes out with its last;
    // and nothing of a stop string.
    std::string piece = t->decoder.Push(event.token);
    bool stopped = false;
    if (t->stop_strings) {
      StopStrings::Piece p = t->stop_strings->Push(piece);
      piece = std::move(p.text);
      stopped = p.stopped;
    }
    t->tokens.push_back(event.token);
    if (t->want_logprobs) {
      FLOVER_CHECK(event.logprobs.has_value()) << "request " << t->id << " asked for log-probabilities";
      t->logprobs.push_back(*event.logprobs);
    }
    t->text += piece;
    if (!t->first_token) t->first_token = now;
    if (t->stream) SendTokenEvent(*t, event.token, std::move(piece));
    if (stopped) {  // the text is complete: what follows the stop string is dropped
      t->stop_strings.reset();
      t->decoder = TokenStreamDecoder();
      Cancel(t->id, now, FinishReason::kStop);
      return;
    }
  }
  if (event.finish != FinishReason::kNone) Finish(t->id, event.finish, now);
}

void CoordinatorCore::SendTokenEvent(const TrackedRequest& t, std::optional<int> token, std::string text) {
  proto::ServerMessage m;
  proto::TokenEvent* event = m.mutable_token();
  event->set_client_request_id(t.client_request_id);
  if (token) {
    event->add_tokens(*token);
    if (t.want_logprobs) *event->add_logprobs() = ToProto(t.logprobs.back());
  }
  event->set_text(std::move(text));
  SendToClient(t.client, std::move(m));
}

void CoordinatorCore::Finish(uint64_t id, FinishReason reason, Clock::time_point now) {
  TrackedRequest* t = requests_.Find(id);
  FLOVER_CHECK(t != nullptr) << "request " << id;
  // What was held back: what the decoder held (an unfinished character becomes U+FFFD),
  // then text that could have begun a stop string. A stream gets it in a last event
  // without tokens.
  std::string tail = t->decoder.Finish();
  if (t->stop_strings) {
    StopStrings::Piece p = t->stop_strings->Push(tail);
    tail = std::move(p.text);
    if (!p.stopped) tail += t->stop_strings->Flush();
  }
  if (!tail.empty()) {
    t->text += tail;
    if (t->stream) SendTokenEvent(*t, std::nullopt, tail);
  }
  proto::ServerMessage m;
  proto::Done* done = m.mutable_done();
  done->set_client_request_id(t->client_request_id);
  done->set_finish_reason(ToProto(reason));
  done->mutable_tokens()->Add(t->tokens.begin(), t->tokens.end());
  for (const TokenLogprobs& l : t->logprobs) *done->add_logprobs() = ToProto(l);
  done->set_text(t->text);
  done->set_prompt_tokens(t->prompt_tokens);
  done->set_completion_tokens(static_cast<int>(t->tokens.size()));
  // A request that never ran was queued all along.
  done->set_queue_seconds(Seconds(t->first_step.value_or(now) - t->submitted));
  done->set_first_token_seconds(t->first_token ? Seconds(*t->first_token - t->submitted) : 0.0);
  done->set_total_seconds(Seconds(now - t->submitted));
  std::optional<double> per_token_s;
  if (t->first_token && t->tokens.size() >= 2)
    per_token_s = Seconds(now - *t->first_token) / static_cast<double>(t->tokens.size() - 1);
  if ((reason == FinishReason::kStop || reason == FinishReason::kLength) && t->first_token)
    latency_.Add({.done = now,
                  .queue_s = done->queue_seconds(),
                  .first_token_s = done->first_token_seconds(),
                  .per_token_s = per_token_s,
                  .total_s = done->total_seconds()});
  metrics_.RequestDone({.reason = reason,
                        .first_token_s = t->first_token ? std::optional(done->first_token_seconds()) : std::nullopt,
                        .per_token_s = per_token_s,
                        .total_s = done->total_seconds()});
  SendToClient(t->client, std::move(m));
  requests_.Remove(id);
  ++completed_;
}

void CoordinatorCore::Fail(uint64_t id, const Status& status, std::string_view for_clients) {
  TrackedRequest* t = requests_.Find(id);
  FLOVER_CHECK(t != nullptr) << "request " << id;
  const bool redacted = t->role != ClientRole::kAdmin && !for_clients.empty();
  metrics_.RequestFailed(status.code());
  SendToClient(t->client,
               ErrorReply(t->client_request_id, redacted ? Status(status.code(), std::string(for_clients)) : status));
  requests_.Remove(id);
}

}  // namespace flover
