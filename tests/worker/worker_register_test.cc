// WorkerDaemon's registration against a scripted coordinator (a real ROUTER socket on
// loopback): the cluster config in RegisterReply is checked before anything is loaded,
// so a coordinator that sends a bad one (buggy, hostile, another version) gets the
// worker to stop with a clear error naming the key, never to crash. And the bounds the
// worker keeps against its coordinator's sockets: the size of a message on the control
// and plans connections, and its log under a flood of unreadable messages.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <atomic>

#include "common/cluster_config_proto.h"
#include "common/disconnect_monitor.h"
#include "common/protocol.h"
#include "tests/captured_log.h"
#include "worker/worker_daemon.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

// A valid one-worker config, as a coordinator would send it.
proto::ClusterConfig ValidConfig() {
  ClusterConfig config;
  config.source = "c.yaml";
  config.endpoints.control = "tcp://127.0.0.1:5556";
  config.model.path = "dummy:tiny";
  config.workers = {WorkerConfig{}};
  EXPECT_TRUE(config.Validate().ok()) << config.Validate().ToString();
  return ToProto(config);
}

// Starts a WorkerDaemon against a ROUTER that answers its RegisterWorker with `reply`;
// returns what Start returned.
Status StartAgainst(const proto::RegisterReply& reply) {
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  WorkerOptions options;
  options.coordinator = router.get(zmq::sockopt::last_endpoint);
  options.register_timeout = 60s;  // an upper bound: the reply comes at once

  Status started = Internal("not run");
  std::thread worker([&] {
    Result<std::unique_ptr<WorkerDaemon>> daemon = WorkerDaemon::Start(options);
    started = daemon.ok() ? Status::Ok() : daemon.status();
  });
  std::vector<zmq::message_t> frames;
  std::array<zmq::pollitem_t, 1> items = {{{router.handle(), 0, ZMQ_POLLIN, 0}}};
  zmq::poll(items, 60s);
  EXPECT_TRUE(zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait));
  if (frames.size() == 2) {
    Result<proto::WorkerMessage> m = Parse<proto::WorkerMessage>(frames[1].to_string_view());
    EXPECT_TRUE(m.ok() && m->has_register_()) << (m.ok() ? m->DebugString() : m.status().ToString());
    proto::CoordinatorMessage answer;
    *answer.mutable_register_reply() = reply;
    const std::string payload = Serialize(answer);
    const std::array<zmq::const_buffer, 2> out = {zmq::buffer(frames[0].to_string_view()), zmq::buffer(payload)};
    EXPECT_TRUE(zmq::send_multipart(router, out));
  } else {
    ADD_FAILURE() << "no RegisterWorker from the worker";
  }
  worker.join();
  return started;
}

TEST(WorkerRegisterTest, ABadConfigFromTheCoordinatorIsAClearError) {
  using Mutation = std::function<void(proto::RegisterReply&)>;
  const std::vector<std::pair<Mutation, std::string>> cases = {
      {[](proto::RegisterReply& r) { r.clear_config(); }, "the coordinator's RegisterReply carries no cluster config"},
      {[](proto::RegisterReply& r) {
         r.mutable_config()->mutable_scheduler()->set_policy(static_cast<proto::SchedulerPolicy>(99));
       },
       "the coordinator's cluster config: c.yaml: scheduler.policy: 99 is not a value this build knows"},
      {[](proto::RegisterReply& r) { r.mutable_config()->mutable_model()->set_dtype(proto::MODEL_DTYPE_UNSPECIFIED); },
       "the coordinator's cluster config: c.yaml: model.dtype: is not set"},
      {[](proto::RegisterReply& r) { r.mutable_config()->mutable_kv_cache()->set_block_size(0); },
       "the coordinator's cluster config: c.yaml: kv_cache.block_size: must be >= 1, got 0"},
      {[](proto::RegisterReply& r) { r.mutable_config()->mutable_workers(0)->set_device("cuda:x"); },
       "the coordinator's cluster config: c.yaml: workers[0].device: 'cuda:x' is not cpu or cuda:N"},
  };
  for (const auto& [mutate, expected] : cases) {
    proto::RegisterReply reply;
    reply.set_accepted(true);
    *reply.mutable_config() = ValidConfig();
    reply.set_plans_endpoint("tcp://127.0.0.1:1");
    reply.set_plan_topic("replica/0/");
    mutate(reply);
    const Status status = StartAgainst(reply);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.message(), expected);
  }
}

// A scripted coordinator for a worker that goes further than registration: a control
// ROUTER and a plans PUB on loopback, each with a monitor of closed connections.
class ScriptedCoordinator {
 public:
  ScriptedCoordinator()
      : control_(context_, zmq::socket_type::router),
        plans_(context_, zmq::socket_type::pub),
        control_closed_(context_),
        plans_closed_(context_) {
    for (zmq::socket_t* s : {&control_, &plans_}) s->set(zmq::sockopt::linger, 0);
    control_.set(zmq::sockopt::sndhwm, 0);  // a flood waits, whole, for the worker to read it
    control_closed_.Watch(control_, "control");
    plans_closed_.Watch(plans_, "plans");
    control_.bind("tcp://127.0.0.1:*");
    plans_.bind("tcp://127.0.0.1:*");
  }

