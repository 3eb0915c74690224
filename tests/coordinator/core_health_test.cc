// The coordinator and its workers: registration, heartbeats, disconnects, failed
// steps, bad worker messages, the rendezvous relay (harness: core_harness.h).
#include "tests/coordinator/core_harness.h"

#include <random>

#include "common/cluster_config_proto.h"

namespace flover {
namespace {

using namespace coordinator_testing;

TEST_F(CoreTest, RegisterReplyCarriesConfigEndpointsAndTopic) {
  Start();
  SimWorker& w = AddWorker();
  const proto::RegisterReply reply = w.Register();
  ASSERT_TRUE(reply.accepted()) << reply.error();
  EXPECT_EQ(reply.plans_endpoint(), sim().core().endpoints().plans);
  EXPECT_EQ(reply.plan_topic(), "replica/0/");
  ASSERT_TRUE(reply.has_config());
  Result<ClusterConfig> config = FromProto(reply.config());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ClusterConfig expected = TestConfig(Options{});
  expected.endpoints = sim().core().endpoints();  // as bound, not "*"
  EXPECT_EQ(*config, expected);
  // The coordinator heartbeats registered workers.
  Advance(200ms);
  EXPECT_FALSE(w.RecvControl().has_value());
  EXPECT_EQ(w.heartbeats_received(), 5) << "at 0, 50, 100, 150 and 200 ms";
}

TEST_F(CoreTest, RegistrationRejectsOutOfRangeAndDuplicateLiveRanks) {
  Start();
  SimWorker& w = AddWorker();
  w.SendRegister(/*replica=*/3, /*rank=*/0);
  std::optional<proto::CoordinatorMessage> m = w.RecvControl();
  ASSERT_TRUE(m && m->has_register_reply());
  EXPECT_FALSE(m->register_reply().accepted());
  EXPECT_NE(m->register_reply().error().find("not part of this cluster"), std::string::npos)
      << m->register_reply().error();
  EXPECT_FALSE(m->register_reply().retry()) << "registering again cannot help";
  w.SendRegister(0, /*rank=*/1);
  m = w.RecvControl();
  ASSERT_TRUE(m && m->has_register_reply());
  EXPECT_FALSE(m->register_reply().accepted());

  ASSERT_TRUE(w.Register().accepted());
  SimWorker& twin = AddWorker();
  const proto::RegisterReply reply = twin.Register();
  EXPECT_FALSE(reply.accepted());
  EXPECT_NE(reply.error().find("already live"), std::string::npos) << reply.error();
  EXPECT_TRUE(reply.retry()) << "a restarted worker waits until its old process is declared dead";
}

TEST_F(CoreTest, MalformedWorkerMessagesAreIgnoredAndUnknownWorkersToldToStartAgain) {
  Start();
  SimWorker& w = AddWorker();
  w.SendRaw("garbage");
  proto::WorkerMessage ready;  // ready before registering: as after a coordinator restart
  ready.mutable_ready()->set_kv_blocks(4);
  w.Send(ready);
  std::optional<proto::CoordinatorMessage> told = w.RecvControl();
  ASSERT_TRUE(told && told->has_shutdown());
  EXPECT_TRUE(told->shutdown().replica_failed()) << "exit non-zero, so that a supervisor starts it again";
  EXPECT_NE(told->shutdown().reason().find("does not know this worker"), std::string::npos)
      << told->shutdown().reason();
  SimClient& c = AddClient();
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).state(), "starting");
  EXPECT_EQ(s.replicas(0).workers(0).state(), "absent");
  w.Start();
  EXPECT_EQ(ReplicaState(c, 0), "ready");
}

