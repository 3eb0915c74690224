// The coordinator's ZeroMQ shell over real sockets: endpoints, framing, the paths from a
// socket to the core and back, closed connections (socket monitors and
// ZMQ_ROUTER_MANDATORY), and stopping the loop from another thread. The decisions
// themselves are tested without sockets (core_*_test.cc); harness:
// coordinator_fixture.h.
#include "tests/coordinator/coordinator_fixture.h"

namespace flover {
namespace {

using namespace coordinator_testing;

TEST_F(CoordinatorTest, EndpointsAreResolved) {
  Start();
  for (const std::string* e : {&endpoints_.client, &endpoints_.control, &endpoints_.plans}) {
    EXPECT_EQ(e->rfind("tcp://127.0.0.1:", 0), 0u) << *e;
    EXPECT_EQ(e->find('*'), std::string::npos) << *e;
  }
}

// A request's path through every socket: Submit in on the client ROUTER, the plans out
// on the PUB under the replica's topic, the results in on the control ROUTER from the
// worker's own connection, tokens and Done out on the client ROUTER. A result sent by
// another connection (one that never registered) goes nowhere: the client gets the
// worker's tokens only. (What the plans and replies contain is the core's, tested in
// core_client_api_test.cc and core_results_test.cc.)
TEST_F(CoordinatorTest, ARequestTravelsThroughEverySocket) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& c = AddClient();
  ASSERT_TRUE(WaitReplicaState(c, 0, "ready"));
  c.Submit("r1", {1, 5, 7}, /*max_tokens=*/2);
  const uint64_t id = ExpectAccepted(c, "r1");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);  // checks the topic
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 1u);
  FakeWorker& stranger = AddWorker();
  Silence(stranger);
  stranger.Answer(*plan, {{id, 66, proto::FINISH_NONE}});
  // Read once the coordinator told it to register (it does not know the connection).
  std::optional<proto::CoordinatorMessage> told = stranger.RecvControl(kWait);
  ASSERT_TRUE(told && told->has_shutdown());
  EXPECT_EQ(GetStatus(c).rejected_messages(), 1u);
  w.Answer(*plan, {{id, 20, proto::FINISH_NONE}});
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 2u);
  w.Answer(*plan, {{id, 21, proto::FINISH_LENGTH}});
  for (int token : {20, 21}) {
    proto::ServerMessage m = Reply(c);
    ASSERT_TRUE(m.has_token()) << m.DebugString();
    EXPECT_EQ(m.token().tokens(0), token);
  }
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(std::vector<int>(m.done().tokens().begin(), m.done().tokens().end()), (std::vector<int>{20, 21}));
}

// Framing is the shell's: bytes that are no ClientMessage and messages of several frames
// get an Error without a request id, and the coordinator goes on serving.
TEST_F(CoordinatorTest, MalformedClientMessagesGetErrorsWithoutId) {
  Start();
  FakeClient& c = AddClient();
  c.SendRaw(std::string("\xff\xff\xff\xff\x0f", 5));
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "");
  c.SendFrames({"a", "b"});
  m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().message(), "a client message is one frame; got 2");
  EXPECT_EQ(GetStatus(c).name(), "coordinator-test");
}

// A worker whose connection closes is dead at once, long before its heartbeats are
// missed (here a heartbeat interval of 30 s and a timeout of a minute, longer than
// kWait): the control socket's monitor and a heartbeat that cannot be delivered.
TEST_F(CoordinatorTest, AWorkerWhoseConnectionClosesFailsItsReplicaAtOnce) {
  Options o;
  o.interval_ms = 30000;
  o.timeout_ms = 60000;
  auto [c, w, id, plan] = StartWithOneRequest(o);
  ASSERT_TRUE(plan.has_value());

  Silence(w);
  w.Disconnect();
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_NE(m.error().message().find("worker 0/0 (pid " + std::to_string(w.pid()) + ") disconnected"),
            std::string::npos)
      << m.error().message();
}

// A client that leaves (its process killed) leaves no work behind: its streaming request
// is cancelled when a token cannot be delivered (ZMQ_ROUTER_MANDATORY). The test waits
// until the coordinator has seen the connection close (the watcher's request, which
// sends nothing until its end, gets a Keepalive then) before the next token goes out.
TEST_F(CoordinatorTest, AStreamingRequestOfAClientThatLeavesIsCancelled) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& leaver = AddClient();
  FakeClient& watcher = AddClient();
  ASSERT_TRUE(WaitReplicaState(watcher, 0, "ready"));
  watcher.Submit("w", {1, 2}, 20, /*stream=*/false);
  const uint64_t id_w = ExpectAccepted(watcher, "w");
  leaver.Submit("a", {1, 2}, 20);
  const uint64_t a = ExpectAccepted(leaver, "a");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  if (plan->entries_size() == 1) {  // "a" arrived after the first plan went out
    w.Answer(*plan, {{id_w, 30, proto::FINISH_NONE}});
    plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
  }
  ASSERT_EQ(plan->entries_size(), 2) << plan->DebugString();
  w.Answer(*plan, {{id_w, 31, proto::FINISH_NONE}, {a, 40, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(leaver).has_token());
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());

  leaver.Disconnect();
  const auto deadline = SteadyClock::now() + kWait;
  while (watcher.keepalives_received() == 0 && SteadyClock::now() < deadline) {
    std::optional<proto::ServerMessage> m = watcher.TryRecv(10ms);
    ASSERT_FALSE(m.has_value()) << m->DebugString();
  }
  ASSERT_GT(watcher.keepalives_received(), 0) << "the coordinator never saw the connection close";
  w.Answer(*plan, {{id_w, 32, proto::FINISH_NONE}, {a, 41, proto::FINISH_NONE}});  // a token nobody can receive
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->leaves_size(), 1) << plan->DebugString();
  EXPECT_EQ(plan->leaves(0), a);
  ASSERT_EQ(plan->entries_size(), 1) << plan->DebugString();
  EXPECT_EQ(plan->entries(0).request_id(), id_w);
  const proto::ClusterStatus s = GetStatus(watcher);
  EXPECT_EQ(s.abandoned(), 1u);
  EXPECT_EQ(s.replicas(0).running(), 1);
}

// A request that sends nothing until its end (not streaming) is cancelled too: the
// client socket's monitor reports the closed connection, and a Keepalive that cannot be
// delivered finds whose it was (the other client's request is checked, not cancelled).
TEST_F(CoordinatorTest, ARequestWithoutStreamOfAClientThatLeavesIsCancelled) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& leaver = AddClient();
  FakeClient& stays = AddClient();
  ASSERT_TRUE(WaitReplicaState(stays, 0, "ready"));
  leaver.Submit("a", {1, 2}, 10, /*stream=*/false);
  ExpectAccepted(leaver, "a");
  stays.Submit("s", {1, 2}, 10, /*stream=*/false);
  ExpectAccepted(stays, "s");
  leaver.Disconnect();
  const auto deadline = SteadyClock::now() + kWait;
  while (GetStatus(stays).abandoned() == 0 && SteadyClock::now() < deadline) std::this_thread::sleep_for(5ms);
  const proto::ClusterStatus s = GetStatus(stays);
  EXPECT_EQ(s.abandoned(), 1u);
  EXPECT_EQ(s.replicas(0).running() + s.replicas(0).waiting(), 1) << "the request of the client that stayed goes on";
  EXPECT_GT(stays.keepalives_received(), 0) << "the client that stayed was checked";
}

TEST_F(CoordinatorTest, StopShutsWorkersDownAndFailsRequestsInFlight) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 10);
  ASSERT_TRUE(plan.has_value());
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
