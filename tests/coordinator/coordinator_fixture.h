// The harness of the coordinator shell's tests (coordinator_shell_test.cc): the real
// Coordinator runs in a thread on tcp://127.0.0.1:* endpoints; scripted fake workers
// (DEALER + SUB) and clients (DEALER) speak flover.proto to it over real ZeroMQ
// sockets. Waits are upper bounds for what must happen (kWait, long: only a failing test
// waits that long); the decisions are tested without sockets (core_harness.h).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/cluster_config_reader.h"
#include "common/curve_socket.h"
#include "common/protocol.h"
#include "coordinator/coordinator.h"
#include "tests/coordinator/coordinator_test_config.h"
#include "tests/test_paths.h"

namespace flover::coordinator_testing {


using namespace std::chrono_literals;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr milliseconds kWait = 30000ms;     // upper bound for something that must happen
constexpr milliseconds kQuiet = 250ms;      // how long "nothing happens" is watched
constexpr milliseconds kBeatEvery = 40ms;   // fake workers' heartbeat period

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

// A scripted worker: control DEALER (which carries its step results too), plans SUB.
class FakeWorker {
 public:
  // `curve`: the worker's CURVE key pair and the coordinator's public key, for the
  // control and plans sockets.
  FakeWorker(zmq::context_t& context, const EndpointsConfig& endpoints, int replica, int rank,
             std::optional<CurveClientKeys> curve = std::nullopt)
      : context_(context),
        replica_(replica),
        rank_(rank),
        control_(context, zmq::socket_type::dealer),
        curve_(std::move(curve)) {
    control_.set(zmq::sockopt::linger, 0);
    if (curve_) {
      EXPECT_TRUE(ApplyCurveClient(control_, *curve_).ok());
    }
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
    for (zmq::socket_t* s : {&control_, &sub_})
      if (s->handle() != nullptr) s->close();
  }

  void SendRegister(int replica, int rank) { Send(RegisterMessage(replica, rank, pid())); }

  // Heartbeats start once registered, as a real worker's do.
  void Beat() {
    if (registered_) Send(HeartbeatMessage(replica_, rank_));
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

  // Register, connect SUB, report ready.
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
    if (curve_) {
      EXPECT_TRUE(ApplyCurveClient(sub_, *curve_).ok());
    }
    sub_.connect(reply.plans_endpoint());
    // As a real worker: ready only once a probe of the topic shows the subscription is in
    // place (the coordinator probes a starting replica's topic every 10 ms).
    const auto deadline = SteadyClock::now() + kWait;
    bool probed = false;
    while (!probed && SteadyClock::now() < deadline) {
      std::vector<zmq::message_t> parts;
      std::array<zmq::pollitem_t, 1> items = {{{sub_.handle(), 0, ZMQ_POLLIN, 0}}};
      zmq::poll(items, 10ms);
      if (items[0].revents & ZMQ_POLLIN) probed = zmq::recv_multipart(sub_, std::back_inserter(parts)).value_or(0) == 1;
    }
    ASSERT_TRUE(probed) << "no probe on " << reply.plan_topic();
  }

  void Ready(const proto::ModelInfo& model, int kv_blocks) { Send(ReadyMessage(replica_, rank_, model, kv_blocks)); }

  std::optional<proto::StepPlan> TryPlan(milliseconds timeout) {
    std::array<zmq::pollitem_t, 1> items = {{{sub_.handle(), 0, ZMQ_POLLIN, 0}}};
    zmq::poll(items, timeout);
    if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(sub_, std::back_inserter(parts), zmq::recv_flags::dontwait)) return std::nullopt;
    if (parts.size() == 1) return std::nullopt;  // a probe, sent while the replica was starting
    EXPECT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts.front().to_string(), "replica/" + std::to_string(replica_) + "/");
    Result<proto::CoordinatorMessage> m = Parse<proto::CoordinatorMessage>(parts.back().to_string_view());
    EXPECT_TRUE(m.ok() && m->has_plan());
    if (!m.ok() || !m->has_plan()) return std::nullopt;
    return m->plan();
  }

  // A step result, on the control connection (as rank 0 sends them).
  void Push(proto::StepResult result) {
    result.set_replica(replica_);
    proto::WorkerMessage m;
    *m.mutable_step_result() = std::move(result);
    Send(std::move(m));
  }

  // Sends the result of `plan` with the given (request id, token, finish) outputs.
  void Answer(const proto::StepPlan& plan, const Outputs& outs) { Push(ResultOf(plan, outs)); }

 private:
  zmq::context_t& context_;
  const int replica_;
  const int rank_;
  zmq::socket_t control_;
  zmq::socket_t sub_;
  std::optional<CurveClientKeys> curve_;
  int heartbeats_received_ = 0;
  bool registered_ = false;
};