// Whatever a worker (or anything else that reaches the control socket) sends — random
// bytes, step results for any replica, sequence number, request, token and finish
// reason, and any control message — the coordinator goes on, and no client ever
// receives a token outside the vocabulary, more than max_tokens tokens, or a token after
// a stop (EOS or BOS: TestModel's 2 and 1).
TEST_F(CoreTest, RandomWorkerMessagesNeverStopTheCoordinator) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  std::mt19937_64 rng(7);
  auto any = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(rng() % (hi - lo + 1)); };
  auto bytes = [&] {
    std::string s(rng() % 48, '\0');
    for (char& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  for (int i = 0; i < 8; ++i) c.Submit(std::string("r") + std::to_string(i), {1, 2, 3}, 20, /*stream=*/true);
  SimClient& watcher = AddClient();
  int restarts = 0;
  for (int i = 0; i < 1500; ++i) {
    // A wrong result fails the replica: start its worker again, to go on testing a ready one.
    if (i % 50 == 0 && ReplicaState(watcher, 0) != "ready") {
      while (w.RecvControl()) {  // what it was told meanwhile (to shut down, to register)
      }
      w.Start();
      ++restarts;
    }
    switch (rng() % 4) {
      case 0: w.SendRaw(bytes()); break;
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
        w.SendRaw(Serialize(m));
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
  const proto::ClusterStatus s = GetStatus(watcher);
  EXPECT_EQ(s.replicas_size(), 1);
  EXPECT_GT(restarts, 0) << "random results are wrong results";
  EXPECT_GT(s.rejected_messages(), 0u);
  std::map<std::string, int> streamed;  // tokens per request
  while (std::optional<proto::ServerMessage> m = c.TryRecv()) {
    std::vector<int> tokens;
    if (m->has_token()) {
      tokens.assign(m->token().tokens().begin(), m->token().tokens().end());
      streamed[m->token().client_request_id()] += m->token().tokens_size();
    }
    if (m->has_done()) tokens.assign(m->done().tokens().begin(), m->done().tokens().end());
    for (int token : tokens) EXPECT_TRUE(token >= 0 && token < 512 && token != 1 && token != 2) << token;
    EXPECT_LE(tokens.size(), 20u);
  }
  for (const auto& [id, n] : streamed) EXPECT_LE(n, 20) << id;
}

TEST_F(CoreTest, SilentWorkerFailsItsRequestsNoClientHangs) {
  Options o;
  o.timeout_ms = 300;
  auto [c, w, id, plan] = StartWithOneRequest(o, {1, 2, 3}, 10);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 7, proto::FINISH_NONE}});
  sim().Silence(w);  // no heartbeat, no result from now on
  ASSERT_TRUE(Reply(c).has_token());

  const auto t0 = sim().now();
  std::optional<proto::ServerMessage> m = ReplyWithin(c, 2s);
  ASSERT_TRUE(m.has_value()) << "client left hanging";
  EXPECT_GT(sim().now() - t0, 300ms) << "not before timeout_ms";
  EXPECT_LE(sim().now() - t0, 350ms) << "at the next heartbeat after timeout_ms";
  ASSERT_TRUE(m->has_error()) << m->DebugString();
  EXPECT_EQ(m->error().client_request_id(), "r");
  EXPECT_EQ(m->error().code(), "Unavailable");
  // Silence and the missing result of plan 2 are noticed at about the same time.
  const std::string& why = m->error().message();
  EXPECT_EQ(why.rfind("replica 0 is unhealthy: ", 0), 0u) << why;
  EXPECT_TRUE(why.find("missed heartbeats") != std::string::npos ||
              why.find("step 2 got no result") != std::string::npos)
      << why;
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl();
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
}

TEST_F(CoreTest, SilentWorkerMakesTheReplicaUnhealthy) {
  Options o;
  o.timeout_ms = 300;
  Start(o);
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  sim().Silence(w);
  Advance(300ms);
  ASSERT_EQ(ReplicaState(c, 0), "ready") << "silent for timeout_ms, not longer";
  Advance(60ms);
  ASSERT_EQ(ReplicaState(c, 0), "unhealthy");
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).workers(0).state(), "dead");
  const std::string& why = s.replicas(0).error();
  EXPECT_EQ(why.rfind("replica 0 is unhealthy: worker 0/0 (pid " + std::to_string(w.pid()) +
                          ") missed heartbeats for 0.",
                      0),
            0u)
      << why;
  // The worker is told to stop; later submissions fail at once.
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl();
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  EXPECT_EQ(shutdown->shutdown().reason(), why);
  EXPECT_TRUE(shutdown->shutdown().replica_failed());
  c.Submit("later", {1, 2}, 1);
  std::optional<proto::ServerMessage> m = c.TryRecv();
  ASSERT_TRUE(m && m->has_error());
  EXPECT_EQ(m->error().code(), "Unavailable");
  EXPECT_NE(m->error().message().find("no healthy replica: " + why), std::string::npos) << m->error().message();
}

