// Protocol-level tests of the coordinator alone: the real Coordinator runs in a thread
// on tcp://127.0.0.1:* endpoints; scripted fake workers (DEALER + SUB + PUSH) and
// clients (DEALER) speak flover.proto to it over real ZeroMQ sockets.
#include "coordinator/coordinator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/protocol.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr milliseconds kWait = 3000ms;      // upper bound for something that must happen
constexpr milliseconds kQuiet = 250ms;      // how long "nothing happens" is watched
constexpr milliseconds kBeatEvery = 40ms;   // fake workers' heartbeat period
constexpr milliseconds kSubscribe = 150ms;  // lets a SUB subscription reach the PUB

struct Options {
  int replicas = 1;
  int tensor = 1;
  int interval_ms = 50;
  int timeout_ms = 1000;
  int step_timeout_ms = 60000;
  int pipeline_depth = 1;  // lock-step: these tests follow plans and results one by one
  int max_queued = 16;
  int max_step_tokens = 16;
  int failover_wait_ms = 0;  // most tests want a failed replica's requests to fail at once
  milliseconds drain = 0ms;  // Stop() ends the loop at once
  std::string tokenizer = "";
};

ClusterConfig TestConfig(const Options& o) {
  std::string yaml =
      "cluster: {name: coordinator-test}\n"
      "endpoints: {client: 'tcp://127.0.0.1:*', control: 'tcp://127.0.0.1:*', plans: 'tcp://127.0.0.1:*',"
      " results: 'tcp://127.0.0.1:*'}\n"
      "model: {path: 'dummy:test'" +
      (o.tokenizer.empty() ? std::string() : ", tokenizer: '" + o.tokenizer + "'") +
      "}\n"
      "parallel: {replicas: " +
      std::to_string(o.replicas) + ", tensor: " + std::to_string(o.tensor) +
      "}\n"
      "kv_cache: {block_size: 4}\n"
      "scheduler: {max_step_tokens: " +
      std::to_string(o.max_step_tokens) + ", max_running: 8, max_queued: " + std::to_string(o.max_queued) +
      ", pipeline_depth: " + std::to_string(o.pipeline_depth) +
      ", failover_wait_ms: " + std::to_string(o.failover_wait_ms) + "}\n"
      "heartbeat: {interval_ms: " +
      std::to_string(o.interval_ms) + ", timeout_ms: " + std::to_string(o.timeout_ms) + ", step_timeout_ms: " + std::to_string(o.step_timeout_ms) + "}\n";
  Result<ClusterConfig> config = ParseClusterConfig(yaml, "test.yaml", "");
  FLOVER_CHECK(config.ok()) << config.status().ToString();
  return std::move(config).value();
}

proto::ModelInfo TestModel(int vocab = 512) {
  proto::ModelInfo m;
  m.set_dim(64);
  m.set_hidden_dim(172);
  m.set_n_layers(2);
  m.set_n_heads(8);
  m.set_n_kv_heads(4);
  m.set_vocab_size(vocab);
  m.set_max_seq_len(64);
  m.set_bos_id(1);
  m.set_eos_id(2);
  m.set_description("fake");
  return m;
}

template <typename M>
std::optional<M> RecvOn(zmq::socket_t& socket, milliseconds timeout) {
  std::array<zmq::pollitem_t, 1> items = {{{socket.handle(), 0, ZMQ_POLLIN, 0}}};
  zmq::poll(items, timeout);
  if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
  zmq::message_t message;
  if (!socket.recv(message, zmq::recv_flags::dontwait)) return std::nullopt;
  Result<M> parsed = Parse<M>(message.to_string_view());
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  if (!parsed.ok()) return std::nullopt;
  return std::move(parsed).value();
}

// A scripted worker: control DEALER, plans SUB, results PUSH.
class FakeWorker {
 public:
  FakeWorker(zmq::context_t& context, const EndpointsConfig& endpoints, int replica, int rank)
      : context_(context), replica_(replica), rank_(rank), control_(context, zmq::socket_type::dealer) {
    control_.set(zmq::sockopt::linger, 0);
    control_.connect(endpoints.control);
  }

  int replica() const { return replica_; }
  int rank() const { return rank_; }
  int pid() const { return 1000 + 10 * replica_ + rank_; }
  int heartbeats_received() const { return heartbeats_received_; }

  void Send(proto::WorkerMessage m) { control_.send(zmq::buffer(Serialize(std::move(m))), zmq::send_flags::none); }
  void SendRaw(const std::string& bytes) { control_.send(zmq::buffer(bytes), zmq::send_flags::none); }
  // Closes every connection, as the death of the process would.
  void Disconnect() {
    for (zmq::socket_t* s : {&control_, &sub_, &push_})
      if (s->handle() != nullptr) s->close();
  }

  void SendRegister(int replica, int rank) {
    proto::WorkerMessage m;
    proto::RegisterWorker* r = m.mutable_register_();
    r->set_replica(replica);
    r->set_rank(rank);
    r->set_host("127.0.0.1");
    r->set_pid(pid());
    r->set_device("cpu");
    Send(m);
  }

  // Heartbeats start once registered, as a real worker's do.
  void Beat() {
    if (!registered_) return;
    proto::WorkerMessage m;
    m.mutable_heartbeat()->set_replica(replica_);
    m.mutable_heartbeat()->set_rank(rank_);
    Send(m);
  }

  // The next message other than a heartbeat.
  std::optional<proto::CoordinatorMessage> RecvControl(milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      const auto left = std::chrono::ceil<milliseconds>(deadline - SteadyClock::now());
      std::optional<proto::CoordinatorMessage> m = RecvOn<proto::CoordinatorMessage>(control_, left);
      if (!m) return std::nullopt;
      if (m->has_heartbeat()) {
        ++heartbeats_received_;
        continue;
      }
      return m;
    }
    return std::nullopt;
  }

  proto::RegisterReply Register() {
    SendRegister(replica_, rank_);
    std::optional<proto::CoordinatorMessage> m = RecvControl(kWait);
    EXPECT_TRUE(m && m->has_register_reply());
    if (!m || !m->has_register_reply()) return proto::RegisterReply();
    registered_ = m->register_reply().accepted();
    return m->register_reply();
  }

  // Register, connect SUB/PUSH, report ready.
  void Start(const proto::ModelInfo& model = TestModel(), int kv_blocks = 16) {
    const proto::RegisterReply reply = Register();
    ASSERT_TRUE(reply.accepted()) << reply.error();
    Connect(reply);
    Ready(model, kv_blocks);
  }

  void Connect(const proto::RegisterReply& reply) {
    sub_ = zmq::socket_t(context_, zmq::socket_type::sub);
    sub_.set(zmq::sockopt::linger, 0);
    sub_.set(zmq::sockopt::subscribe, reply.plan_topic());
    sub_.connect(reply.plans_endpoint());
    push_ = zmq::socket_t(context_, zmq::socket_type::push);
    push_.set(zmq::sockopt::linger, 0);
    push_.connect(reply.results_endpoint());
    std::this_thread::sleep_for(kSubscribe);
  }

  void Ready(const proto::ModelInfo& model, int kv_blocks) {
    proto::WorkerMessage m;
    m.mutable_ready()->set_replica(replica_);
    m.mutable_ready()->set_rank(rank_);
    *m.mutable_ready()->mutable_model() = model;
    m.mutable_ready()->set_kv_blocks(kv_blocks);
    Send(m);
  }

  std::optional<proto::StepPlan> TryPlan(milliseconds timeout) {
    std::array<zmq::pollitem_t, 1> items = {{{sub_.handle(), 0, ZMQ_POLLIN, 0}}};
    zmq::poll(items, timeout);
    if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(sub_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return std::nullopt;
    EXPECT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts.front().to_string(), "replica/" + std::to_string(replica_) + "/");
    Result<proto::CoordinatorMessage> m = Parse<proto::CoordinatorMessage>(parts.back().to_string_view());
    EXPECT_TRUE(m.ok() && m->has_plan());
    if (!m.ok() || !m->has_plan()) return std::nullopt;
    return m->plan();
  }

  void PushRaw(const std::string& bytes) { push_.send(zmq::buffer(bytes), zmq::send_flags::none); }

  void Push(proto::StepResult result) {
    result.set_replica(replica_);
    proto::WorkerMessage m;
    *m.mutable_step_result() = std::move(result);
    push_.send(zmq::buffer(Serialize(m)), zmq::send_flags::none);
  }

  // Pushes the result of `plan` with the given (request id, token, finish) outputs.
  void Answer(const proto::StepPlan& plan, const std::vector<std::tuple<uint64_t, int, proto::FinishReason>>& outs) {
    proto::StepResult r;
    r.set_seq(plan.seq());
    r.set_step_seconds(0.001);
    for (const auto& [id, token, finish] : outs) {
      proto::TokenOutput* o = r.add_outputs();
      o->set_request_id(id);
      o->set_token(token);
      o->set_finish(finish);
    }
    Push(r);
  }

 private:
  zmq::context_t& context_;
  const int replica_;
  const int rank_;
  zmq::socket_t control_;
  zmq::socket_t sub_;
  zmq::socket_t push_;
  int heartbeats_received_ = 0;
  bool registered_ = false;
};

