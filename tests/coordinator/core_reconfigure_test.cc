// Live reconfiguration (CoordinatorCore::Reconfigure, a reload of the cluster file):
// replicas added and removed while requests run, scheduler settings, who may ask for a
// reload, and what may change live (CheckLiveChange). Harness: core_harness.h.
#include <gmock/gmock.h>

#include "coordinator/config_reload.h"
#include "tests/coordinator/core_harness.h"

namespace flover {
namespace {

using namespace coordinator_testing;
using ::testing::HasSubstr;

// The next control message of `w` that is a Shutdown (heartbeats are not messages here).
std::optional<proto::Shutdown> ShutdownOf(SimWorker& w) {
  while (std::optional<proto::CoordinatorMessage> m = w.RecvControl())
    if (m->has_shutdown()) return m->shutdown();
  return std::nullopt;
}

TEST_F(CoreTest, AReplicaAddedTakesItsWorkersAndNewRequests) {
  Options o;
  Start(o);
  SimClient& c = AddClient();
  SimWorker& w0 = AddWorker(0, 0);
  w0.Start();
  SimWorker& early = AddWorker(1, 0);
  EXPECT_FALSE(early.Register().accepted()) << "replica 1 is not part of the cluster yet";
  EXPECT_EQ(GetStatus(c).config_generation(), 1u);

  c.Submit("a", {1, 2}, 10);
  ExpectAccepted(c, "a", /*replica=*/0);
  o.replicas = 2;
  const CoordinatorCore::Reconfigured done = sim().Reconfigure(o);
  EXPECT_EQ(done.generation, 2u);
  EXPECT_EQ(done.summary, "replicas 1 -> 2 (added 1)");
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.config_generation(), 2u);
  ASSERT_EQ(s.replicas_size(), 2);
  EXPECT_EQ(s.replicas(1).state(), "starting");

