// The limits that the coordinator's shell enforces with its sockets (docs/limits.md),
// over real ZeroMQ sockets: a client that does not read is cut off (the client ROUTER's
// SNDHWM), an oversized message drops its connection (ZMQ_MAXMSGSIZE), and a flood of
// bad messages logs a bounded number of lines. The decisions are tested in simulated time
// in core_limits_test.cc; harness: coordinator_fixture.h.
#include "common/disconnect_monitor.h"
#include "tests/captured_log.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace flover {
namespace {

using namespace coordinator_testing;

class ShellLimitsTest : public CoordinatorTest {
 protected:
  // Once request `leaving` (in the unanswered plan `first`) was cancelled: `good`'s
  // request "g" (3 tokens) is accepted, the next plan drops `leaving` and admits g, and
  // g runs to its exact end.
  void ExpectServedAfter(FakeClient& good, FakeWorker& w, const proto::StepPlan& first, uint64_t leaving) {
    good.Submit("g", {1, 2}, 3);
    const uint64_t g = ExpectAccepted(good, "g");
    w.Answer(first, {{leaving, 30, proto::FINISH_NONE}});
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    ExpectLeaveAndJoin(*plan, leaving, g);
    for (int token = 20; token < 23; ++token) {
      ASSERT_TRUE(plan.has_value());
      w.Answer(*plan, {{g, token, token == 22 ? proto::FINISH_LENGTH : proto::FINISH_NONE}});
      if (token < 22) plan = ExpectPlan(w);
    }
    std::vector<int> tokens;
    for (;;) {
      std::optional<proto::ServerMessage> m = ExpectReply(good);
      ASSERT_TRUE(m.has_value()) << "no Done";
      if (m->has_done()) break;
      if (m->has_token()) tokens.insert(tokens.end(), m->token().tokens().begin(), m->token().tokens().end());
    }
    EXPECT_EQ(tokens, (std::vector<int>{20, 21, 22}));
  }
};

// A client that never reads (its socket holds one message; the kernel's buffers fill
// next) and sends bad messages in a loop: each gets an Error it does not read, until
// max_undelivered_per_client wait at the coordinator. Then it is cut off: its running
// request is cancelled, and another client's request runs exactly.
TEST_F(ShellLimitsTest, AClientThatDoesNotReadIsCutOffAndAnotherIsServedExactly) {
  Options o;
  o.limits.max_undelivered_per_client = 16;
  Start(o);
  FakeClient& good = AddClient();
  FakeWorker& w = AddWorker();
  w.Start();
  ASSERT_TRUE(WaitReplicaState(good, 0, "ready"));

  zmq::socket_t slow(context_, zmq::socket_type::dealer);
  slow.set(zmq::sockopt::linger, 0);
  slow.set(zmq::sockopt::rcvhwm, 1);
  slow.set(zmq::sockopt::rcvbuf, 4096);
  slow.connect(endpoints_.client);
  slow.send(zmq::buffer(Serialize(SubmitMessage("s1", {1, 2}, 40, true))), zmq::send_flags::none);
  std::optional<proto::StepPlan> first = ExpectPlan(w);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->joins_size(), 1);
  const uint64_t s1 = first->joins(0).request_id();

  int sent = 0;
  proto::ClusterStatus status;
  for (const auto deadline = SteadyClock::now() + kWait; status.clients_cut_off() == 0;) {
    ASSERT_LT(SteadyClock::now(), deadline) << "not cut off after " << sent << " unread replies";
    for (int i = 0; i < 1000; ++i, ++sent) slow.send(zmq::buffer(std::string("\xff\xff")), zmq::send_flags::none);
    status = GetStatus(good);
  }
  EXPECT_EQ(status.clients_cut_off(), 1u);
  EXPECT_EQ(status.replicas(0).running() + status.replicas(0).waiting(), 0) << "its request was cancelled";

  ExpectServedAfter(good, w, *first, s1);
  status = GetStatus(good);
  EXPECT_EQ(status.clients_cut_off(), 1u) << "counted once, however many replies it left unread";
  EXPECT_EQ(status.replicas(0).kv_blocks_used(), 0);
}

// A raw socket whose closed connections a monitor reports.
struct WatchedSocket {
  WatchedSocket(zmq::context_t& context, zmq::socket_type type, const std::string& endpoint, const std::string& name,
                const std::string& subscription = "")
      : socket(context, type), closed(context) {
    socket.set(zmq::sockopt::linger, 0);
    if (type == zmq::socket_type::sub) socket.set(zmq::sockopt::subscribe, subscription);
    closed.Watch(socket, name);
    socket.connect(endpoint);
  }
  // True once the connection closed (a generous bound).
  bool WaitClosed() {
    for (const auto deadline = SteadyClock::now() + kWait; SteadyClock::now() < deadline;) {
      std::array<zmq::pollitem_t, 1> items = {{{closed.handle(), 0, ZMQ_POLLIN, 0}}};
      zmq::poll(items, 10ms);
      if (closed.Drain()) return true;
    }
    return false;
  }
  zmq::socket_t socket;
  DisconnectMonitor closed;
};