class FakeClient {
 public:
  FakeClient(zmq::context_t& context, const EndpointsConfig& endpoints) : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoints.client);
  }

  void Send(proto::ClientMessage m) { SendRaw(Serialize(std::move(m))); }
  void SendRaw(const std::string& bytes) { socket_.send(zmq::buffer(bytes), zmq::send_flags::none); }

  void Submit(const std::string& id, std::vector<int> prompt, int max_tokens, bool stream = true) {
    proto::ClientMessage m;
    proto::SubmitRequest* s = m.mutable_submit();
    s->set_client_request_id(id);
    s->mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
    s->mutable_stop()->set_max_tokens(max_tokens);
    s->set_stream(stream);
    Send(m);
  }

  void Cancel(const std::string& id) {
    proto::ClientMessage m;
    m.mutable_cancel()->set_client_request_id(id);
    Send(m);
  }

  // The next message other than a Keepalive (those are counted).
  std::optional<proto::ServerMessage> TryRecv(milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::ceil<milliseconds>(deadline - SteadyClock::now());
      std::optional<proto::ServerMessage> m = RecvOn<proto::ServerMessage>(socket_, std::max(left, 0ms));
      if (!m || !m->has_keepalive()) return m;
      ++keepalives_received_;
    }
  }
  int keepalives_received() const { return keepalives_received_; }

  // Closes the connection, as the death of the client's process would.
  void Disconnect() { socket_.close(); }

 private:
  zmq::socket_t socket_;
  int keepalives_received_ = 0;
};

class CoordinatorTest : public ::testing::Test {
 protected:
  void Start(const Options& options = Options()) {
    Result<std::unique_ptr<Coordinator>> c = Coordinator::Create(TestConfig(options), options.drain);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    coordinator_ = std::move(c).value();
    endpoints_ = coordinator_->endpoints();
    thread_ = std::thread([this] { coordinator_->Run(); });
  }

  void TearDown() override { StopCoordinator(); }

  void StopCoordinator() {
    if (!thread_.joinable()) return;
    coordinator_->Stop();
    thread_.join();
  }

  FakeWorker& AddWorker(int replica = 0, int rank = 0) {
    workers_.push_back(std::make_unique<FakeWorker>(context_, endpoints_, replica, rank));
    alive_.push_back(workers_.back().get());
    return *workers_.back();
  }
  FakeClient& AddClient() {
    clients_.push_back(std::make_unique<FakeClient>(context_, endpoints_));
    return *clients_.back();
  }
  void Silence(FakeWorker& w) { std::erase(alive_, &w); }

  // Heartbeats of the live fake workers, at most every kBeatEvery.
  void KeepAlive() {
    if (SteadyClock::now() - last_beat_ < kBeatEvery) return;
    last_beat_ = SteadyClock::now();
    for (FakeWorker* w : alive_) w->Beat();
  }

  // Waits for `poll` to yield a value, heartbeating meanwhile.
  template <typename T>
  std::optional<T> WaitFor(const std::function<std::optional<T>(milliseconds)>& poll, milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      KeepAlive();
      if (std::optional<T> v = poll(10ms)) return v;
    }
    return std::nullopt;
  }

  std::optional<proto::StepPlan> ExpectPlan(FakeWorker& w, milliseconds timeout = kWait) {
    return WaitFor<proto::StepPlan>([&](milliseconds t) { return w.TryPlan(t); }, timeout);
  }
  std::optional<proto::ServerMessage> ExpectReply(FakeClient& c, milliseconds timeout = kWait) {
    return WaitFor<proto::ServerMessage>([&](milliseconds t) { return c.TryRecv(t); }, timeout);
  }

  proto::ServerMessage Reply(FakeClient& c) {
    std::optional<proto::ServerMessage> m = ExpectReply(c);
    EXPECT_TRUE(m.has_value()) << "no reply from the coordinator";
    return m.value_or(proto::ServerMessage());
  }

  proto::ClusterStatus GetStatus(FakeClient& c) {
    proto::ClientMessage m;
    m.mutable_status();
    c.Send(m);
    proto::ServerMessage reply = Reply(c);
    EXPECT_TRUE(reply.has_status()) << reply.DebugString();
    return reply.status();
  }

  // Polls status until replica `i` is in `state`.
  bool WaitReplicaState(FakeClient& c, int i, const std::string& state) {
    const auto deadline = SteadyClock::now() + kWait;
    while (SteadyClock::now() < deadline) {
      const proto::ClusterStatus s = GetStatus(c);
      if (s.replicas_size() > i && s.replicas(i).state() == state) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // One ready worker, and request "r" (prompt {1, 2}, 3 tokens) in its first plan.
  struct OneRequest {
    FakeClient& client;
    FakeWorker& worker;
    uint64_t id;
    std::optional<proto::StepPlan> plan;
  };
  OneRequest StartWithOneRequest(const Options& o) {
    Start(o);
    FakeClient& c = AddClient();
    FakeWorker& w = AddWorker();
    w.Start();
    EXPECT_TRUE(WaitReplicaState(c, 0, "ready"));
    c.Submit("r", {1, 2}, 3);
    const uint64_t id = ExpectAccepted(c, "r");
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    EXPECT_TRUE(plan.has_value());
    return OneRequest{c, w, id, plan};
  }

  static void ReportFailure(FakeWorker& w, const std::string& message) {
    proto::WorkerMessage failure;
    failure.mutable_failure()->set_message(message);
    w.Send(failure);
  }

  uint64_t ExpectAccepted(FakeClient& c, const std::string& id, int replica = 0) {
    proto::ServerMessage m = Reply(c);
    EXPECT_TRUE(m.has_accepted()) << m.DebugString();
    EXPECT_EQ(m.accepted().client_request_id(), id);
    EXPECT_EQ(m.accepted().replica(), replica);
    return m.accepted().request_id();
  }

  zmq::context_t context_;
  std::unique_ptr<Coordinator> coordinator_;
  EndpointsConfig endpoints_;
  std::thread thread_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::vector<FakeWorker*> alive_;
  std::vector<std::unique_ptr<FakeClient>> clients_;
  SteadyClock::time_point last_beat_{};
};

TEST_F(CoordinatorTest, EndpointsAreResolved) {
  Start();
  for (const std::string* e : {&endpoints_.client, &endpoints_.control, &endpoints_.plans, &endpoints_.results}) {
    EXPECT_EQ(e->rfind("tcp://127.0.0.1:", 0), 0u) << *e;
    EXPECT_EQ(e->find('*'), std::string::npos) << *e;
  }
}

TEST_F(CoordinatorTest, RegisterReplyCarriesConfigEndpointsAndTopic) {
  Start();
  FakeWorker& w = AddWorker();
  const proto::RegisterReply reply = w.Register();
  ASSERT_TRUE(reply.accepted()) << reply.error();
  EXPECT_EQ(reply.plans_endpoint(), endpoints_.plans);
  EXPECT_EQ(reply.results_endpoint(), endpoints_.results);
  EXPECT_EQ(reply.plan_topic(), "replica/0/");
  Result<ClusterConfig> config = ParseClusterConfig(reply.config_yaml(), "register reply", "");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->name, "coordinator-test");
  EXPECT_EQ(config->endpoints, endpoints_);  // resolved, not "*"
  EXPECT_EQ(config->kv_cache.block_size, 4);
  // The coordinator heartbeats registered workers.
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(w.RecvControl(50ms).has_value());
  EXPECT_GE(w.heartbeats_received(), 2);
}

