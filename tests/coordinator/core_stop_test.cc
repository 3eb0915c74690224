// Stopping: the drain, the shutdown, and clients that leave with requests in flight
// (harness: core_harness.h).
#include "tests/coordinator/core_harness.h"

namespace flover {
namespace {

using namespace coordinator_testing;

// A client that leaves (its process killed) leaves no work behind: its streaming request
// is cancelled when its next token cannot be delivered.
TEST_F(CoreTest, AStreamingRequestOfAClientThatLeavesIsCancelled) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& leaver = AddClient();
  SimClient& watcher = AddClient();
  ASSERT_EQ(ReplicaState(watcher, 0), "ready");
  leaver.Submit("a", {1, 2}, 10);
  const uint64_t a = ExpectAccepted(leaver, "a");
  std::optional<proto::StepPlan> p1 = ExpectPlan(w);
  ASSERT_TRUE(p1.has_value());
  w.Answer(*p1, {{a, 40, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(leaver).has_token());
  std::optional<proto::StepPlan> p2 = ExpectPlan(w);
  ASSERT_TRUE(p2.has_value());

  leaver.Disconnect();
  Advance(100ms);  // the coordinator sees the connection close
  w.Answer(*p2, {{a, 41, proto::FINISH_NONE}});  // a token nobody can receive
  EXPECT_FALSE(QuietPlan(w).has_value()) << "the request was cancelled: nothing to run";
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
TEST_F(CoreTest, EveryStreamingRequestOfAClientThatLeavesIsCancelled) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& leaver = AddClient();
  SimClient& watcher = AddClient();
  leaver.Submit("a", {1, 2}, 20);
  const uint64_t a = ExpectAccepted(leaver, "a");
  leaver.Submit("b", {1, 2}, 20);
  const uint64_t b = ExpectAccepted(leaver, "b");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);  // a alone: it went out when a arrived
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{a, 49, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(leaver).has_token());
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->entries_size(), 2) << plan->DebugString();
  w.Answer(*plan, {{a, 50, proto::FINISH_NONE}, {b, 51, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(leaver).has_token());
  ASSERT_TRUE(Reply(leaver).has_token());
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());

  leaver.Disconnect();
  w.Answer(*plan, {{a, 52, proto::FINISH_NONE}, {b, 53, proto::FINISH_NONE}});
  EXPECT_FALSE(QuietPlan(w).has_value()) << "both requests were cancelled: nothing to run";
  const proto::ClusterStatus s = GetStatus(watcher);
  EXPECT_EQ(s.abandoned(), 2u);
  EXPECT_EQ(s.replicas(0).running(), 0);
}

// A request that sends nothing until its end (not streaming) is cancelled too: the
// coordinator checks the clients of such requests when a client connection closes.
TEST_F(CoreTest, ARequestWithoutStreamOfAClientThatLeavesIsCancelled) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& leaver = AddClient();
  SimClient& stays = AddClient();  // its request is checked too, and is not cancelled
  SimClient& watcher = AddClient();
  ASSERT_EQ(ReplicaState(watcher, 0), "ready");
  leaver.Submit("a", {1, 2}, 10, /*stream=*/false);
  const uint64_t a = ExpectAccepted(leaver, "a");
  std::optional<proto::StepPlan> p1 = ExpectPlan(w);
  ASSERT_TRUE(p1.has_value());
  stays.Submit("s", {1, 2}, 1, /*stream=*/false);  // joins the next step
  const uint64_t s = ExpectAccepted(stays, "s");

  leaver.Disconnect();
  EXPECT_EQ(GetStatus(watcher).abandoned(), 1u) << "found at once by a keepalive";
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

// A stop drains: new requests are refused, the ones in flight run to their end, and only
// then are the workers shut down (told so, not as a failure).
TEST_F(CoreTest, StopLetsTheRequestsInFlightFinishAndRefusesNewOnes) {
  Options o;
  o.drain = 10000ms;
  OneRequest r = StartWithOneRequest(o);
  ASSERT_TRUE(r.plan.has_value());
  sim().RequestStop();
  SimClient& late = AddClient();
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
  EXPECT_TRUE(sim().stopped()) << "once nothing is in flight";
  sim().Shutdown("coordinator is stopping");
  std::optional<proto::CoordinatorMessage> shutdown = r.worker.RecvControl();
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  EXPECT_FALSE(shutdown->shutdown().replica_failed());
}

TEST_F(CoreTest, TheDrainEndsAtItsTimeout) {
  Options o;
  o.drain = 300ms;
  OneRequest r = StartWithOneRequest(o);
  ASSERT_TRUE(r.plan.has_value());
  sim().RequestStop();  // the worker never answers
  Advance(299ms);
  EXPECT_FALSE(sim().stopped());
  Advance(1ms);
  EXPECT_TRUE(sim().stopped());
  sim().Shutdown("coordinator is stopping");
  proto::ServerMessage m = Reply(r.client);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
}

TEST_F(CoreTest, ASecondStopEndsTheDrainAtOnce) {
  Options o;
  o.drain = 60000ms;
  OneRequest r = StartWithOneRequest(o);
  ASSERT_TRUE(r.plan.has_value());
  sim().RequestStop();
  EXPECT_FALSE(sim().stopped()) << "draining";
  sim().RequestStop();
  EXPECT_TRUE(sim().stopped()) << "a second stop does not wait for the drain";
}

TEST_F(CoreTest, StopShutsWorkersDownAndFailsRequestsInFlight) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 10);
  ASSERT_TRUE(plan.has_value());
  sim().RequestStop();
  ASSERT_TRUE(sim().stopped()) << "no drain";
  sim().Shutdown("coordinator is stopping");
  std::optional<proto::ServerMessage> m = c.TryRecv();
  ASSERT_TRUE(m && m->has_error());
  EXPECT_EQ(m->error().code(), "Unavailable");
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl();
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  EXPECT_FALSE(shutdown->shutdown().replica_failed()) << "the coordinator stopping is not a failure";
}

}  // namespace
}  // namespace flover
