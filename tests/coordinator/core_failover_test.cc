// Failover: the requests of a failed replica move to another one or wait for one to
// come back (harness: core_harness.h).
#include "tests/coordinator/core_harness.h"

namespace flover {
namespace {

using namespace coordinator_testing;

TEST_F(CoreTest, RequestsSpreadOverReplicasAndMoveOnWhenOneFails) {
  auto [c, w0, w1] = StartTwoReplicas();
  c.Submit("a", {1, 2}, 2);
  const uint64_t a = ExpectAccepted(c, "a", /*replica=*/0);
  c.Submit("b", {1, 2}, 2);
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
  SimClient& watcher = AddClient();
  ASSERT_EQ(ReplicaState(watcher, 0), "unhealthy");
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

TEST_F(CoreTest, RequestsOfAFailedReplicaFailWhenNoOtherIsReady) {
  Start(Options{.replicas = 2});  // replica 1 never starts
  SimClient& c = AddClient();
  SimWorker& w0 = AddWorker(0, 0);
  w0.Start();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
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

// A failure's reason names the workers (pids, what they reported): a client key reads
// that its replica failed, an admin key why; so with a new submission while none is
// healthy, and with a request that waited for a replica in vain.
TEST_F(CoreTest, ErrorsOfAFailedReplicaNameTheWorkersOnlyToAdmins) {
  Start();
  SimClient& admin = AddClient(ClientRole::kAdmin);
  SimClient& client = AddClient(ClientRole::kClient);
  SimWorker& w0 = AddWorker(0, 0);
  w0.Start();
  ASSERT_EQ(ReplicaState(admin, 0), "ready");
  admin.Submit("a", {1, 2}, 10);
  ExpectAccepted(admin, "a", /*replica=*/0);
  client.Submit("c", {1, 2}, 10);
  ExpectAccepted(client, "c", /*replica=*/0);
  ASSERT_TRUE(ExpectPlan(w0).has_value());
  ReportFailure(w0, "GPU fell off the bus at host-17");
  const proto::ServerMessage to_admin = Reply(admin);
  ASSERT_TRUE(to_admin.has_error()) << to_admin.DebugString();
  EXPECT_NE(to_admin.error().message().find("(pid " + std::to_string(w0.pid()) + ")"), std::string::npos)
      << to_admin.error().message();
  const proto::ServerMessage to_client = Reply(client);
  ASSERT_TRUE(to_client.has_error()) << to_client.DebugString();
  EXPECT_EQ(to_client.error().client_request_id(), "c");
  EXPECT_EQ(to_client.error().code(), "Unavailable");
  EXPECT_EQ(to_client.error().message(),
            "replica 0 is unhealthy (the reason, which names its workers, is shown to admins)");

  client.Submit("later", {1, 2}, 10);
  const proto::ServerMessage refused = Reply(client);
  ASSERT_TRUE(refused.has_error()) << refused.DebugString();
  EXPECT_EQ(refused.error().message(), "no healthy replica (the reasons, which name the workers, are shown to admins)");
  admin.Submit("later", {1, 2}, 10);
  const proto::ServerMessage refused_admin = Reply(admin);
  ASSERT_TRUE(refused_admin.has_error()) << refused_admin.DebugString();
  EXPECT_NE(refused_admin.error().message().find("host-17"), std::string::npos) << refused_admin.error().message();
}

TEST_F(CoreTest, RequestsOfAFailedReplicaWaitForItToComeBack) {
  // One replica and failover_wait_ms: its request waits (the client sees nothing), the
  // restarted worker brings the replica back, and the request goes on from its token.
  Options o;
  o.failover_wait_ms = 10000;
  const OneRequest r = StartWithOneRequest(o);
  SimClient& c = r.client;
  SimWorker& w = r.worker;
  const uint64_t id = r.id;
  std::optional<proto::StepPlan> plan = r.plan;
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 9, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(c).has_token());

  ReportFailure(w, "killed");
  SimClient& watcher = AddClient();
  ASSERT_EQ(ReplicaState(watcher, 0), "unhealthy");
  // A request submitted now waits too, instead of failing because nothing is ready.
  SimClient& late = AddClient();
  late.Submit("late", {3, 4}, 1, /*stream=*/false);
  EXPECT_EQ(GetStatus(watcher).queued(), 2) << "both requests wait in the queue";
  Advance(5s);
  EXPECT_FALSE(c.TryRecv().has_value()) << "nothing reaches the client while it waits";
  EXPECT_FALSE(late.TryRecv().has_value()) << "no error for the late request while it waits";

  sim().Silence(w);
  SimWorker& again = AddWorker();
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

TEST_F(CoreTest, ARequestWaitingInVainAfterAFailureFailsWithTheReason) {
  Options o;
  o.failover_wait_ms = 300;
  const OneRequest r = StartWithOneRequest(o);
  SimClient& c = r.client;
  ReportFailure(r.worker, "killed");
  const auto t0 = sim().now();
  SimClient& late = AddClient();  // submits while the replica is down: waits the rest of the window
  ASSERT_EQ(ReplicaState(late, 0), "unhealthy");
  late.Submit("late", {3, 4}, 1);
  Advance(t0 + 299ms - sim().now());  // the status took a moment
  EXPECT_FALSE(c.TryRecv().has_value()) << "it waits for failover_wait_ms";
  std::optional<proto::ServerMessage> waited = ReplyWithin(c, 1s);
  ASSERT_TRUE(waited.has_value());
  EXPECT_GE(sim().now() - t0, 300ms);
  EXPECT_LE(sim().now() - t0, 350ms) << "at the next tick after failover_wait_ms";
  proto::ServerMessage m = *waited;
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_NE(m.error().message().find("replica 0 is unhealthy: worker 0/0"), std::string::npos) << m.error().message();
  EXPECT_NE(m.error().message().find("no replica became ready within 0.3 s"), std::string::npos)
      << m.error().message();
  m = Reply(late);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "late");
  EXPECT_EQ(m.error().message().rfind("no healthy replica: replica 0 is unhealthy: worker 0/0", 0), 0u)
      << m.error().message();
  EXPECT_NE(m.error().message().find("no replica became ready within 0.3 s"), std::string::npos)
      << m.error().message();
  EXPECT_EQ(GetStatus(c).moved(), 0u);

  // After the window, nothing is expected back: a new request fails at once.
  late.Submit("later", {3, 4}, 1);
  m = Reply(late);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().message().rfind("no healthy replica: replica 0 is unhealthy: worker 0/0", 0), 0u)
      << m.error().message();
  EXPECT_EQ(m.error().message().find("became ready"), std::string::npos) << m.error().message();
}

}  // namespace
}  // namespace flover