TEST_F(CoordinatorTest, RegistrationRejectsOutOfRangeAndDuplicateLiveRanks) {
  Start();
  FakeWorker& w = AddWorker();
  w.SendRegister(/*replica=*/3, /*rank=*/0);
  std::optional<proto::CoordinatorMessage> m = w.RecvControl(kWait);
  ASSERT_TRUE(m && m->has_register_reply());
  EXPECT_FALSE(m->register_reply().accepted());
  EXPECT_NE(m->register_reply().error().find("not part of this cluster"), std::string::npos)
      << m->register_reply().error();
  EXPECT_FALSE(m->register_reply().retry()) << "registering again cannot help";
  w.SendRegister(0, /*rank=*/1);
  m = w.RecvControl(kWait);
  ASSERT_TRUE(m && m->has_register_reply());
  EXPECT_FALSE(m->register_reply().accepted());

  ASSERT_TRUE(w.Register().accepted());
  FakeWorker& twin = AddWorker();
  const proto::RegisterReply reply = twin.Register();
  EXPECT_FALSE(reply.accepted());
  EXPECT_NE(reply.error().find("already live"), std::string::npos) << reply.error();
  EXPECT_TRUE(reply.retry()) << "a restarted worker waits until its old process is declared dead";
}

TEST_F(CoordinatorTest, SubmitStreamsTokensThenDoneWithPlansInSequence) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));

  c.Submit("r1", {1, 5, 7}, /*max_tokens=*/3);
  const uint64_t id = ExpectAccepted(c, "r1");

  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 1u);
  EXPECT_EQ(plan->replica(), 0);
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_EQ(plan->joins(0).request_id(), id);
  EXPECT_EQ(std::vector<int>(plan->joins(0).prompt().begin(), plan->joins(0).prompt().end()),
            (std::vector<int>{1, 5, 7}));
  EXPECT_EQ(plan->joins(0).stop().max_tokens(), 3);
  ASSERT_EQ(plan->entries_size(), 1);
  EXPECT_EQ(plan->entries(0).start_pos(), 0);
  EXPECT_EQ(plan->entries(0).n_tokens(), 3);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 1);
  w.Answer(*plan, {{id, 20, proto::FINISH_NONE}});

  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 2u);
  EXPECT_EQ(plan->joins_size(), 0);
  ASSERT_EQ(plan->entries_size(), 1);
  EXPECT_EQ(plan->entries(0).start_pos(), 3);
  EXPECT_EQ(plan->entries(0).n_tokens(), 1);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 0);  // position 3 is still in block 1
  w.Answer(*plan, {{id, 21, proto::FINISH_NONE}});

  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 3u);
  EXPECT_EQ(plan->entries(0).start_pos(), 4);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 1);  // position 4 opens block 2
  w.Answer(*plan, {{id, 22, proto::FINISH_LENGTH}});

  std::vector<int> streamed;
  for (int i = 0; i < 3; ++i) {
    proto::ServerMessage m = Reply(c);
    ASSERT_TRUE(m.has_token()) << m.DebugString();
    EXPECT_EQ(m.token().client_request_id(), "r1");
    streamed.insert(streamed.end(), m.token().tokens().begin(), m.token().tokens().end());
  }
  EXPECT_EQ(streamed, (std::vector<int>{20, 21, 22}));
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().client_request_id(), "r1");
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_LENGTH);
  EXPECT_EQ(std::vector<int>(m.done().tokens().begin(), m.done().tokens().end()), (std::vector<int>{20, 21, 22}));
  EXPECT_EQ(m.done().prompt_tokens(), 3);
  EXPECT_EQ(m.done().completion_tokens(), 3);
  EXPECT_GE(m.done().total_seconds(), m.done().first_token_seconds());
  EXPECT_GT(m.done().first_token_seconds(), 0.0);

  EXPECT_FALSE(ExpectPlan(w, kQuiet).has_value());  // nothing left to run
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.completed(), 1u);
  EXPECT_EQ(s.replicas(0).steps(), 3u);
  EXPECT_EQ(s.replicas(0).kv_blocks_used(), 0);
}

TEST_F(CoordinatorTest, WithoutStreamOnlyDoneArrives) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  c.Submit("q", {1, 2}, 2, /*stream=*/false);
  const uint64_t id = ExpectAccepted(c, "q");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 30, proto::FINISH_NONE}});
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, -1, proto::FINISH_STOP}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_STOP);
  EXPECT_EQ(m.done().completion_tokens(), 1);
}

TEST_F(CoordinatorTest, TextPromptsAreTokenizedAndTokensDecoded) {
  Options o;
  o.tokenizer = testing::Tok512Bin();
  Start(o);
  Result<Tokenizer> tokenizer = Tokenizer::LoadLlama2c(o.tokenizer);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  FakeWorker& w = AddWorker();
  w.Start(TestModel(tokenizer->vocab_size()));
  FakeClient& c = AddClient();
  proto::ClientMessage submit;
  submit.mutable_submit()->set_client_request_id("t");
  submit.mutable_submit()->set_text("Once upon a time");
  const std::vector<int> out = tokenizer->Encode("there was", false);  // " there", " was", ...
  ASSERT_GE(out.size(), 2u);
  submit.mutable_submit()->mutable_stop()->set_max_tokens(static_cast<int>(out.size()));
  submit.mutable_submit()->set_stream(true);
  c.Send(submit);
  const std::vector<int> prompt = tokenizer->Encode("Once upon a time", true);
  proto::ServerMessage accepted = Reply(c);
  ASSERT_TRUE(accepted.has_accepted()) << accepted.DebugString();
  EXPECT_EQ(accepted.accepted().prompt_tokens(), static_cast<int>(prompt.size()));
  const uint64_t id = accepted.accepted().request_id();
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_EQ(std::vector<int>(plan->joins(0).prompt().begin(), plan->joins(0).prompt().end()), prompt);
  w.Answer(*plan, {{id, out[0], proto::FINISH_NONE}});
  for (size_t i = 1; i < out.size(); ++i) {
    plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    w.Answer(*plan, {{id, out[i], i + 1 == out.size() ? proto::FINISH_LENGTH : proto::FINISH_NONE}});
  }
  int prev = prompt.back();
  for (int token : out) {
    proto::ServerMessage m = Reply(c);
    ASSERT_TRUE(m.has_token()) << m.DebugString();
    EXPECT_EQ(m.token().text(), tokenizer->DecodeToken(prev, token));
    prev = token;
  }
  proto::ServerMessage done = Reply(c);
  ASSERT_TRUE(done.has_done()) << done.DebugString();
  EXPECT_EQ(done.done().text(), " there was");
}

// A stop string ends the text where it first appears: the stream never carries part of
// it, Done.text stops before it, and the request leaves the workers' batch.
TEST_F(CoordinatorTest, AStopStringEndsTheTextAndTheRequest) {
  Options o;
  o.tokenizer = testing::Tok512Bin();
  Start(o);
  Result<Tokenizer> tokenizer = Tokenizer::LoadLlama2c(o.tokenizer);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  FakeWorker& w = AddWorker();
  w.Start(TestModel(tokenizer->vocab_size()));
  FakeClient& c = AddClient();
  proto::ClientMessage submit;
  submit.mutable_submit()->set_client_request_id("s");
  submit.mutable_submit()->set_text("Once upon a time");
  submit.mutable_submit()->mutable_stop()->set_max_tokens(20);
  submit.mutable_submit()->mutable_stop()->add_stop_strings("a little");
  submit.mutable_submit()->mutable_stop()->add_stop_strings("never");
  submit.mutable_submit()->set_stream(true);
  c.Send(submit);
  proto::ServerMessage accepted = Reply(c);
  ASSERT_TRUE(accepted.has_accepted()) << accepted.DebugString();
  const uint64_t id = accepted.accepted().request_id();
  const std::vector<int> out = tokenizer->Encode("there was a little girl", false);
  size_t answered = 0;
  std::optional<proto::StepPlan> plan;
  for (; answered < out.size(); ++answered) {
    plan = ExpectPlan(w, answered == 0 ? kWait : kQuiet);
    if (!plan) break;  // the request left
    w.Answer(*plan, {{id, out[answered], proto::FINISH_NONE}});
  }
  ASSERT_LT(answered, out.size()) << "the request should have stopped before the last token";
  std::string streamed;
  proto::ServerMessage m;
  for (m = Reply(c); m.has_token(); m = Reply(c)) {
    EXPECT_EQ(m.token().text().find("a l"), std::string::npos) << "part of the stop string was sent";
    streamed += m.token().text();
  }
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_STOP);
  EXPECT_EQ(m.done().text(), " there was ");
  EXPECT_EQ(streamed, m.done().text());
  EXPECT_EQ(m.done().completion_tokens(), static_cast<int>(answered));

  // The next plan tells the workers to drop it.
  c.Submit("next", {1, 2}, 1);
  ASSERT_TRUE(Reply(c).has_accepted());
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->leaves_size(), 1);
  EXPECT_EQ(plan->leaves(0), id);
}

