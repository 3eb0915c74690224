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
  for (const std::string* e : {&endpoints_.client, &endpoints_.control, &endpoints_.plans, &endpoints_.results}) {
    EXPECT_EQ(e->rfind("tcp://127.0.0.1:", 0), 0u) << *e;
    EXPECT_EQ(e->find('*'), std::string::npos) << *e;
  }
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

  // A message of two frames (after the identity) is not a ClientMessage.
  c.SendFrames({"a", "b"});
  m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().message(), "a client message is one frame; got 2");

  // Still serving.
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
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_EQ(m.error().message(), "replica 0 is unhealthy: worker 0/0 (pid " + std::to_string(w.pid()) +
                                     ") disconnected (its process exited, or the network dropped its connection "
                                     "to the coordinator)");
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).state(), "unhealthy");
  EXPECT_EQ(s.replicas(0).workers(0).state(), "dead");

  // A new process of the same rank registers at once: the old one is known to be gone.
  FakeWorker& again = AddWorker();
  const proto::RegisterReply reply = again.Register();
  EXPECT_TRUE(reply.accepted()) << reply.error();
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
  ExpectLeaveAndJoin(*p2, a, s);
  w.Answer(*p2, {{s, 50, proto::FINISH_LENGTH}});
  proto::ServerMessage m = Reply(stays);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(std::vector<int>(m.done().tokens().begin(), m.done().tokens().end()), (std::vector<int>{50}));
  EXPECT_GT(stays.keepalives_received(), 0) << "the client that stayed was checked";
  EXPECT_EQ(GetStatus(watcher).abandoned(), 1u);
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