  // Options of a worker 0/0 of this coordinator; the test ends the worker.
  WorkerOptions Options() {
    WorkerOptions options;
    options.coordinator = control_.get(zmq::sockopt::last_endpoint);
    options.register_timeout = 600s;
    return options;
  }

  // Waits for the worker's RegisterWorker and accepts it with `config`; false if none
  // came.
  bool AcceptRegistration(const proto::ClusterConfig& config) {
    if (!Expect(proto::WorkerMessage::kRegister)) return false;
    proto::CoordinatorMessage m;
    *m.mutable_register_reply() = Accept(config);
    Send(m);
    return true;
  }

  // A RegisterReply that accepts worker 0/0 with `config` (a valid one by default).
  proto::RegisterReply Accept(const proto::ClusterConfig& config = ValidConfig()) {
    proto::RegisterReply reply;
    reply.set_accepted(true);
    *reply.mutable_config() = config;
    reply.set_plans_endpoint(plans_.get(zmq::sockopt::last_endpoint));
    reply.set_plan_topic("replica/0/");
    return reply;
  }

  // The next WorkerMessage on the control socket, within `timeout`; remembers its sender.
  std::optional<proto::WorkerMessage> Receive(std::chrono::milliseconds timeout) {
    std::array<zmq::pollitem_t, 1> items = {{{control_.handle(), 0, ZMQ_POLLIN, 0}}};
    if (zmq::poll(items, timeout) == 0) return std::nullopt;
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(control_, std::back_inserter(frames), zmq::recv_flags::dontwait) || frames.size() != 2)
      return std::nullopt;
    worker_ = frames[0].to_string();
    Result<proto::WorkerMessage> m = Parse<proto::WorkerMessage>(frames[1].to_string_view());
    if (!m.ok()) return std::nullopt;
    return std::move(m).value();
  }
  // Waits (a generous bound) for a message with `body`, ignoring heartbeats.
  bool Expect(proto::WorkerMessage::BodyCase body) {
    for (auto deadline = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < deadline;)
      if (std::optional<proto::WorkerMessage> m = Receive(100ms); m && m->body_case() == body) return true;
    return false;
  }

  // Probes the worker's plan topic until it reports ready (a generous bound); false if
  // it did not.
  bool AwaitReady() {
    for (auto deadline = std::chrono::steady_clock::now() + 120s; std::chrono::steady_clock::now() < deadline;) {
      Publish("replica/0/");
      std::optional<proto::WorkerMessage> ready = Receive(10ms);
      if (ready && ready->has_ready()) return true;
    }
    return false;
  }

  void SendRaw(const std::string& payload) {
    const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(worker_), zmq::buffer(payload)};
    ASSERT_TRUE(zmq::send_multipart(control_, frames));
  }
  void Send(proto::CoordinatorMessage m) { SendRaw(Serialize(std::move(m))); }
  void Publish(const std::string& frame) { plans_.send(zmq::buffer(frame), zmq::send_flags::dontwait); }
  // A [topic][body] plan message.
  void PublishPlan(const std::string& topic, const std::string& body) {
    const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(topic), zmq::buffer(body)};
    (void)zmq::send_multipart(plans_, frames, zmq::send_flags::dontwait);
  }

  // True once a connection to the socket closed (a generous bound); `meanwhile` runs
  // between the looks.
  bool WaitClosed(DisconnectMonitor& monitor, const std::function<void()>& meanwhile) {
    for (auto deadline = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < deadline;) {
      meanwhile();
      std::array<zmq::pollitem_t, 1> items = {{{monitor.handle(), 0, ZMQ_POLLIN, 0}}};
      zmq::poll(items, 10ms);
      if (monitor.Drain()) return true;
    }
    return false;
  }
  DisconnectMonitor& control_closed() { return control_closed_; }
  DisconnectMonitor& plans_closed() { return plans_closed_; }

 private:
  zmq::context_t context_;
  zmq::socket_t control_;
  zmq::socket_t plans_;
  DisconnectMonitor control_closed_;
  DisconnectMonitor plans_closed_;
  std::string worker_;  // ROUTER identity of the worker's control connection
};

// Runs WorkerDaemon::Start (and then Run, when it succeeds) on a thread of its own;
// `stop` ends either.
class WorkerThread {
 public:
  explicit WorkerThread(WorkerOptions options) {
    thread_ = std::thread([this, options] {
      Result<std::unique_ptr<WorkerDaemon>> daemon = WorkerDaemon::Start(options, &stop_);
      started_ = daemon.ok() ? Status::Ok() : daemon.status();
      if (daemon.ok()) exit_code_ = (*daemon)->Run(stop_);
    });
  }
  ~WorkerThread() { Join(); }
  void Join() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const Status& started() const { return started_; }
  int exit_code() const { return exit_code_; }

 private:
  std::atomic<bool> stop_{false};
  Status started_ = Internal("not run");
  int exit_code_ = -1;
  std::thread thread_;
};