// Text held back because it could begin a stop string is sent when the request ends
// otherwise: the stream's texts still add up to Done.text.
TEST_F(CoordinatorTest, TextHeldForAStopStringIsSentAtTheEnd) {
  Options o;
  o.tokenizer = testing::Tok512Bin();
  Start(o);
  Result<Tokenizer> tokenizer = Tokenizer::LoadLlama2c(o.tokenizer);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  FakeWorker& w = AddWorker();
  w.Start(TestModel(tokenizer->vocab_size()));
  FakeClient& c = AddClient();
  const std::vector<int> out = tokenizer->Encode("there was", false);
  proto::ClientMessage submit;
  submit.mutable_submit()->set_client_request_id("h");
  submit.mutable_submit()->set_text("Once upon a time");
  submit.mutable_submit()->mutable_stop()->set_max_tokens(static_cast<int>(out.size()));
  submit.mutable_submit()->mutable_stop()->add_stop_strings(" there was a dog");
  submit.mutable_submit()->set_stream(true);
  c.Send(submit);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_accepted()) << m.DebugString();
  const uint64_t id = m.accepted().request_id();
  for (size_t i = 0; i < out.size(); ++i) {
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    w.Answer(*plan, {{id, out[i], i + 1 == out.size() ? proto::FINISH_LENGTH : proto::FINISH_NONE}});
  }
  std::string streamed;
  int tokens = 0;
  for (m = Reply(c); m.has_token(); m = Reply(c)) {
    streamed += m.token().text();
    tokens += m.token().tokens_size();
    if (tokens < static_cast<int>(out.size())) {
      EXPECT_EQ(m.token().text(), "") << "held: may begin the stop string";
    }
  }
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_LENGTH);
  EXPECT_EQ(m.done().text(), " there was");
  EXPECT_EQ(streamed, " there was");
  EXPECT_EQ(tokens, static_cast<int>(out.size()));
}

TEST_F(CoordinatorTest, BadRequestsGetErrorsAndNeverReachAWorker) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));

  c.Submit("big-id", {1, 9999}, 4);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "big-id");
  EXPECT_EQ(m.error().code(), "InvalidArgument");
  EXPECT_NE(m.error().message().find("outside the vocabulary"), std::string::npos) << m.error().message();

  c.Submit("zero", {1, 2}, 0);
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().client_request_id(), "zero");
  EXPECT_NE(m.error().message().find("max_tokens"), std::string::npos);

  c.Submit("long", std::vector<int>(65, 3), 1);
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_NE(m.error().message().find("prompt has 65 tokens"), std::string::npos) << m.error().message();

  proto::ClientMessage text;
  text.mutable_submit()->set_client_request_id("text");
  text.mutable_submit()->set_text("hello");
  text.mutable_submit()->mutable_stop()->set_max_tokens(1);
  c.Send(text);
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().message(), "this cluster has no tokenizer: send token ids");

  EXPECT_FALSE(ExpectPlan(w, kQuiet).has_value());
  EXPECT_EQ(GetStatus(c).completed(), 0u);
}

TEST_F(CoordinatorTest, RequestLargerThanTheKvPoolIsResourceExhausted) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start(TestModel(), /*kv_blocks=*/2);  // 8 token slots
  FakeClient& c = AddClient();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  c.Submit("x", {1, 2, 3, 4, 5}, 5);  // 9 positions
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "ResourceExhausted");
  EXPECT_FALSE(ExpectPlan(w, kQuiet).has_value());
}

TEST_F(CoordinatorTest, MalformedClientMessagesGetErrorsWithoutId) {
  Start();
  FakeClient& c = AddClient();
  c.SendRaw(std::string("\xff\xff\xff\xff\x0f", 5));
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "");

  proto::ClientMessage unknown;
  unknown.mutable_submit()->set_client_request_id("u");
  unknown.mutable_submit()->mutable_token_ids()->add_ids(1);
  unknown.mutable_submit()->mutable_stop()->set_max_tokens(1);
  proto::SubmitRequest* submit = unknown.mutable_submit();
  submit->GetReflection()->MutableUnknownFields(submit)->AddVarint(42, 7);
  c.Send(unknown);
  m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "InvalidArgument");
  EXPECT_NE(m.error().message().find("unknown fields"), std::string::npos) << m.error().message();

  proto::ClientMessage old;
  old.mutable_status();
  c.SendRaw(old.SerializeAsString());  // protocol_version 0
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_NE(m.error().message().find("protocol version"), std::string::npos);

  // Still serving.
  EXPECT_EQ(GetStatus(c).name(), "coordinator-test");
}

TEST_F(CoordinatorTest, MalformedWorkerMessagesAreIgnoredAndUnknownWorkersToldToStartAgain) {
  Start();
  FakeWorker& w = AddWorker();
  w.SendRaw("garbage");
  proto::WorkerMessage ready;  // ready before registering: as after a coordinator restart
  ready.mutable_ready()->set_kv_blocks(4);
  w.Send(ready);
  std::optional<proto::CoordinatorMessage> told = w.RecvControl(kWait);
  ASSERT_TRUE(told && told->has_shutdown());
  EXPECT_TRUE(told->shutdown().replica_failed()) << "exit non-zero, so that a supervisor starts it again";
  EXPECT_NE(told->shutdown().reason().find("does not know this worker"), std::string::npos)
      << told->shutdown().reason();
  FakeClient& c = AddClient();
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).state(), "starting");
  EXPECT_EQ(s.replicas(0).workers(0).state(), "absent");
  w.Start();
  EXPECT_TRUE(WaitReplicaState(c, 0, "ready"));
}

