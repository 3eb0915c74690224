// Stopping: the drain, the shutdown, and clients that leave with requests in flight
// (harness: coordinator_fixture.h).
#include "tests/coordinator/coordinator_fixture.h"

namespace flover {
namespace {

using namespace coordinator_testing;

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
  ExpectLeaveAndJoin(*p3, a, b);
}

// All the streaming requests of a client that leaves are cancelled at the first token
// that cannot be delivered, not only the one of that token (the coordinator once
// compared the others with the client name of the request it had just freed).
TEST_F(CoordinatorTest, EveryStreamingRequestOfAClientThatLeavesIsCancelled) {
  Start();
  FakeWorker& w = AddWorker();
  w.Start();
  FakeClient& leaver = AddClient();
  FakeClient& watcher = AddClient();
  ASSERT_TRUE(WaitReplicaState(watcher, 0, "ready"));
  leaver.Submit("a", {1, 2}, 200);
  const uint64_t a = ExpectAccepted(leaver, "a");
  leaver.Submit("b", {1, 2}, 200);
  const uint64_t b = ExpectAccepted(leaver, "b");
  // Steps until both requests have streamed a token (b joins the first or the second).
  std::optional<proto::StepPlan> plan;
  for (int step = 0, token = 40; step < 3; ++step) {
    plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    if (plan->entries_size() == 2) break;
    ASSERT_EQ(plan->entries_size(), 1) << plan->DebugString();
    w.Answer(*plan, {{plan->entries(0).request_id(), token++, proto::FINISH_NONE}});
    ASSERT_TRUE(Reply(leaver).has_token());
  }
  ASSERT_EQ(plan->entries_size(), 2) << "b never joined: " << plan->DebugString();
  w.Answer(*plan, {{a, 50, proto::FINISH_NONE}, {b, 51, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(leaver).has_token());
  ASSERT_TRUE(Reply(leaver).has_token());
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());

  leaver.Disconnect();
  // Tokens still go out until the coordinator's socket has seen the connection close;
  // the first one that cannot be delivered cancels the client's requests.
  for (int token = 52; plan.has_value(); token += 2) {
    ASSERT_LT(token, 52 + 2 * 150) << "the coordinator never noticed that the client left";
    w.Answer(*plan, {{a, token, proto::FINISH_NONE}, {b, token + 1, proto::FINISH_NONE}});
    plan.reset();
    for (auto deadline = SteadyClock::now() + kWait; !plan && SteadyClock::now() < deadline;) {
      if (GetStatus(watcher).abandoned() > 0) break;
      plan = ExpectPlan(w, 20ms);
    }
  }
  EXPECT_FALSE(ExpectPlan(w, kQuiet).has_value()) << "both requests were cancelled: nothing to run";
  const proto::ClusterStatus s = GetStatus(watcher);
  EXPECT_EQ(s.abandoned(), 2u);
  EXPECT_EQ(s.replicas(0).running(), 0);
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