// A worker whose connection closes is dead at once, long before its heartbeats are
// missed (here a heartbeat interval of 30 s and a timeout of a minute).
TEST_F(CoreTest, AWorkerWhoseConnectionClosesFailsItsReplicaAtOnce) {
  Options o;
  o.interval_ms = 30000;
  o.timeout_ms = 60000;
  auto [c, w, id, plan] = StartWithOneRequest(o);
  ASSERT_TRUE(plan.has_value());

  sim().Silence(w);
  const auto t0 = sim().now();
  w.Disconnect();
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_EQ(m.error().message(), "replica 0 is unhealthy: worker 0/0 (pid " + std::to_string(w.pid()) +
                                     ") disconnected (its process exited, or the network dropped its connection "
                                     "to the coordinator)");
  EXPECT_EQ(sim().now(), t0) << "at once, not at a timeout";
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).state(), "unhealthy");
  EXPECT_EQ(s.replicas(0).workers(0).state(), "dead");

  // A new process of the same rank registers at once: the old one is known to be gone.
  SimWorker& again = AddWorker();
  const proto::RegisterReply reply = again.Register();
  EXPECT_TRUE(reply.accepted()) << reply.error();
}

TEST_F(CoreTest, StepWithoutResultMakesTheReplicaUnhealthy) {
  Options o;
  o.timeout_ms = 1000;
  o.step_timeout_ms = 300;
  auto [c, w, id, plan] = StartWithOneRequest(o, {1, 2, 3}, 10);
  ASSERT_TRUE(plan.has_value());
  const auto t0 = sim().now();
  std::optional<proto::ServerMessage> m = ReplyWithin(c, 2s);
  ASSERT_TRUE(m && m->has_error()) << (m ? m->DebugString() : "no reply");
  EXPECT_GT(sim().now() - t0, 300ms);
  EXPECT_LE(sim().now() - t0, 350ms) << "at the next heartbeat after step_timeout_ms";
  EXPECT_EQ(m->error().code(), "Unavailable");
  EXPECT_NE(m->error().message().find("replica 0 is unhealthy: step 1 got no result within 0.3 s"), std::string::npos)
      << m->error().message();
}