// Whatever a worker (or anything else that reaches the control and results sockets)
// sends — random bytes, step results for any replica, sequence number, request, token
// and finish reason, and any control message — the coordinator goes on, and no client
// ever receives a token outside the vocabulary.
TEST_F(CoordinatorTest, RandomWorkerMessagesNeverStopTheCoordinator) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  std::mt19937_64 rng(7);
  auto any = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(rng() % (hi - lo + 1)); };
  auto bytes = [&] {
    std::string s(rng() % 48, '\0');
    for (char& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  for (int i = 0; i < 8; ++i) c.Submit(std::string("r") + std::to_string(i), {1, 2, 3}, 20, /*stream=*/true);
  for (int i = 0; i < 1500; ++i) {
    switch (rng() % 4) {
      case 0: w.PushRaw(bytes()); break;
      case 1: {
        proto::WorkerMessage m;
        proto::StepResult* r = m.mutable_step_result();
        r->set_replica(static_cast<int>(any(-1, 1)));
        r->set_seq(static_cast<uint64_t>(any(0, 12)));
        for (int64_t n = any(0, 4); n > 0; --n) {
          proto::TokenOutput* o = r->add_outputs();
          o->set_request_id(static_cast<uint64_t>(any(0, 10)));
          o->set_token(static_cast<int>(any(-3, 600)));
          o->set_finish(static_cast<proto::FinishReason>(any(0, 7)));
        }
        if (rng() % 50 == 0) r->set_error("random failure");
        w.PushRaw(Serialize(m));
        break;
      }
      case 2: w.SendRaw(bytes()); break;
      default: {
        proto::WorkerMessage m;
        switch (rng() % 4) {
          case 0: m.mutable_heartbeat()->set_rank(static_cast<int>(any(-1, 2))); break;
          case 1:
            m.mutable_store_set()->set_key(bytes());
            m.mutable_store_set()->set_value(bytes());
            break;
          case 2:
            m.mutable_store_get()->set_key(bytes());
            m.mutable_store_get()->set_timeout_ms(static_cast<uint32_t>(any(0, 50)));
            break;
          default:
            m.mutable_ready()->set_kv_blocks(static_cast<int>(any(-5, 20)));
            *m.mutable_ready()->mutable_model() = TestModel(static_cast<int>(any(0, 600)));
            break;
        }
        w.Send(m);
        break;
      }
    }
  }
  // Still there, and every token a client got is in the vocabulary.
  FakeClient& watcher = AddClient();
  const proto::ClusterStatus s = GetStatus(watcher);
  EXPECT_EQ(s.replicas_size(), 1);
  while (std::optional<proto::ServerMessage> m = c.TryRecv(50ms)) {
    std::vector<int> tokens;
    if (m->has_token()) tokens.assign(m->token().tokens().begin(), m->token().tokens().end());
    if (m->has_done()) tokens.assign(m->done().tokens().begin(), m->done().tokens().end());
    for (int token : tokens) EXPECT_TRUE(token >= 0 && token < 512) << token;
  }
}

TEST_F(CoordinatorTest, StatusReportsTheLatencyOfFinishedRequests) {
  OneRequest r = StartWithOneRequest(Options{});
  ASSERT_TRUE(r.plan.has_value());
  FakeClient& watcher = AddClient();
  EXPECT_EQ(GetStatus(watcher).latency().requests(), 0u);
  std::this_thread::sleep_for(20ms);
  r.worker.Answer(*r.plan, {{r.id, 7, proto::FINISH_NONE}});
  std::optional<proto::StepPlan> plan = ExpectPlan(r.worker);
  ASSERT_TRUE(plan.has_value());
  std::this_thread::sleep_for(30ms);
  r.worker.Answer(*plan, {{r.id, 8, proto::FINISH_NONE}});
  plan = ExpectPlan(r.worker);
  ASSERT_TRUE(plan.has_value());
  r.worker.Answer(*plan, {{r.id, 9, proto::FINISH_LENGTH}});
  proto::ServerMessage m;
  do m = Reply(r.client);
  while (m.has_token());
  ASSERT_TRUE(m.has_done()) << m.DebugString();

  const proto::LatencySummary l = GetStatus(watcher).latency();
  EXPECT_EQ(l.window_seconds(), 60);
  EXPECT_EQ(l.requests(), 1u);
  // One request: every percentile is its value, the same as in its Done.
  EXPECT_DOUBLE_EQ(l.total().p50(), m.done().total_seconds());
  EXPECT_DOUBLE_EQ(l.total().p99(), m.done().total_seconds());
  EXPECT_DOUBLE_EQ(l.first_token().p50(), m.done().first_token_seconds());
  EXPECT_DOUBLE_EQ(l.queue().p50(), m.done().queue_seconds());
  EXPECT_GE(l.first_token().p50(), 0.02);
  // Two gaps after the first token, one of them at least 30 ms.
  EXPECT_GE(l.per_token().p50(), 0.015);
  EXPECT_NEAR(l.per_token().p50(), (l.total().p50() - l.first_token().p50()) / 2, 1e-9);
}

TEST_F(CoordinatorTest, StatusDescribesReplicasWorkersAndLoad) {
  Start();
  FakeClient& c = AddClient();
  FakeWorker& w = AddWorker();
  w.Start(TestModel(), 12);
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  c.Submit("s", {1, 2, 3, 4, 5}, 10);
  ExpectAccepted(c, "s");
  ASSERT_TRUE(ExpectPlan(w).has_value());  // in flight, unanswered
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.name(), "coordinator-test");
  EXPECT_EQ(s.model().vocab_size(), 512);
  ASSERT_EQ(s.replicas_size(), 1);
  const proto::ReplicaStatus& r = s.replicas(0);
  EXPECT_EQ(r.state(), "ready");
  EXPECT_EQ(r.running(), 1);
  EXPECT_EQ(r.waiting(), 0);
  EXPECT_EQ(r.kv_blocks_total(), 12);
  EXPECT_EQ(r.kv_blocks_used(), 2);
  ASSERT_EQ(r.workers_size(), 1);
  EXPECT_EQ(r.workers(0).state(), "ready");
  EXPECT_EQ(r.workers(0).pid(), w.pid());
  EXPECT_EQ(r.workers(0).device(), "cpu");
  EXPECT_LT(r.workers(0).last_heartbeat_age_s(), 1.0);
  EXPECT_GT(s.uptime_seconds(), 0.0);
}

TEST_F(CoordinatorTest, CancelSendsDoneAndTheNextPlanCarriesTheLeave) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  c.Submit("a", {1, 2, 3}, 50);
  const uint64_t a = ExpectAccepted(c, "a");
  std::optional<proto::StepPlan> p1 = ExpectPlan(w);
  ASSERT_TRUE(p1.has_value());
  w.Answer(*p1, {{a, 40, proto::FINISH_NONE}});
  std::optional<proto::StepPlan> p2 = ExpectPlan(w);
  ASSERT_TRUE(p2.has_value());
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token());

  // Cancel while plan 2 is in flight: Done at once; plan 2's output is stale.
  c.Cancel("a");
  m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_CANCELLED);
  EXPECT_EQ(m.done().completion_tokens(), 1);
  w.Answer(*p2, {{a, 41, proto::FINISH_NONE}});
  EXPECT_FALSE(ExpectReply(c, kQuiet).has_value());  // no token after Done
  EXPECT_FALSE(ExpectPlan(w, kQuiet).has_value());   // nothing to run

  c.Submit("b", {1, 2}, 1);
  const uint64_t b = ExpectAccepted(c, "b");
  std::optional<proto::StepPlan> p3 = ExpectPlan(w);
  ASSERT_TRUE(p3.has_value());
  EXPECT_EQ(p3->seq(), 3u);
  ASSERT_EQ(p3->leaves_size(), 1);
  EXPECT_EQ(p3->leaves(0), a);
  ASSERT_EQ(p3->joins_size(), 1);
  EXPECT_EQ(p3->joins(0).request_id(), b);

  c.Cancel("nope");
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().code(), "NotFound");
  EXPECT_EQ(m.error().client_request_id(), "nope");
}