// Before the config arrives, the control connection holds the bound the worker was given
// (its --config file's): a larger RegisterReply drops the connection.
TEST(WorkerLimitsTest, AControlMessageOverTheBoundDropsTheConnection) {
  ScriptedCoordinator coordinator;
  WorkerOptions options = coordinator.Options();
  options.max_message_bytes = 64 << 10;
  WorkerThread worker(options);
  proto::ClusterConfig config = ValidConfig();
  config.set_name(std::string(100 << 10, 'n'));  // a RegisterReply of 100 KiB
  ASSERT_TRUE(coordinator.AcceptRegistration(config));
  EXPECT_TRUE(coordinator.WaitClosed(coordinator.control_closed(), [] {}))
      << "the worker kept a connection that sent it 100 KiB";
  worker.Join();
  EXPECT_FALSE(worker.started().ok()) << "registered from a reply it must not read";
}

// The plans connection holds the bound of the config the coordinator sent
// (limits.max_worker_message_bytes): a larger message on it drops the connection.
TEST(WorkerLimitsTest, APlanOverTheConfiguredBoundDropsThePlansConnection) {
  ScriptedCoordinator coordinator;
  WorkerThread worker(coordinator.Options());
  proto::ClusterConfig config = ValidConfig();
  config.mutable_limits()->set_max_worker_message_bytes(64 << 10);
  config.mutable_heartbeat()->set_timeout_ms(600000);  // it never leaves on its own
  ASSERT_TRUE(coordinator.AcceptRegistration(config));
  // What a worker would take for the probe of its topic, were it not too large; sent
  // until the subscription is in place and the message arrives.
  const std::string oversized = "replica/0/" + std::string(100 << 10, 'p');
  EXPECT_TRUE(coordinator.WaitClosed(coordinator.plans_closed(), [&] { coordinator.Publish(oversized); }))
      << "the worker read a " << oversized.size() << "-byte message on its plans connection";
  worker.Join();
  EXPECT_FALSE(worker.started().ok()) << "took the oversized message for the probe of its topic";
}

// A running worker that gets 10,000 unreadable control messages logs a bounded number of
// lines: at most 10 per second (the bound below grows with the time the flood took, so
// a slow machine cannot fail it; without the limit there would be 10,000 lines).
TEST(WorkerLimitsTest, AFloodOfUnreadableControlMessagesLogsABoundedNumberOfLines) {
  ScriptedCoordinator coordinator;
  testing::CapturedLog log;
  WorkerThread worker(coordinator.Options());
  proto::ClusterConfig config = ValidConfig();
  config.mutable_heartbeat()->set_timeout_ms(600000);  // the worker never gives up on the test
  ASSERT_TRUE(coordinator.AcceptRegistration(config));
  ASSERT_TRUE(coordinator.AwaitReady()) << "the worker did not report ready";
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10000; ++i) coordinator.SendRaw("not a CoordinatorMessage \xff\xff");
  proto::CoordinatorMessage shutdown;
  shutdown.mutable_shutdown()->set_reason("test over");
  coordinator.Send(shutdown);
  for (auto deadline = std::chrono::steady_clock::now() + 120s; worker.exit_code() < 0;) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the worker did not stop";
    std::this_thread::sleep_for(10ms);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  worker.Join();
  EXPECT_EQ(worker.exit_code(), kExitOk);
  size_t about_messages = 0;
  for (const std::string& line : log.Lines())
    about_messages += line.find("ignoring control message") != std::string::npos;
  EXPECT_GE(about_messages, 1u);
  EXPECT_LE(about_messages, 10 * (static_cast<size_t>(seconds) + 1)) << "in " << seconds << " s";
}

// A worker whose step fails while more plans are queued behind it (the coordinator keeps
// up to pipeline_depth plans in flight, and more if its failure notice is slow) reports
// the failure and exits 3: the plans after the failed one must never block it. The
// burst makes the compute thread fail on the first plan while the I/O thread still
// forwards the others.
TEST(WorkerStepTest, AFailedStepWithPlansQueuedBehindItEndsTheWorker) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    SCOPED_TRACE("attempt " + std::to_string(attempt));
    ScriptedCoordinator coordinator;
    WorkerThread worker(coordinator.Options());
    proto::ClusterConfig config = ValidConfig();
    config.mutable_heartbeat()->set_timeout_ms(600000);  // the worker never gives up on the test
    ASSERT_TRUE(coordinator.AcceptRegistration(config));
    ASSERT_TRUE(coordinator.AwaitReady()) << "the worker did not report ready";
    // Unreadable plans: the first one fails the step.
    for (int i = 0; i < 64; ++i) coordinator.PublishPlan("replica/0/", "not a plan \xff");
    ASSERT_TRUE(coordinator.Expect(proto::WorkerMessage::kFailure)) << "no WorkerFailure";
    for (auto deadline = std::chrono::steady_clock::now() + 120s; worker.exit_code() < 0;) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the worker did not stop";
      std::this_thread::sleep_for(10ms);
    }
    worker.Join();
    EXPECT_EQ(worker.exit_code(), kExitFailure);
  }
}

}  // namespace
}  // namespace flover