TEST_F(CoreTest, SlowStepOfAHeartbeatingWorkerIsNotAFailure) {
  Options o;
  o.timeout_ms = 300;
  o.step_timeout_ms = 5000;
  auto [c, w, id, plan] = StartWithOneRequest(o, {1, 2, 3}, 2);
  ASSERT_TRUE(plan.has_value());
  // A step longer than timeout_ms, while the worker heartbeats.
  Advance(800ms);
  w.Answer(*plan, {{id, 7, proto::FINISH_NONE}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  ASSERT_EQ(m.token().tokens_size(), 1);
  EXPECT_EQ(m.token().tokens(0), 7);
  EXPECT_EQ(GetStatus(c).replicas(0).state(), "ready");
}

TEST_F(CoreTest, WorkerFailureAndStepErrorsFailTheReplicaWithTheReason) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 10);
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
  std::optional<proto::CoordinatorMessage> shutdown = w.RecvControl();
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  sim().Silence(w);
  SimWorker& again = AddWorker();
  again.Start();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
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

// PUB/SUB drops what is published before a subscription arrives: the plan topic of a
// starting replica is probed (every 10 ms) while a worker of it is registered but not
// ready, so that each worker can wait for a probe before it reports ready.
TEST_F(CoreTest, ThePlanTopicOfAStartingReplicaIsProbedUntilItIsReady) {
  Options o;
  o.tensor = 2;
  Start(o);
  SimWorker& r0 = AddWorker(0, 0);
  SimWorker& r1 = AddWorker(0, 1);
  const proto::RegisterReply reply = r0.Register();
  ASSERT_TRUE(reply.accepted());
  r0.Subscribe(reply);
  Advance(10ms);
  EXPECT_EQ(r0.probes_received(), 1) << "the probe at registration went out before the subscription";
  Advance(20ms);
  EXPECT_EQ(r0.probes_received(), 3);
  r0.Ready(TestModel(), 16);
  Advance(20ms);
  EXPECT_EQ(r0.probes_received(), 3) << "no worker waits for a probe (rank 1 has not registered)";
  r1.Start();  // registers (that probe is lost), waits for the next probe, then is ready
  EXPECT_EQ(r1.probes_received(), 1);
  EXPECT_EQ(r0.probes_received(), 5);
  Advance(100ms);
  EXPECT_EQ(r0.probes_received(), 5) << "ready: no more probes";
  EXPECT_EQ(r1.probes_received(), 1);
}

TEST_F(CoreTest, ReplicaBecomesReadyOnlyWhenAllRanksAgree) {
  Options o;
  o.tensor = 2;
  Start(o);
  SimClient& c = AddClient();
  SimWorker& r0 = AddWorker(0, 0);
  SimWorker& r1 = AddWorker(0, 1);
  r0.Start(TestModel(), 10);
  EXPECT_EQ(GetStatus(c).replicas(0).state(), "starting");
  r1.Start(TestModel(), 8);
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  EXPECT_EQ(GetStatus(c).replicas(0).kv_blocks_total(), 8);  // the smallest pool
  // Only rank 0 sends results, but both receive every plan.
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

TEST_F(CoreTest, RanksThatDisagreeOnTheModelMakeTheReplicaUnhealthy) {
  Options o;
  o.tensor = 2;
  Start(o);
  SimClient& c = AddClient();
  AddWorker(0, 0).Start(TestModel(512));
  AddWorker(0, 1).Start(TestModel(256));
  ASSERT_EQ(ReplicaState(c, 0), "unhealthy");
  EXPECT_NE(GetStatus(c).replicas(0).error().find("ranks disagree on the model"), std::string::npos);
}

TEST_F(CoreTest, ATokenOutsideTheVocabularyFailsTheReplicaAndReachesNoClient) {
  const OneRequest r = StartWithOneRequest(Options{});
  ASSERT_TRUE(r.plan.has_value());
  r.worker.Answer(*r.plan, {{r.id, 512, proto::FINISH_NONE}});  // TestModel's vocabulary is 512
  proto::ServerMessage m = Reply(r.client);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "Unavailable");
  EXPECT_NE(m.error().message().find("replica 0 is unhealthy: step 1 returned token 512 for request"),
            std::string::npos)
      << m.error().message();
  std::optional<proto::CoordinatorMessage> shutdown = r.worker.RecvControl();
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
}

TEST_F(CoreTest, RendezvousStoreRelaysValuesBetweenRanks) {
  Options o;
  o.tensor = 2;
  Start(o);
  SimWorker& r0 = AddWorker(0, 0);
  SimWorker& r1 = AddWorker(0, 1);
  ASSERT_TRUE(r0.Register().accepted());
  ASSERT_TRUE(r1.Register().accepted());

  proto::WorkerMessage get;
  get.mutable_store_get()->set_key("gloo/0");
  get.mutable_store_get()->set_timeout_ms(2000);
  r1.Send(get);
  Advance(100ms);
  EXPECT_FALSE(r1.RecvControl().has_value());  // waits for the key

  proto::WorkerMessage set;
  set.mutable_store_set()->set_key("gloo/0");
  set.mutable_store_set()->set_value(std::string("addr\0port", 9));
  r0.Send(set);
  std::optional<proto::CoordinatorMessage> v = r1.RecvControl();
  ASSERT_TRUE(v && v->has_store_value());
  EXPECT_TRUE(v->store_value().found());
  EXPECT_EQ(v->store_value().value(), std::string("addr\0port", 9));

  get.mutable_store_get()->set_key("missing");
  get.mutable_store_get()->set_timeout_ms(50);
  r0.Send(get);
  Advance(49ms);
  EXPECT_FALSE(r0.RecvControl().has_value());
  Advance(1ms);
  v = r0.RecvControl();
  ASSERT_TRUE(v && v->has_store_value());
  EXPECT_FALSE(v->store_value().found());
  EXPECT_EQ(v->store_value().key(), "missing");
}

}  // namespace
}  // namespace flover