// A client that leaves (its process killed) leaves no work behind: its streaming request
// is cancelled when its next token cannot be delivered.
TEST_F(CoordinatorTest, AStreamingRequestOfAClientThatLeavesIsCancelled) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& leaver = AddClient();
  FakeClient& watcher = AddClient();
  ASSERT_TRUE(WaitReplicaState(watcher, 0, "ready"));
  leaver.Submit("a", {1, 2}, 10);
  const uint64_t a = ExpectAccepted(leaver, "a");
  std::optional<proto::StepPlan> p1 = ExpectPlan(w);
  ASSERT_TRUE(p1.has_value());
  w.Answer(*p1, {{a, 40, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(leaver).has_token());
  std::optional<proto::StepPlan> p2 = ExpectPlan(w);
  ASSERT_TRUE(p2.has_value());

  leaver.Disconnect();
  std::this_thread::sleep_for(100ms);  // the coordinator sees the connection close
  w.Answer(*p2, {{a, 41, proto::FINISH_NONE}});  // a token nobody can receive
  EXPECT_FALSE(ExpectPlan(w, kQuiet).has_value()) << "the request was cancelled: nothing to run";
  const proto::ClusterStatus s = GetStatus(watcher);
  EXPECT_EQ(s.abandoned(), 1u);
  EXPECT_EQ(s.replicas(0).running(), 0);

  watcher.Submit("b", {1, 2}, 1);
  const uint64_t b = ExpectAccepted(watcher, "b");
  std::optional<proto::StepPlan> p3 = ExpectPlan(w);
  ASSERT_TRUE(p3.has_value());
  ASSERT_EQ(p3->leaves_size(), 1);
  EXPECT_EQ(p3->leaves(0), a) << "the workers free its KV cache";
  ASSERT_EQ(p3->joins_size(), 1);
  EXPECT_EQ(p3->joins(0).request_id(), b);
}

// A request that sends nothing until its end (not streaming) is cancelled too: the
// coordinator checks the clients of such requests when a client connection closes.
TEST_F(CoordinatorTest, ARequestWithoutStreamOfAClientThatLeavesIsCancelled) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& leaver = AddClient();
  FakeClient& stays = AddClient();  // its request is checked too, and is not cancelled
  FakeClient& watcher = AddClient();
  ASSERT_TRUE(WaitReplicaState(watcher, 0, "ready"));
  leaver.Submit("a", {1, 2}, 10, /*stream=*/false);
  const uint64_t a = ExpectAccepted(leaver, "a");
  std::optional<proto::StepPlan> p1 = ExpectPlan(w);
  ASSERT_TRUE(p1.has_value());
  stays.Submit("s", {1, 2}, 1, /*stream=*/false);  // joins the next step
  const uint64_t s = ExpectAccepted(stays, "s");

  leaver.Disconnect();
  const auto deadline = SteadyClock::now() + kWait;
  while (GetStatus(watcher).abandoned() == 0 && SteadyClock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(GetStatus(watcher).abandoned(), 1u);
  w.Answer(*p1, {{a, 40, proto::FINISH_NONE}});
  std::optional<proto::StepPlan> p2 = ExpectPlan(w);
  ASSERT_TRUE(p2.has_value());
  ASSERT_EQ(p2->leaves_size(), 1);
  EXPECT_EQ(p2->leaves(0), a) << "the workers free its KV cache";
  ASSERT_EQ(p2->joins_size(), 1);
  EXPECT_EQ(p2->joins(0).request_id(), s);
  w.Answer(*p2, {{s, 50, proto::FINISH_LENGTH}});
  proto::ServerMessage m = Reply(stays);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(std::vector<int>(m.done().tokens().begin(), m.done().tokens().end()), (std::vector<int>{50}));
  EXPECT_GT(stays.keepalives_received(), 0) << "the client that stayed was checked";
  EXPECT_EQ(GetStatus(watcher).abandoned(), 1u);
}

// Stop() drains: new requests are refused, the ones in flight run to their end, and only
// then are the workers shut down (told so, not as a failure).
TEST_F(CoordinatorTest, StopLetsTheRequestsInFlightFinishAndRefusesNewOnes) {
  Options o;
  o.drain = 10000ms;
  OneRequest r = StartWithOneRequest(o);
  ASSERT_TRUE(r.plan.has_value());
  coordinator_->Stop();
  FakeClient& late = AddClient();
  late.Submit("late", {1, 2}, 1);
  proto::ServerMessage m = Reply(late);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_NE(m.error().message().find("shutting down"), std::string::npos) << m.error().message();

  std::optional<proto::StepPlan> plan = r.plan;
  for (int token : {7, 8}) {
    r.worker.Answer(*plan, {{r.id, token, proto::FINISH_NONE}});
    plan = ExpectPlan(r.worker);
    ASSERT_TRUE(plan.has_value()) << "the request goes on while the coordinator drains";
  }
  r.worker.Answer(*plan, {{r.id, 9, proto::FINISH_LENGTH}});
  do m = Reply(r.client);
  while (m.has_token());
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().completion_tokens(), 3);
  std::optional<proto::CoordinatorMessage> shutdown = r.worker.RecvControl(kWait);
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  EXPECT_FALSE(shutdown->shutdown().replica_failed());
  thread_.join();  // Run() returned once nothing was in flight
}

TEST_F(CoordinatorTest, TheDrainEndsAtItsTimeout) {
  Options o;
  o.drain = 300ms;
  OneRequest r = StartWithOneRequest(o);
  ASSERT_TRUE(r.plan.has_value());
  const auto t0 = SteadyClock::now();
  coordinator_->Stop();  // the worker never answers
  proto::ServerMessage m = Reply(r.client);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_GE(SteadyClock::now() - t0, 250ms);
  thread_.join();
}

TEST_F(CoordinatorTest, ASecondStopEndsTheDrainAtOnce) {
  Options o;
  o.drain = 60000ms;
  OneRequest r = StartWithOneRequest(o);
  ASSERT_TRUE(r.plan.has_value());
  const auto t1 = SteadyClock::now();
  coordinator_->Stop();
  coordinator_->Stop();
  thread_.join();
  EXPECT_LT(SteadyClock::now() - t1, 5s) << "a second Stop() does not wait for the drain";
}

TEST_F(CoordinatorTest, DuplicateClientRequestIdInFlightIsRejected) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  FakeClient& other = AddClient();
  c.Submit("same", {1, 2}, 5);
  ExpectAccepted(c, "same");
  c.Submit("same", {1, 2}, 5);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_NE(m.error().message().find("already in flight"), std::string::npos);
  other.Submit("same", {1, 2}, 5);  // another connection may reuse it
  ExpectAccepted(other, "same");
}

TEST_F(CoordinatorTest, SubmissionsBeforeAnyReplicaIsReadyWaitThenRun) {
  Start();
  FakeClient& c = AddClient();
  c.Submit("early", {1, 2}, 1);
  EXPECT_FALSE(ExpectReply(c, kQuiet).has_value());
  EXPECT_EQ(GetStatus(c).queued(), 1);
  FakeWorker& w = AddWorker();
  w.Start();
  const uint64_t id = ExpectAccepted(c, "early");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->joins(0).request_id(), id);
}

TEST_F(CoordinatorTest, QueueBoundGivesOverloaded) {
  Options o;
  o.max_queued = 2;
  Start(o);
  FakeClient& c = AddClient();
  c.Submit("q1", {1}, 1);
  c.Submit("q2", {1}, 1);
  c.Submit("q3", {1}, 1);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "q3");
  EXPECT_EQ(m.error().code(), "ResourceExhausted");
  EXPECT_NE(m.error().message().find("overloaded"), std::string::npos);
}

TEST_F(CoordinatorTest, SilentWorkerFailsItsRequestsNoClientHangs) {
  Options o;
  o.timeout_ms = 300;
  Start(o);
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  c.Submit("r", {1, 2, 3}, 10);
  const uint64_t id = ExpectAccepted(c, "r");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 7, proto::FINISH_NONE}});
  Silence(w);  // no heartbeat, no result from now on
  ASSERT_TRUE(Reply(c).has_token());

  const auto t0 = SteadyClock::now();
  std::optional<proto::ServerMessage> m = ExpectReply(c, kWait);
  ASSERT_TRUE(m.has_value()) << "client left hanging";
  EXPECT_LT(SteadyClock::now() - t0, 2s);
  ASSERT_TRUE(m->has_error()) << m->DebugString();
  EXPECT_EQ(m->error().client_request_id(), "r");
  EXPECT_EQ(m->error().code(), "Unavailable");
  // Silence and the missing result of plan 2 are noticed at about the same time.
  const std::string& why = m->error().message();
  EXPECT_EQ(why.rfind("replica 0 is unhealthy: ", 0), 0u) << why;
  EXPECT_TRUE(why.find("missed heartbeats") != std::string::npos ||
              why.find("step 2 got no result") != std::string::npos)
      << why;
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl(kWait);
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
}

TEST_F(CoordinatorTest, SilentWorkerMakesTheReplicaUnhealthy) {
  Options o;
  o.timeout_ms = 300;
  Start(o);
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  Silence(w);
  ASSERT_TRUE(WaitReplicaState(c, 0, "unhealthy"));
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).workers(0).state(), "dead");
  const std::string& why = s.replicas(0).error();
  EXPECT_EQ(why.rfind("replica 0 is unhealthy: worker 0/0 (pid " + std::to_string(w.pid()) +
                          ") missed heartbeats for 0.",
                      0),
            0u)
      << why;
  // The worker is told to stop; later submissions fail at once.
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl(kWait);
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  EXPECT_EQ(shutdown->shutdown().reason(), why);
  EXPECT_TRUE(shutdown->shutdown().replica_failed());
  c.Submit("later", {1, 2}, 1);
  std::optional<proto::ServerMessage> m = ExpectReply(c);
  ASSERT_TRUE(m && m->has_error());
  EXPECT_EQ(m->error().code(), "Unavailable");
  EXPECT_NE(m->error().message().find("no healthy replica: " + why), std::string::npos) << m->error().message();
}