  SimWorker& w1 = AddWorker(1, 0);
  w1.Start();
  ASSERT_EQ(ReplicaState(c, 1), "ready");
  c.Submit("b", {1, 2}, 10);
  ExpectAccepted(c, "b", /*replica=*/1);  // replica 0 has "a"
}

TEST_F(CoreTest, AReplicaRemovedFinishesItsRequestsThenItsWorkersExitCleanly) {
  Options o;
  o.drain = std::chrono::seconds(30);
  auto [c, w0, w1] = StartTwoReplicas(o);
  c.Submit("a", {1, 2}, 2);
  const uint64_t a = ExpectAccepted(c, "a", /*replica=*/0);
  c.Submit("b", {1, 2}, 2);
  const uint64_t b = ExpectAccepted(c, "b", /*replica=*/1);
  std::optional<proto::StepPlan> p0 = ExpectPlan(w0), p1 = ExpectPlan(w1);
  ASSERT_TRUE(p0 && p1);

  o.replicas = 1;
  EXPECT_EQ(sim().Reconfigure(o).summary, "replicas 2 -> 1 (removed 1)");
  EXPECT_EQ(ReplicaState(c, 1), "retiring");
  c.Submit("c", {1, 2}, 2);
  const uint64_t cid = ExpectAccepted(c, "c", /*replica=*/0);  // not to the retiring one, though it is idle-er

  // b runs to its end on replica 1; then its worker is told to exit cleanly.
  w1.Answer(*p1, {{b, 5, proto::FINISH_NONE}});
  std::optional<proto::StepPlan> next1 = ExpectPlan(w1);
  ASSERT_TRUE(next1.has_value());
  EXPECT_FALSE(ShutdownOf(w1).has_value()) << "shut down while b still runs";
  w1.Answer(*next1, {{b, 6, proto::FINISH_LENGTH}});
  std::map<std::string, std::vector<int>> done;
  for (int i = 0; i < 4 && !done.contains("b"); ++i) {
    proto::ServerMessage m = Reply(c);
    ASSERT_FALSE(m.has_error()) << m.DebugString();
    if (m.has_done()) done[m.done().client_request_id()] = {m.done().tokens().begin(), m.done().tokens().end()};
  }
  EXPECT_EQ(done["b"], (std::vector<int>{5, 6}));
  Advance(10ms);
  const std::optional<proto::Shutdown> shutdown = ShutdownOf(w1);
  ASSERT_TRUE(shutdown.has_value());
  EXPECT_FALSE(shutdown->replica_failed()) << "a removed replica's workers exit 0";
  EXPECT_THAT(shutdown->reason(), HasSubstr("replica 1 was removed from the cluster"));
  const proto::ClusterStatus s = GetStatus(c);
  ASSERT_EQ(s.replicas_size(), 1);
  EXPECT_EQ(s.moved(), 0u);
  EXPECT_FALSE(ShutdownOf(w0).has_value());

  // Replica 0 goes on; replica 1 takes no registration any more.
  std::optional<proto::StepPlan> next0;
  w0.Answer(*p0, {{a, 7, proto::FINISH_NONE}});
  ASSERT_TRUE((next0 = ExpectPlan(w0)).has_value());
  std::set<uint64_t> in_plan;
  for (const proto::PlanEntry& e : next0->entries()) in_plan.insert(e.request_id());
  EXPECT_TRUE(in_plan.contains(a) && in_plan.contains(cid));
  SimWorker& again = AddWorker(1, 0);
  EXPECT_FALSE(again.Register().accepted());
}

TEST_F(CoreTest, WhatARemovedReplicaHasLeftAtItsDrainTimeMovesOnFromItsTokens) {
  Options o;
  o.drain = std::chrono::seconds(1);
  auto [c, w0, w1] = StartTwoReplicas(o);
  c.Submit("a", {1, 2}, 1);
  const uint64_t a = ExpectAccepted(c, "a", /*replica=*/0);
  c.Submit("b", {1, 2}, 5);
  const uint64_t b = ExpectAccepted(c, "b", /*replica=*/1);
  std::optional<proto::StepPlan> p0 = ExpectPlan(w0), p1 = ExpectPlan(w1);
  ASSERT_TRUE(p0 && p1);
  w0.Answer(*p0, {{a, 3, proto::FINISH_LENGTH}});
  w1.Answer(*p1, {{b, 7, proto::FINISH_NONE}});
  ASSERT_TRUE(ExpectPlan(w1).has_value());  // b's next step, never answered

  o.replicas = 1;
  sim().Reconfigure(o);
  Advance(1100ms);
  const std::optional<proto::Shutdown> shutdown = ShutdownOf(w1);
  ASSERT_TRUE(shutdown.has_value());
  EXPECT_FALSE(shutdown->replica_failed());
  // b joins replica 0 with the token it generated, and its client sees no error.
  std::optional<proto::StepPlan> moved;
  while ((moved = ExpectPlan(w0)) && moved->joins_size() == 0) {
  }
  ASSERT_TRUE(moved.has_value());
  ASSERT_EQ(moved->joins_size(), 1);
  EXPECT_EQ(moved->joins(0).request_id(), b);
  EXPECT_EQ(std::vector<int>(moved->joins(0).generated().begin(), moved->joins(0).generated().end()),
            (std::vector<int>{7}));
  for (std::optional<proto::ServerMessage> m = c.TryRecv(); m; m = c.TryRecv()) {
    EXPECT_FALSE(m->has_error()) << m->DebugString();
    EXPECT_FALSE(m->has_accepted() && m->accepted().client_request_id() == "b") << "a second Accepted";
  }
  EXPECT_EQ(GetStatus(c).moved(), 1u);
}

TEST_F(CoreTest, AddingARetiringReplicaBackCancelsItsRetirement) {
  Options o;
  o.drain = std::chrono::seconds(30);
  auto [c, w0, w1] = StartTwoReplicas(o);
  c.Submit("b", {1, 2}, 5);
  c.Submit("b2", {1, 2}, 5);
  ExpectAccepted(c, "b", /*replica=*/0);
  ExpectAccepted(c, "b2", /*replica=*/1);
  o.replicas = 1;
  sim().Reconfigure(o);
  EXPECT_EQ(ReplicaState(c, 1), "retiring");
  o.replicas = 2;
  EXPECT_EQ(sim().Reconfigure(o).generation, 3u);
  EXPECT_EQ(ReplicaState(c, 1), "ready");
  Advance(100ms);
  EXPECT_FALSE(ShutdownOf(w1).has_value());
}

TEST_F(CoreTest, ARemovedReplicaThatIsGoneStartsAgainEmptyWhenAddedBack) {
  Options o;
  auto [c, w0, w1] = StartTwoReplicas(o);
  o.replicas = 1;
  sim().Reconfigure(o);  // idle: removed at once
  ASSERT_TRUE(ShutdownOf(w1).has_value());
  EXPECT_EQ(GetStatus(c).replicas_size(), 1);
  o.replicas = 2;
  sim().Reconfigure(o);
  EXPECT_EQ(ReplicaState(c, 1), "starting");
  SimWorker& again = AddWorker(1, 0);
  again.Start();
  EXPECT_EQ(ReplicaState(c, 1), "ready");
}

TEST_F(CoreTest, SchedulerSettingsApplyFromTheNextStep) {
  Options o;
  Start(o);
  SimClient& c = AddClient();
  SimWorker& w = AddWorker(0, 0);
  w.Start();
  o.policy = "sequential";  // one request at a time from now on
  EXPECT_EQ(sim().Reconfigure(o).summary, "scheduler.policy fused -> sequential");
  c.Submit("a", {1, 2}, 2);
  const uint64_t a = ExpectAccepted(c, "a");
  c.Submit("b", {1, 2}, 2);
  const uint64_t b = ExpectAccepted(c, "b");
  std::optional<proto::StepPlan> p = ExpectPlan(w);
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(p->entries_size(), 1);
  EXPECT_EQ(p->entries(0).request_id(), a);
  o.policy = "fused";
  sim().Reconfigure(o);
  w.Answer(*p, {{a, 4, proto::FINISH_NONE}});
  p = ExpectPlan(w);
  ASSERT_TRUE(p.has_value());
  std::set<uint64_t> ids;
  for (const proto::PlanEntry& e : p->entries()) ids.insert(e.request_id());
  EXPECT_EQ(ids, (std::set<uint64_t>{a, b})) << "fused again: b joins";
}

TEST_F(CoreTest, OnlyAdminsMayAskForAReload) {
  Start();
  SimClient& user = AddClient(ClientRole::kClient);
  SimClient& admin = AddClient(ClientRole::kAdmin);
  int reloads = 0;
  sim().on_reload = [&]() -> Result<CoordinatorCore::Reconfigured> {
    ++reloads;
    return CoordinatorCore::Reconfigured{7, "no change"};
  };
  proto::ClientMessage m;
  m.mutable_reload();
  user.Send(m);
  proto::ServerMessage r = Reply(user);
  ASSERT_TRUE(r.has_error()) << r.DebugString();
  EXPECT_EQ(r.error().code(), "PermissionDenied");
  EXPECT_EQ(reloads, 0);
  admin.Send(m);
  r = Reply(admin);
  ASSERT_TRUE(r.has_reload()) << r.DebugString();
  EXPECT_EQ(r.reload().config_generation(), 7u);
  EXPECT_EQ(r.reload().summary(), "no change");
  sim().on_reload = [] { return Result<CoordinatorCore::Reconfigured>(InvalidArgument("x.yaml: model.path: no")); };
  admin.Send(m);
  r = Reply(admin);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), "InvalidArgument");
  EXPECT_THAT(r.error().message(), HasSubstr("model.path"));
}

