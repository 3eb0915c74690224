#include "tests/coordinator/core_harness.h"

#include <algorithm>
#include <functional>

namespace flover::coordinator_testing {

// ---------------------------------------------------------------- SimWorker

void SimWorker::Send(proto::WorkerMessage m) { SendRaw(Serialize(std::move(m))); }

void SimWorker::SendRaw(const std::string& bytes) { SendFrames({bytes}); }

void SimWorker::SendFrames(const std::vector<std::string>& frames) {
  if (gone_) return;
  std::vector<std::string_view> views(frames.begin(), frames.end());
  sim_.core().OnWorkerMessage(identity_, views, sim_.now());
  sim_.AfterEvent();
}

void SimWorker::Disconnect() {
  gone_ = true;
  topic_.reset();
  sim_.core().OnWorkerConnectionClosed(sim_.now());
  sim_.AfterEvent();
}

void SimWorker::SendRegister(int replica, int rank) { Send(RegisterMessage(replica, rank, pid())); }

void SimWorker::Beat() {
  if (registered_) Send(HeartbeatMessage(replica_, rank_));
}

std::optional<proto::CoordinatorMessage> SimWorker::RecvControl() {
  while (!control_.empty()) {
    proto::CoordinatorMessage m = std::move(control_.front());
    control_.pop_front();
    if (m.has_heartbeat()) {
      ++heartbeats_received_;
      continue;
    }
    return m;
  }
  return std::nullopt;
}

proto::RegisterReply SimWorker::Register() {
  SendRegister(replica_, rank_);
  std::optional<proto::CoordinatorMessage> m = RecvControl();
  EXPECT_TRUE(m && m->has_register_reply());
  if (!m || !m->has_register_reply()) return proto::RegisterReply();
  registered_ = m->register_reply().accepted();
  return m->register_reply();
}

void SimWorker::Start(const proto::ModelInfo& model, int kv_blocks) {
  const proto::RegisterReply reply = Register();
  ASSERT_TRUE(reply.accepted()) << reply.error();
  Subscribe(reply);
  // The probe sent at registration was lost (not yet subscribed); the next one comes
  // within kProbeEvery.
  for (int i = 0; i < 100 && probes_received_ == 0; ++i) sim_.Advance(std::chrono::milliseconds(1));
  ASSERT_GT(probes_received_, 0) << "the coordinator probes the topic of a starting replica";
  Ready(model, kv_blocks);
}

void SimWorker::Subscribe(const proto::RegisterReply& reply) { topic_ = reply.plan_topic(); }

void SimWorker::Ready(const proto::ModelInfo& model, int kv_blocks) {
  Send(ReadyMessage(replica_, rank_, model, kv_blocks));
}

std::optional<proto::StepPlan> SimWorker::TryPlan() {
  if (plans_.empty()) return std::nullopt;
  proto::StepPlan plan = std::move(plans_.front());
  plans_.pop_front();
  return plan;
}

void SimWorker::Push(proto::StepResult result, std::optional<int> as_replica) {
  result.set_replica(as_replica.value_or(replica_));
  proto::WorkerMessage m;
  *m.mutable_step_result() = std::move(result);
  Send(std::move(m));
}

void SimWorker::Answer(const proto::StepPlan& plan, const Outputs& outs) { Push(ResultOf(plan, outs)); }

// ---------------------------------------------------------------- SimClient

void SimClient::SendFrames(const std::vector<std::string>& frames) {
  if (gone_) return;
  std::vector<std::string_view> views(frames.begin(), frames.end());
  sim_.core().OnClientMessage(identity_, role_, views, sim_.now());
  sim_.AfterEvent();
}

void SimClient::Submit(const std::string& id, std::vector<int> prompt, int max_tokens, bool stream) {
  Send(SubmitMessage(id, prompt, max_tokens, stream));
}

void SimClient::Cancel(const std::string& id) { Send(CancelMessage(id)); }

std::optional<proto::ServerMessage> SimClient::TryRecv() {
  while (!inbox_.empty()) {
    proto::ServerMessage m = std::move(inbox_.front());
    inbox_.pop_front();
    if (m.has_keepalive()) {
      ++keepalives_received_;
      continue;
    }
    return m;
  }
  return std::nullopt;
}

void SimClient::Disconnect() {
  gone_ = true;
  sim_.core().OnClientConnectionClosed(sim_.now());
  sim_.AfterEvent();
}

// ---------------------------------------------------------------- SimCoordinator

SimCoordinator::SimCoordinator(const Options& options) : now_(Clock::time_point() + std::chrono::hours(1)) {
  EndpointsConfig bound;
  bound.client = "tcp://127.0.0.1:1001";
  bound.control = "tcp://127.0.0.1:1002";
  bound.plans = "tcp://127.0.0.1:1003";
  Result<std::unique_ptr<CoordinatorCore>> core =
      CoordinatorCore::Create(TestConfig(options), bound, options.drain, now_);
  FLOVER_CHECK(core.ok()) << core.status().ToString();
  core_ = std::move(core).value();
  next_beat_ = now_;
}

SimWorker& SimCoordinator::AddWorker(int replica, int rank) {
  const std::string identity = "worker-" + std::to_string(workers_.size());
  workers_.push_back(std::make_unique<SimWorker>(*this, identity, replica, rank));
  return *workers_.back();
}

SimClient& SimCoordinator::AddClient(ClientRole role, std::string identity) {
  if (identity.empty()) identity = "client-" + std::to_string(clients_.size());
  clients_.push_back(std::make_unique<SimClient>(*this, identity, role));
  return *clients_.back();
}

void SimCoordinator::AfterEvent() {
  Flush();
  core_->Tick(now_);
  Flush();
}

void SimCoordinator::Flush() {
  for (Outbox out = core_->TakeOutbox(); !out.empty(); out = core_->TakeOutbox()) {
    for (int replica : out.topic_probes)
      for (const std::unique_ptr<SimWorker>& w : workers_)
        if (w->topic_ == PlanTopic(replica)) ++w->probes_received_;
    for (const Outbox::Plan& plan : out.plans) {
      ++plans_published_[plan.replica];
      for (const std::unique_ptr<SimWorker>& w : workers_)
        if (w->topic_ == PlanTopic(plan.replica)) w->plans_.push_back(plan.message.plan());
    }
    std::vector<std::string> gone_workers;
    for (const Outbox::ToWorker& m : out.workers) {
      auto it = std::find_if(workers_.begin(), workers_.end(),
                             [&](const std::unique_ptr<SimWorker>& w) { return w->identity_ == m.identity; });
      if (it == workers_.end() || (*it)->gone_) {
        if (std::find(gone_workers.begin(), gone_workers.end(), m.identity) == gone_workers.end())
          gone_workers.push_back(m.identity);
        continue;
      }
      (*it)->control_.push_back(m.message);
    }
    std::vector<std::string> gone_clients;
    std::vector<std::string> full_clients;
    const int max_waiting = core_->config().limits.max_undelivered_per_client;
    for (const Outbox::ToClient& m : out.clients) {
      auto it = std::find_if(clients_.begin(), clients_.end(),
                             [&](const std::unique_ptr<SimClient>& c) { return c->identity_ == m.identity; });
      if (it == clients_.end() || (*it)->gone_) {
        if (std::find(gone_clients.begin(), gone_clients.end(), m.identity) == gone_clients.end())
          gone_clients.push_back(m.identity);
        continue;
      }
      if (std::find(full_clients.begin(), full_clients.end(), m.identity) != full_clients.end()) continue;
      if (!(*it)->reading_ && (*it)->n_waiting() >= max_waiting) {
        full_clients.push_back(m.identity);
        continue;
      }
      (*it)->inbox_.push_back(m.message);
    }
    for (const std::string& identity : out.reloads) {
      core_->AnswerReload(identity, on_reload ? on_reload()
                                              : Result<CoordinatorCore::Reconfigured>(
                                                    FailedPrecondition("no cluster file to read")));
    }
    for (const std::string& identity : gone_workers) core_->OnWorkerUnreachable(identity, now_);
    for (const std::string& identity : gone_clients) core_->OnClientUnreachable(identity, now_);
    for (const std::string& identity : full_clients) core_->OnClientNotReading(identity, now_);
  }
}

void SimCoordinator::Advance(Clock::duration d) {
  const Clock::time_point target = now_ + d;
  for (bool first = true;; first = false) {
    Clock::time_point next = std::min({core_->NextWake(now_), next_beat_, target});
    if (!first) next = std::max(next, std::min(now_ + std::chrono::milliseconds(1), target));
    now_ = std::max(now_, next);
    if (now_ >= next_beat_) {
      next_beat_ = now_ + kBeatEvery;
      for (const std::unique_ptr<SimWorker>& w : workers_)
        if (w->beating_ && !w->gone_) w->Beat();
    }
    core_->Tick(now_);
    Flush();
    if (now_ >= target) break;
  }
}

void SimCoordinator::RequestStop() {
  core_->RequestStop(now_);
  AfterEvent();
}

void SimCoordinator::Shutdown(const std::string& reason) {
  core_->Shutdown(reason);
  Flush();
}

int SimCoordinator::plans_published(int replica) const {
  auto it = plans_published_.find(replica);
  return it == plans_published_.end() ? 0 : it->second;
}

// ---------------------------------------------------------------- CoreTest

proto::ServerMessage CoreTest::Reply(SimClient& c) {
  std::optional<proto::ServerMessage> m = c.TryRecv();
  EXPECT_TRUE(m.has_value()) << "no reply from the coordinator";
  return m.value_or(proto::ServerMessage());
}

std::optional<proto::StepPlan> CoreTest::QuietPlan(SimWorker& w) {
  Advance(kQuiet);
  return w.TryPlan();
}

std::optional<proto::ServerMessage> CoreTest::QuietReply(SimClient& c) {
  Advance(kQuiet);
  return c.TryRecv();
}

namespace {

template <typename T>
std::optional<T> Within(SimCoordinator& sim, Clock::duration limit, const std::function<std::optional<T>()>& poll) {
  const Clock::time_point end = sim.now() + limit;
  for (;;) {
    if (std::optional<T> v = poll()) return v;
    if (sim.now() >= end) return std::nullopt;
    sim.Advance(std::chrono::milliseconds(1));
  }
}

}  // namespace

std::optional<proto::StepPlan> CoreTest::PlanWithin(SimWorker& w, Clock::duration limit) {
  return Within<proto::StepPlan>(sim(), limit, [&] { return w.TryPlan(); });
}

std::optional<proto::ServerMessage> CoreTest::ReplyWithin(SimClient& c, Clock::duration limit) {
  return Within<proto::ServerMessage>(sim(), limit, [&] { return c.TryRecv(); });
}

std::optional<proto::CoordinatorMessage> CoreTest::ControlWithin(SimWorker& w, Clock::duration limit) {
  return Within<proto::CoordinatorMessage>(sim(), limit, [&] { return w.RecvControl(); });
}

proto::ClusterStatus CoreTest::GetStatus(SimClient& c) {
  proto::ClientMessage m;
  m.mutable_status();
  c.Send(m);
  std::optional<proto::ServerMessage> waited = ReplyWithin(c, CoordinatorCore::kStatusEvery);
  EXPECT_TRUE(waited.has_value()) << "no status reply within " << CoordinatorCore::kStatusEvery.count() << " ms";
  proto::ServerMessage reply = waited.value_or(proto::ServerMessage());
  EXPECT_TRUE(reply.has_status()) << reply.DebugString();
  return reply.status();
}

std::string CoreTest::ReplicaState(SimClient& c, int i) {
  const proto::ClusterStatus s = GetStatus(c);
  return s.replicas_size() > i ? s.replicas(i).state() : "none";
}

uint64_t CoreTest::ExpectAccepted(SimClient& c, const std::string& id, int replica) {
  proto::ServerMessage m = Reply(c);
  EXPECT_TRUE(m.has_accepted()) << m.DebugString();
  EXPECT_EQ(m.accepted().client_request_id(), id);
  EXPECT_EQ(m.accepted().replica(), replica);
  return m.accepted().request_id();
}

CoreTest::OneRequest CoreTest::StartWithOneRequest(const Options& o, std::vector<int> prompt, int max_tokens) {
  Start(o);
  SimClient& c = AddClient();
  SimWorker& w = AddWorker();
  w.Start();
  EXPECT_EQ(ReplicaState(c, 0), "ready");
  c.Submit("r", std::move(prompt), max_tokens);
  const uint64_t id = ExpectAccepted(c, "r");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  EXPECT_TRUE(plan.has_value());
  return OneRequest{c, w, id, plan};
}

CoordinatorCore::Reconfigured SimCoordinator::Reconfigure(const Options& options) {
  const CoordinatorCore::Reconfigured done = core_->Reconfigure(TestConfig(options), now_);
  AfterEvent();
  return done;
}

CoreTest::TwoReplicas CoreTest::StartTwoReplicas(Options o) {
  o.replicas = 2;
  Start(o);
  SimClient& c = AddClient();
  SimWorker& w0 = AddWorker(0, 0);
  SimWorker& w1 = AddWorker(1, 0);
  w0.Start();
  w1.Start();
  EXPECT_EQ(ReplicaState(c, 0), "ready");
  EXPECT_EQ(ReplicaState(c, 1), "ready");
  return TwoReplicas{c, w0, w1};
}

std::optional<CoreTest::WithTokenizer> CoreTest::StartWithTokenizer() {
  Options o;
  o.tokenizer = testing::Tok512Bin();
  Start(o);
  Result<Tokenizer> tokenizer = Tokenizer::LoadLlama2c(o.tokenizer);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  if (!tokenizer.ok()) return std::nullopt;
  SimWorker& w = AddWorker();
  w.Start(TestModel(tokenizer->vocab_size()));
  return WithTokenizer{std::move(tokenizer).value(), w, AddClient()};
}

proto::ClientMessage CoreTest::TextSubmit(const std::string& id, const std::string& text) {
  proto::ClientMessage m;
  m.mutable_submit()->set_client_request_id(id);
  m.mutable_submit()->set_text(text);
  m.mutable_submit()->set_stream(true);
  return m;
}

void CoreTest::ExpectLeaveAndJoin(const proto::StepPlan& plan, uint64_t leave, uint64_t join) {
  ASSERT_EQ(plan.leaves_size(), 1) << plan.DebugString();
  EXPECT_EQ(plan.leaves(0), leave);
  ASSERT_EQ(plan.joins_size(), 1) << plan.DebugString();
  EXPECT_EQ(plan.joins(0).request_id(), join);
}

void CoreTest::ReportFailure(SimWorker& w, const std::string& message) {
  proto::WorkerMessage failure;
  failure.mutable_failure()->set_replica(w.replica());
  failure.mutable_failure()->set_rank(w.rank());
  failure.mutable_failure()->set_message(message);
  w.Send(failure);
}

}  // namespace flover::coordinator_testing