// A worker whose connection closes is dead at once, long before its heartbeats are
// missed (here a heartbeat interval of 30 s and a timeout of a minute).
TEST_F(CoordinatorTest, AWorkerWhoseConnectionClosesFailsItsReplicaAtOnce) {
  Options o;
  o.interval_ms = 30000;
  o.timeout_ms = 60000;
  auto [c, w, id, plan] = StartWithOneRequest(o);
  ASSERT_TRUE(plan.has_value());

  Silence(w);
  const auto t0 = SteadyClock::now();
  w.Disconnect();
  proto::ServerMessage m = Reply(c);
  const auto noticed = SteadyClock::now() - t0;
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_EQ(m.error().message(), "replica 0 is unhealthy: worker 0/0 (pid " + std::to_string(w.pid()) +
                                     ") disconnected (its process exited, or the network dropped its connection "
                                     "to the coordinator)");
  EXPECT_LT(noticed, 2s);
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).state(), "unhealthy");
  EXPECT_EQ(s.replicas(0).workers(0).state(), "dead");

  // A new process of the same rank registers at once: the old one is known to be gone.
  FakeWorker& again = AddWorker();
  const proto::RegisterReply reply = again.Register();
  EXPECT_TRUE(reply.accepted()) << reply.error();
}

TEST_F(CoordinatorTest, StepWithoutResultMakesTheReplicaUnhealthy) {
  Options o;
  o.timeout_ms = 1000;
  o.step_timeout_ms = 300;
  Start(o);
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  c.Submit("r", {1, 2, 3}, 10);
  ExpectAccepted(c, "r");
  ASSERT_TRUE(ExpectPlan(w).has_value());  // heartbeats go on; the result never comes
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_NE(m.error().message().find("replica 0 is unhealthy: step 1 got no result within 0.3 s"), std::string::npos)
      << m.error().message();
}

TEST_F(CoordinatorTest, SlowStepOfAHeartbeatingWorkerIsNotAFailure) {
  Options o;
  o.timeout_ms = 300;
  o.step_timeout_ms = 5000;
  Start(o);
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  c.Submit("r", {1, 2, 3}, 2);
  const uint64_t id = ExpectAccepted(c, "r");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  // A step longer than timeout_ms, while the worker heartbeats.
  for (const auto until = SteadyClock::now() + 800ms; SteadyClock::now() < until;) {
    KeepAlive();
    std::this_thread::sleep_for(10ms);
  }
  w.Answer(*plan, {{id, 7, proto::FINISH_NONE}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  ASSERT_EQ(m.token().tokens_size(), 1);
  EXPECT_EQ(m.token().tokens(0), 7);
  EXPECT_EQ(GetStatus(c).replicas(0).state(), "ready");
}

TEST_F(CoordinatorTest, WorkerFailureAndStepErrorsFailTheReplicaWithTheReason) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  c.Submit("r", {1, 2}, 10);
  ExpectAccepted(c, "r");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  proto::StepResult failed;
  failed.set_seq(plan->seq());
  failed.set_error("all-reduce timed out");
  w.Push(failed);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_NE(m.error().message().find("replica 0 is unhealthy: step 1 failed: all-reduce timed out"),
            std::string::npos)
      << m.error().message();

  // A restarted worker brings the replica back; plans count from 1 again.
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl(kWait);
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  Silence(w);
  FakeWorker& again = AddWorker();
  again.Start();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  c.Submit("r2", {1, 2}, 10);
  ExpectAccepted(c, "r2");
  plan = ExpectPlan(again);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 1u);

  proto::WorkerMessage failure;
  failure.mutable_failure()->set_replica(0);
  failure.mutable_failure()->set_rank(0);
  failure.mutable_failure()->set_message("plan 3 arrived after plan 1");
  again.Send(failure);
  m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "r2");
  EXPECT_NE(m.error().message().find("failed: plan 3 arrived after plan 1"), std::string::npos)
      << m.error().message();
}

TEST_F(CoordinatorTest, ReplicaBecomesReadyOnlyWhenAllRanksAgree) {
  Options o;
  o.tensor = 2;
  Start(o);
  FakeClient& c = AddClient();
  FakeWorker& r0 = AddWorker(0, 0);
  FakeWorker& r1 = AddWorker(0, 1);
  r0.Start(TestModel(), 10);
  EXPECT_EQ(GetStatus(c).replicas(0).state(), "starting");
  r1.Start(TestModel(), 8);
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  EXPECT_EQ(GetStatus(c).replicas(0).kv_blocks_total(), 8);  // the smallest pool
  // Only rank 0 pushes results, but both receive every plan.
  c.Submit("tp", {1, 2}, 1);
  const uint64_t id = ExpectAccepted(c, "tp");
  std::optional<proto::StepPlan> p0 = ExpectPlan(r0);
  std::optional<proto::StepPlan> p1 = ExpectPlan(r1);
  ASSERT_TRUE(p0 && p1);
  EXPECT_EQ(p0->SerializeAsString(), p1->SerializeAsString());
  r0.Answer(*p0, {{id, 9, proto::FINISH_LENGTH}});
  ASSERT_TRUE(Reply(c).has_token());
  ASSERT_TRUE(Reply(c).has_done());
}

TEST_F(CoordinatorTest, RanksThatDisagreeOnTheModelMakeTheReplicaUnhealthy) {
  Options o;
  o.tensor = 2;
  Start(o);
  FakeClient& c = AddClient();
  AddWorker(0, 0).Start(TestModel(512));
  AddWorker(0, 1).Start(TestModel(256));
  ASSERT_TRUE(WaitReplicaState(c, 0, "unhealthy"));
  EXPECT_NE(GetStatus(c).replicas(0).error().find("ranks disagree on the model"), std::string::npos);
}

TEST_F(CoordinatorTest, RequestsSpreadOverReplicasAndMoveOnWhenOneFails) {
  Options o;
  o.replicas = 2;
  Start(o);
  FakeClient& c = AddClient();
  FakeWorker& w0 = AddWorker(0, 0);
  FakeWorker& w1 = AddWorker(1, 0);
  w0.Start();
  w1.Start();
  ASSERT_TRUE(WaitReplicaState(c, 1, "ready"));
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  c.Submit("a", {1, 2}, 10);
  const uint64_t a = ExpectAccepted(c, "a", /*replica=*/0);
  c.Submit("b", {1, 2}, 10);
  const uint64_t b = ExpectAccepted(c, "b", /*replica=*/1);  // least loaded
  std::optional<proto::StepPlan> p0 = ExpectPlan(w0);
  std::optional<proto::StepPlan> p1 = ExpectPlan(w1);
  ASSERT_TRUE(p0 && p1);
  EXPECT_EQ(p0->entries(0).request_id(), a);
  EXPECT_EQ(p1->entries(0).request_id(), b);
  w0.Answer(*p0, {{a, 7, proto::FINISH_NONE}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().client_request_id(), "a");

  // Replica 0 fails: a moves to replica 1 with its generated token, and the client sees
  // no error (nor a second Accepted).
  ReportFailure(w0, "GPU fell off the bus");
  FakeClient& watcher = AddClient();
  ASSERT_TRUE(WaitReplicaState(watcher, 0, "unhealthy"));
  w1.Answer(*p1, {{b, 5, proto::FINISH_NONE}});
  std::optional<proto::StepPlan> next = ExpectPlan(w1);
  ASSERT_TRUE(next.has_value());
  ASSERT_EQ(next->joins_size(), 1) << next->DebugString();
  EXPECT_EQ(next->joins(0).request_id(), a);
  EXPECT_EQ(std::vector<int>(next->joins(0).prompt().begin(), next->joins(0).prompt().end()),
            (std::vector<int>{1, 2}));
  EXPECT_EQ(std::vector<int>(next->joins(0).generated().begin(), next->joins(0).generated().end()),
            (std::vector<int>{7}));
  std::map<uint64_t, std::pair<int, int>> entries;  // id -> (start_pos, n_tokens)
  for (const proto::PlanEntry& e : next->entries()) entries[e.request_id()] = {e.start_pos(), e.n_tokens()};
  EXPECT_EQ(entries[a], std::make_pair(0, 3));  // prompt + generated, recomputed
  EXPECT_EQ(entries[b], std::make_pair(2, 1));
  w1.Answer(*next, {{b, 6, proto::FINISH_LENGTH}, {a, 8, proto::FINISH_LENGTH}});
  std::map<std::string, std::vector<int>> done;
  for (int i = 0; i < 5 && done.size() < 2; ++i) {
    m = Reply(c);
    ASSERT_FALSE(m.has_error()) << m.DebugString();
    ASSERT_FALSE(m.has_accepted()) << m.DebugString();
    if (m.has_done()) done[m.done().client_request_id()] = {m.done().tokens().begin(), m.done().tokens().end()};
  }
  EXPECT_EQ(done["a"], (std::vector<int>{7, 8}));
  EXPECT_EQ(done["b"], (std::vector<int>{5, 6}));
  EXPECT_EQ(GetStatus(watcher).moved(), 1u);

  // New requests go to replica 1.
  c.Submit("c", {1, 2}, 10);
  ExpectAccepted(c, "c", /*replica=*/1);
}

TEST_F(CoordinatorTest, RequestsOfAFailedReplicaFailWhenNoOtherIsReady) {
  Start(Options{.replicas = 2});  // replica 1 never starts
  FakeClient& c = AddClient();
  FakeWorker& w0 = AddWorker(0, 0);
  w0.Start();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  c.Submit("a", {1, 2}, 10);
  ExpectAccepted(c, "a", /*replica=*/0);
  ASSERT_TRUE(ExpectPlan(w0).has_value());
  ReportFailure(w0, "GPU fell off the bus");
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "a");
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_NE(m.error().message().find("replica 0 is unhealthy: worker 0/0"), std::string::npos) << m.error().message();
}