class FakeClient {
 public:
  FakeClient(zmq::context_t& context, const EndpointsConfig& endpoints,
             const std::optional<CurveClientKeys>& curve = std::nullopt)
      : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    if (curve) {
      EXPECT_TRUE(ApplyCurveClient(socket_, *curve).ok());
    }
    socket_.connect(endpoints.client);
  }

  void Send(proto::ClientMessage m) { SendRaw(Serialize(std::move(m))); }
  void SendRaw(const std::string& bytes) { socket_.send(zmq::buffer(bytes), zmq::send_flags::none); }
  void SendFrames(const std::vector<std::string>& frames) {
    std::vector<zmq::const_buffer> buffers;
    for (const std::string& f : frames) buffers.push_back(zmq::buffer(f));
    zmq::send_multipart(socket_, buffers);
  }

  void Submit(const std::string& id, std::vector<int> prompt, int max_tokens, bool stream = true) {
    Send(SubmitMessage(id, prompt, max_tokens, stream));
  }
  void Cancel(const std::string& id) { Send(CancelMessage(id)); }

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

  FakeWorker& AddWorker(int replica = 0, int rank = 0, std::optional<CurveClientKeys> curve = std::nullopt) {
    workers_.push_back(std::make_unique<FakeWorker>(context_, endpoints_, replica, rank, std::move(curve)));
    alive_.push_back(workers_.back().get());
    return *workers_.back();
  }
  FakeClient& AddClient(const std::optional<CurveClientKeys>& curve = std::nullopt) {
    clients_.push_back(std::make_unique<FakeClient>(context_, endpoints_, curve));
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
  OneRequest StartWithOneRequest(const Options& o, std::vector<int> prompt = {1, 2}, int max_tokens = 3) {
    Start(o);
    FakeClient& c = AddClient();
    FakeWorker& w = AddWorker();
    w.Start();
    EXPECT_TRUE(WaitReplicaState(c, 0, "ready"));
    c.Submit("r", std::move(prompt), max_tokens);
    const uint64_t id = ExpectAccepted(c, "r");
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    EXPECT_TRUE(plan.has_value());
    return OneRequest{c, w, id, plan};
  }

  // A coordinator with stories260K's tokenizer and one ready worker whose model has its
  // vocabulary.
  struct WithTokenizer {
    Tokenizer tokenizer;
    FakeWorker& worker;
    FakeClient& client;
  };
  std::optional<WithTokenizer> StartWithTokenizer() {
    Options o;
    o.tokenizer = testing::Tok512Bin();
    Start(o);
    Result<Tokenizer> tokenizer = Tokenizer::LoadLlama2c(o.tokenizer);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
    if (!tokenizer.ok()) return std::nullopt;
    FakeWorker& w = AddWorker();
    w.Start(TestModel(tokenizer->vocab_size()));
    return WithTokenizer{std::move(tokenizer).value(), w, AddClient()};
  }

  // A submit of a text prompt, streamed; the rest of it is the caller's.
  static proto::ClientMessage TextSubmit(const std::string& id, const std::string& text) {
    proto::ClientMessage m;
    m.mutable_submit()->set_client_request_id(id);
    m.mutable_submit()->set_text(text);
    m.mutable_submit()->set_stream(true);
    return m;
  }

  // The plan drops request `leave` (its KV blocks freed) and admits request `join`.
  static void ExpectLeaveAndJoin(const proto::StepPlan& plan, uint64_t leave, uint64_t join) {
    ASSERT_EQ(plan.leaves_size(), 1) << plan.DebugString();
    EXPECT_EQ(plan.leaves(0), leave);
    ASSERT_EQ(plan.joins_size(), 1) << plan.DebugString();
    EXPECT_EQ(plan.joins(0).request_id(), join);
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

}  // namespace flover::coordinator_testing