// Each reload reads files: an admin's connection gets them at the status rate at most.
TEST_F(CoreTest, ReloadsShareTheStatusRate) {
  Options o;
  o.limits.status_per_client_per_second = 2;
  Start(o);
  SimClient& admin = AddClient(ClientRole::kAdmin);
  int reloads = 0;
  sim().on_reload = [&]() -> Result<CoordinatorCore::Reconfigured> {
    ++reloads;
    return CoordinatorCore::Reconfigured{1, "no change"};
  };
  proto::ClientMessage m;
  m.mutable_reload();
  for (int i = 0; i < 3; ++i) admin.Send(m);
  EXPECT_TRUE(Reply(admin).has_reload());
  EXPECT_TRUE(Reply(admin).has_reload());
  const proto::ServerMessage third = Reply(admin);
  ASSERT_TRUE(third.has_error()) << third.DebugString();
  EXPECT_EQ(third.error().code(), "ResourceExhausted");
  EXPECT_EQ(reloads, 2);
}

// ---- what may change live

TEST(CheckLiveChangeTest, ReplicasSchedulerAndTheNewReplicasWorkersMayChange) {
  Options o;
  const ClusterConfig current = TestConfig(o);
  o.replicas = 3;
  o.policy = "dynamic";
  o.max_step_tokens = 64;
  ClusterConfig next = TestConfig(o);
  next.source = "next.yaml";
  EXPECT_TRUE(CheckLiveChange(current, next).ok()) << CheckLiveChange(current, next).ToString();
  EXPECT_EQ(DescribeLiveChange(current, next),
            "replicas 1 -> 3 (added 2), scheduler.policy fused -> dynamic, scheduler.max_step_tokens 16 -> 64");
  EXPECT_EQ(DescribeLiveChange(current, current), "no change");
  for (WorkerConfig& w : next.workers)
    if (w.replica == 2) w.host = "10.0.0.9";  // a new replica's worker on another host
  EXPECT_TRUE(CheckLiveChange(current, next).ok());
}

TEST(CheckLiveChangeTest, EverythingElseIsRefusedNamingTheKey) {
  Options o;
  const ClusterConfig current = TestConfig(o);
  struct Case {
    const char* key;
    std::function<void(ClusterConfig&)> change;
  };
  const Case cases[] = {
      {"model.path", [](ClusterConfig& c) { c.model.path = "dummy:other"; }},
      {"parallel.tensor", [](ClusterConfig& c) { c.tensor_parallel = 2; }},
      {"endpoints", [](ClusterConfig& c) { c.endpoints.client = "tcp://127.0.0.1:9999"; }},
      {"kv_cache", [](ClusterConfig& c) { c.kv_cache.memory_mib = 1; }},
      {"heartbeat", [](ClusterConfig& c) { c.heartbeat.timeout_ms = 9999; }},
      {"limits", [](ClusterConfig& c) { c.limits.max_prompt_tokens = 7; }},
      {"workers (replica 0 rank 0)", [](ClusterConfig& c) { c.workers[0].threads = 3; }},
  };
  for (const Case& k : cases) {
    ClusterConfig next = current;
    next.source = "cluster.yaml";
    k.change(next);
    const Status s = CheckLiveChange(current, next);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << k.key;
    EXPECT_THAT(s.message(), HasSubstr(std::string("cluster.yaml: ") + k.key + ": cannot change while the cluster runs"));
    EXPECT_THAT(s.message(), HasSubstr("nothing was changed"));
  }
}

}  // namespace
}  // namespace flover