TEST_F(CoordinatorTest, RequestsOfAFailedReplicaWaitForItToComeBack) {
  // One replica and failover_wait_ms: its request waits (the client sees nothing), the
  // restarted worker brings the replica back, and the request goes on from its token.
  Options o;
  o.failover_wait_ms = 10000;
  const OneRequest r = StartWithOneRequest(o);
  FakeClient& c = r.client;
  FakeWorker& w = r.worker;
  const uint64_t id = r.id;
  std::optional<proto::StepPlan> plan = r.plan;
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 9, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(c).has_token());

  ReportFailure(w, "killed");
  FakeClient& watcher = AddClient();
  ASSERT_TRUE(WaitReplicaState(watcher, 0, "unhealthy"));
  // A request submitted now waits too, instead of failing because nothing is ready.
  FakeClient& late = AddClient();
  late.Submit("late", {3, 4}, 1, /*stream=*/false);
  const auto deadline = SteadyClock::now() + kWait;
  while (GetStatus(watcher).queued() < 2 && SteadyClock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(GetStatus(watcher).queued(), 2) << "both requests wait in the queue";
  EXPECT_FALSE(c.TryRecv(200ms).has_value()) << "nothing reaches the client while it waits";
  EXPECT_FALSE(late.TryRecv(10ms).has_value()) << "no error for the late request while it waits";

  Silence(w);
  FakeWorker& again = AddWorker();
  again.Start();
  plan = ExpectPlan(again);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 1u);
  ASSERT_EQ(plan->joins_size(), 2);
  EXPECT_EQ(plan->joins(0).request_id(), id) << "the moved request goes first";
  EXPECT_EQ(std::vector<int>(plan->joins(0).generated().begin(), plan->joins(0).generated().end()),
            (std::vector<int>{9}));
  const uint64_t late_id = ExpectAccepted(late, "late");
  EXPECT_EQ(plan->joins(1).request_id(), late_id);
  again.Answer(*plan, {{id, 10, proto::FINISH_NONE}, {late_id, 5, proto::FINISH_LENGTH}});
  ASSERT_TRUE(Reply(late).has_done());
  plan = ExpectPlan(again);
  ASSERT_TRUE(plan.has_value());
  again.Answer(*plan, {{id, 11, proto::FINISH_LENGTH}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(std::vector<int>(m.done().tokens().begin(), m.done().tokens().end()), (std::vector<int>{9, 10, 11}));
  EXPECT_EQ(GetStatus(watcher).moved(), 1u);
}

TEST_F(CoordinatorTest, ATokenOutsideTheVocabularyFailsTheReplicaAndReachesNoClient) {
  const OneRequest r = StartWithOneRequest(Options{});
  ASSERT_TRUE(r.plan.has_value());
  r.worker.Answer(*r.plan, {{r.id, 512, proto::FINISH_NONE}});  // TestModel's vocabulary is 512
  proto::ServerMessage m = Reply(r.client);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_NE(m.error().message().find("replica 0 is unhealthy: step 1 returned token 512 for request"),
            std::string::npos)
      << m.error().message();
  std::optional<proto::CoordinatorMessage> shutdown = r.worker.RecvControl(kWait);
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
}

TEST_F(CoordinatorTest, ARequestWaitingInVainAfterAFailureFailsWithTheReason) {
  Options o;
  o.failover_wait_ms = 300;
  const OneRequest r = StartWithOneRequest(o);
  FakeClient& c = r.client;
  ReportFailure(r.worker, "killed");
  const auto t0 = SteadyClock::now();
  FakeClient& late = AddClient();  // submits while the replica is down: waits the rest of the window
  ASSERT_TRUE(WaitReplicaState(late, 0, "unhealthy"));
  late.Submit("late", {3, 4}, 1);
  proto::ServerMessage m = Reply(c);
  const double waited = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_NE(m.error().message().find("replica 0 is unhealthy: worker 0/0"), std::string::npos) << m.error().message();
  EXPECT_NE(m.error().message().find("no replica became ready within 0.3 s"), std::string::npos)
      << m.error().message();
  EXPECT_GE(waited, 0.25);
  m = Reply(late);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "late");
  EXPECT_EQ(m.error().message().rfind("no healthy replica: replica 0 is unhealthy: worker 0/0", 0), 0u)
      << m.error().message();
  EXPECT_NE(m.error().message().find("no replica became ready within 0.3 s"), std::string::npos)
      << m.error().message();
  EXPECT_LT(std::chrono::duration<double>(SteadyClock::now() - t0).count(), 1.0) << "the window is from the failure";
  EXPECT_EQ(GetStatus(c).moved(), 0u);

  // After the window, nothing is expected back: a new request fails at once.
  late.Submit("later", {3, 4}, 1);
  m = Reply(late);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().message().rfind("no healthy replica: replica 0 is unhealthy: worker 0/0", 0), 0u)
      << m.error().message();
  EXPECT_EQ(m.error().message().find("became ready"), std::string::npos) << m.error().message();
}

TEST_F(CoordinatorTest, RendezvousStoreRelaysValuesBetweenRanks) {
  Options o;
  o.tensor = 2;
  Start(o);
  FakeWorker& r0 = AddWorker(0, 0);
  FakeWorker& r1 = AddWorker(0, 1);
  ASSERT_TRUE(r0.Register().accepted());
  ASSERT_TRUE(r1.Register().accepted());

  proto::WorkerMessage get;
  get.mutable_store_get()->set_key("gloo/0");
  get.mutable_store_get()->set_timeout_ms(2000);
  r1.Send(get);
  EXPECT_FALSE(r1.RecvControl(100ms).has_value());  // waits for the key

  proto::WorkerMessage set;
  set.mutable_store_set()->set_key("gloo/0");
  set.mutable_store_set()->set_value(std::string("addr\0port", 9));
  r0.Send(set);
  std::optional<proto::CoordinatorMessage> v = r1.RecvControl(kWait);
  ASSERT_TRUE(v && v->has_store_value());
  EXPECT_TRUE(v->store_value().found());
  EXPECT_EQ(v->store_value().value(), std::string("addr\0port", 9));

  get.mutable_store_get()->set_key("missing");
  get.mutable_store_get()->set_timeout_ms(50);
  r0.Send(get);
  v = r0.RecvControl(kWait);
  ASSERT_TRUE(v && v->has_store_value());
  EXPECT_FALSE(v->store_value().found());
  EXPECT_EQ(v->store_value().key(), "missing");
}

TEST_F(CoordinatorTest, StopShutsWorkersDownAndFailsRequestsInFlight) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  c.Submit("r", {1, 2}, 10);
  ExpectAccepted(c, "r");
  ASSERT_TRUE(ExpectPlan(w).has_value());
  StopCoordinator();
  std::optional<proto::ServerMessage> m = c.TryRecv(kWait);
  ASSERT_TRUE(m && m->has_error());
  EXPECT_EQ(m->error().code(), "Unavailable");
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl(kWait);
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  EXPECT_FALSE(shutdown->shutdown().replica_failed()) << "the coordinator stopping is not a failure";
}

}  // namespace
}  // namespace flover