// A message over max_client_message_bytes (client socket) or max_worker_message_bytes
// (control socket), or a subscription over 1 KiB (plans socket), drops its connection;
// the client's request in flight is cancelled as that of a client that left, and the
// others are served.
TEST_F(ShellLimitsTest, OversizedMessagesDropTheirConnectionAndTheOthersAreServed) {
  Options o;
  o.limits.max_client_message_bytes = 64 << 10;
  o.limits.max_worker_message_bytes = 64 << 10;
  Start(o);
  FakeClient& good = AddClient();
  FakeWorker& w = AddWorker();
  w.Start();
  ASSERT_TRUE(WaitReplicaState(good, 0, "ready"));

  WatchedSocket big_client(context_, zmq::socket_type::dealer, endpoints_.client, "big-client");
  big_client.socket.send(zmq::buffer(Serialize(SubmitMessage("b1", {1, 2}, 40, false))), zmq::send_flags::none);
  std::optional<proto::StepPlan> first = ExpectPlan(w);
  ASSERT_TRUE(first.has_value());
  const uint64_t b1 = first->joins(0).request_id();
  proto::ClientMessage big = SubmitMessage("b2", {1, 2}, 40, false);
  big.mutable_submit()->set_text(std::string(100 << 10, 'a'));
  big_client.socket.send(zmq::buffer(Serialize(big)), zmq::send_flags::none);
  EXPECT_TRUE(big_client.WaitClosed()) << "the coordinator read a " << Serialize(big).size() << "-byte message";
  // Its request in flight is cancelled as that of a client that left.
  for (const auto deadline = SteadyClock::now() + kWait; GetStatus(good).abandoned() == 0;)
    ASSERT_LT(SteadyClock::now(), deadline) << "b1 was not cancelled";

  WatchedSocket big_worker(context_, zmq::socket_type::dealer, endpoints_.control, "big-worker");
  big_worker.socket.send(zmq::buffer(std::string(100 << 10, 'w')), zmq::send_flags::none);
  EXPECT_TRUE(big_worker.WaitClosed()) << "the coordinator read a 100 KiB control message";

  WatchedSocket big_subscriber(context_, zmq::socket_type::sub, endpoints_.plans, "big-subscriber",
                               "replica/0/" + std::string(2 << 10, 's'));
  EXPECT_TRUE(big_subscriber.WaitClosed()) << "the coordinator took a 2 KiB subscription";

  ExpectServedAfter(good, w, *first, b1);
  EXPECT_EQ(GetStatus(good).abandoned(), 1u);
  EXPECT_EQ(GetStatus(good).replicas(0).state(), "ready") << "the worker was not disturbed";
}

// 10,000 bad messages of each of three kinds (control messages of three frames, control
// messages that are no WorkerMessage, client messages that are no ClientMessage): at
// most CoordinatorCore::kPeerLogLines lines per second of each kind. The bound grows
// with the time the flood took, so a slow machine cannot fail it; without the limits
// there would be 20,000 lines.
TEST_F(ShellLimitsTest, AFloodOfBadMessagesLogsABoundedNumberOfLines) {
  testing::CapturedLog log;
  Start();
  FakeClient& c = AddClient();
  zmq::socket_t bad_worker(context_, zmq::socket_type::dealer);
  bad_worker.set(zmq::sockopt::linger, 0);
  bad_worker.connect(endpoints_.control);
  const auto t0 = SteadyClock::now();
  const std::string a = "a", b = "b";
  for (int i = 0; i < 10000; ++i) {
    const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(a), zmq::buffer(b)};
    zmq::send_multipart(bad_worker, frames);
    bad_worker.send(zmq::buffer(std::string("\xff\xff not a WorkerMessage")), zmq::send_flags::none);
    c.SendRaw("\xff\xff not a ClientMessage");
  }
  // After the client's flood, a status: once it comes, the coordinator read it all.
  proto::ClientMessage status;
  status.mutable_status();
  c.Send(status);
  int n_errors = 0;
  // (No ASSERT before StopCoordinator below: the coordinator's thread logs into `log`.)
  for (std::optional<proto::ServerMessage> m; !(m = ExpectReply(c)) || !m->has_status(); ++n_errors) {
    if (!m) {
      ADD_FAILURE() << "no status after " << n_errors << " errors";
      break;
    }
  }
  EXPECT_EQ(n_errors, 10000) << "every bad client message got its Error";
  // The control socket's flood is read by now too: a stranger's heartbeat, sent after it,
  // is answered.
  proto::WorkerMessage heartbeat = HeartbeatMessage(0, 0);
  bad_worker.send(zmq::buffer(Serialize(heartbeat)), zmq::send_flags::none);
  std::optional<proto::CoordinatorMessage> shutdown;
  for (const auto deadline = SteadyClock::now() + kWait; !shutdown && SteadyClock::now() < deadline;)
    shutdown = RecvOn<proto::CoordinatorMessage>(bad_worker, 100ms);
  EXPECT_TRUE(shutdown && shutdown->has_shutdown());
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  StopCoordinator();  // nothing logs any more
  bad_worker.close();

  const size_t n_lines = log.Lines().size();
  EXPECT_GE(n_lines, 2u) << "each kind said something";
  const size_t bound = 3 * CoordinatorCore::kPeerLogLines * (static_cast<size_t>(seconds) + 2) + 10;
  EXPECT_LE(n_lines, bound) << "in " << seconds << " s:\n" << log.Text().substr(0, 2000);
}

}  // namespace
}  // namespace flover
