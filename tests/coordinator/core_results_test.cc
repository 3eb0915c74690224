// Step results: who may send them (and the other worker messages that change a
// replica), what the coordinator checks in them, and who may take a live rank's place
// (harness: core_harness.h). Each test fails without the defence it names.
#include "tests/coordinator/core_harness.h"

#include <cmath>
#include <functional>

namespace flover {
namespace {

using namespace coordinator_testing;

// A submit with stop ids and ignore_eos (TestModel: BOS 1, EOS 2), streamed.
proto::ClientMessage StopSubmit(const std::string& id, int max_tokens, std::vector<int> stop_ids, bool ignore_eos) {
  proto::ClientMessage m = SubmitMessage(id, {1, 5}, max_tokens, /*stream=*/true);
  m.mutable_submit()->mutable_stop()->mutable_stop_token_ids()->Add(stop_ids.begin(), stop_ids.end());
  m.mutable_submit()->mutable_stop()->set_ignore_eos(ignore_eos);
  return m;
}

proto::StepResult ErrorResult(uint64_t seq, const std::string& error) {
  proto::StepResult r;
  r.set_seq(seq);
  r.set_error(error);
  return r;
}

// The client's next message is an Error saying that replica 0 failed for `why`.
void ExpectReplicaFailed(const std::optional<proto::ServerMessage>& m, const std::string& why) {
  ASSERT_TRUE(m.has_value()) << "no reply";
  ASSERT_TRUE(m->has_error()) << m->DebugString();
  EXPECT_EQ(m->error().code(), "Unavailable");
  EXPECT_EQ(m->error().message().rfind("replica 0 is unhealthy: ", 0), 0u) << m->error().message();
  EXPECT_NE(m->error().message().find(why), std::string::npos) << m->error().message();
}

// ---------------------------------------------------------------- who sends results

// The review's "write into another client's stream": a result with the current seq from
// a connection that never registered.
TEST_F(CoreTest, AStepResultFromAConnectionThatNeverRegisteredReachesNoClient) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 3);
  ASSERT_TRUE(plan.has_value());
  SimWorker& eve = AddWorker();  // never registers
  eve.Answer(*plan, {{id, 66, proto::FINISH_NONE}});
  std::optional<proto::CoordinatorMessage> told = eve.RecvControl();
  ASSERT_TRUE(told && told->has_shutdown()) << "a connection the coordinator does not know is told to register";
  EXPECT_FALSE(c.TryRecv().has_value()) << "nothing of it reaches the client";
  EXPECT_EQ(GetStatus(c).rejected_messages(), 1u);

  w.Answer(*plan, {{id, 20, proto::FINISH_NONE}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().tokens(0), 20);
}

// The review's "permanent outage": forged step errors and failures neither fail the
// replica nor make its workers exit (which would spend their supervisor's restarts).
TEST_F(CoreTest, ForgedErrorsFromStrangersNeitherFailAReplicaNorRestartItsWorkers) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 3);
  ASSERT_TRUE(plan.has_value());
  SimWorker& eve = AddWorker();
  for (int i = 0; i < 6; ++i) {
    eve.Push(ErrorResult(plan->seq(), "HACKED BY EVE"));
    ReportFailure(eve, "HACKED BY EVE");  // names replica 0 rank 0
  }
  EXPECT_EQ(ReplicaState(c, 0), "ready");
  EXPECT_FALSE(w.RecvControl().has_value()) << "the worker is not told to shut down";
  EXPECT_EQ(GetStatus(c).rejected_messages(), 12u);
  w.Answer(*plan, {{id, 20, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(c).has_token());
}

// Registered workers too: only rank 0 of the replica sends its results, and each worker
// speaks for its own replica and rank only.
TEST_F(CoreTest, OnlyRankZeroOfAReplicaSendsItsResults) {
  Start(Options{.replicas = 2, .tensor = 2});
  SimClient& c = AddClient();
  SimWorker& r00 = AddWorker(0, 0);
  SimWorker& r01 = AddWorker(0, 1);
  SimWorker& r10 = AddWorker(1, 0);
  SimWorker& r11 = AddWorker(1, 1);
  for (SimWorker* w : {&r00, &r01, &r10, &r11}) w->Start();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  ASSERT_EQ(ReplicaState(c, 1), "ready");
  c.Submit("a", {1, 2}, 3);
  const uint64_t id = ExpectAccepted(c, "a", /*replica=*/0);
  std::optional<proto::StepPlan> plan = ExpectPlan(r00);
  ASSERT_TRUE(plan.has_value());

  r01.Answer(*plan, {{id, 66, proto::FINISH_NONE}});     // rank 1 of the replica
  r01.Push(ErrorResult(plan->seq(), "rank 1 says so"));  // its error, as a result
  proto::StepResult forged = ResultOf(*plan, {{id, 67, proto::FINISH_NONE}});
  r10.Push(forged, /*as_replica=*/0);  // rank 0 of another replica
  r11.Push(ErrorResult(1, "not mine"), /*as_replica=*/0);
  EXPECT_FALSE(c.TryRecv().has_value());
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.rejected_messages(), 4u);
  EXPECT_EQ(s.replicas(0).state(), "ready");
  EXPECT_EQ(s.replicas(1).state(), "ready");

  r00.Answer(*plan, {{id, 20, proto::FINISH_NONE}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().tokens(0), 20);
}

TEST_F(CoreTest, AWorkerSpeaksForItsOwnReplicaAndRankOnly) {
  auto [c, w0, w1] = StartTwoReplicas();
  proto::WorkerMessage failure;
  failure.mutable_failure()->set_replica(0);
  failure.mutable_failure()->set_rank(0);
  failure.mutable_failure()->set_message("replica 0 is broken, says replica 1");
  w1.Send(failure);
  w1.Send(ReadyMessage(0, 0, TestModel(), 16));
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.rejected_messages(), 2u);
  EXPECT_EQ(s.replicas(0).state(), "ready");
  EXPECT_EQ(s.replicas(1).state(), "ready");
  EXPECT_FALSE(w0.RecvControl().has_value());
  EXPECT_FALSE(w1.RecvControl().has_value());
}

// Bytes that are no WorkerMessage, or a message of several frames, change nothing and
// are counted, whoever sends them.
TEST_F(CoreTest, WorkerMessagesThatCannotBeReadAreCountedAndDropped) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimWorker& stranger = AddWorker();
  for (SimWorker* from : {&w, &stranger}) {
    from->SendRaw("garbage");
    from->SendFrames({Serialize(HeartbeatMessage(0, 0)), "more"});
    from->SendFrames({});
  }
  SimClient& c = AddClient();
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.rejected_messages(), 6u);
  EXPECT_EQ(s.replicas(0).state(), "ready");
  EXPECT_FALSE(w.RecvControl().has_value());
}

// A replica whose workers failed runs new ones: a late result of the old rank 0, from its
// old connection, is not a result of the new plans (which count from seq 1 again).
TEST_F(CoreTest, AResultOfAFailedGenerationOfWorkersIsDropped) {
  Options o;
  o.failover_wait_ms = 10000;
  const OneRequest r = StartWithOneRequest(o, {1, 2}, 3);
  ASSERT_TRUE(r.plan.has_value());
  ReportFailure(r.worker, "killed");
  sim().Silence(r.worker);
  SimWorker& again = AddWorker();
  again.Start();
  std::optional<proto::StepPlan> plan = ExpectPlan(again);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->seq(), r.plan->seq()) << "the same seq as the old plan";
  r.worker.Answer(*r.plan, {{r.id, 66, proto::FINISH_NONE}});  // the old generation's answer, late
  EXPECT_FALSE(r.client.TryRecv().has_value());
  again.Answer(*plan, {{r.id, 20, proto::FINISH_NONE}});
  proto::ServerMessage m = Reply(r.client);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().tokens(0), 20);
}

// A forged answer does not count as the plan's result: heartbeat.step_timeout_ms still
// fails a replica whose result never comes.
TEST_F(CoreTest, AForgedResultDoesNotHoldOffTheStepTimeout) {
  Options o;
  o.step_timeout_ms = 300;
  auto [c, w, id, plan] = StartWithOneRequest(o, {1, 2}, 10);
  ASSERT_TRUE(plan.has_value());
  SimWorker& eve = AddWorker();
  eve.Answer(*plan, {{id, 66, proto::FINISH_NONE}});
  eve.Answer(*plan, {});
  ExpectReplicaFailed(ReplyWithin(c, 2s), "step 1 got no result within 0.3 s");
}

// ---------------------------------------------------------------- what results say

// The coordinator decides when a request ends, by the finish rule: a result whose finish
// differs from it (or whose token is no token at all) is a broken worker's, its replica
// fails, and nothing of it reaches the client. Each row: one sample of a fresh request.
TEST_F(CoreTest, TheCoordinatorDecidesWhenARequestEnds) {
  struct Row {
    const char* what;
    int max_tokens;
    std::vector<int> stop_ids;
    bool ignore_eos;
    int token;
    proto::FinishReason reported;
    // Honest rows: the finish the client sees (FINISH_NONE: a token and no Done yet).
    // Broken rows: nullopt, and `why` is in the error.
    std::optional<proto::FinishReason> outcome;
    const char* why = "";
  };
  const std::vector<Row> rows = {
      {"max_tokens", 1, {}, false, 7, proto::FINISH_LENGTH, proto::FINISH_LENGTH},
      {"past max_tokens", 1, {}, false, 7, proto::FINISH_NONE, std::nullopt, "by its stop conditions it is 'length'"},
      {"length too early", 3, {}, false, 7, proto::FINISH_LENGTH, std::nullopt, "it is 'none'"},
      {"a token", 3, {}, false, 7, proto::FINISH_NONE, proto::FINISH_NONE},
      {"EOS", 3, {}, false, 2, proto::FINISH_STOP, proto::FINISH_STOP},
      {"past EOS", 3, {}, false, 2, proto::FINISH_NONE, std::nullopt, "it is 'stop'"},
      {"past BOS", 3, {}, false, 1, proto::FINISH_NONE, std::nullopt, "it is 'stop'"},
      {"EOS as the last token", 1, {}, false, 2, proto::FINISH_LENGTH, std::nullopt, "it is 'stop'"},
      {"EOS, ignored", 3, {}, true, 2, proto::FINISH_NONE, proto::FINISH_NONE},
      {"EOS, ignored, but stopped", 3, {}, true, 2, proto::FINISH_STOP, std::nullopt, "it is 'none'"},
      {"a stop id", 3, {9}, false, 9, proto::FINISH_STOP, proto::FINISH_STOP},
      {"a stop id, with ignore_eos", 3, {9}, true, 9, proto::FINISH_STOP, proto::FINISH_STOP},
      {"past a stop id", 3, {9}, false, 9, proto::FINISH_NONE, std::nullopt, "it is 'stop'"},
      {"stopped on a plain token", 3, {9}, false, 7, proto::FINISH_STOP, std::nullopt, "it is 'none'"},
      {"cancelled by the worker", 3, {}, false, 7, proto::FINISH_CANCELLED, std::nullopt, "FINISH_CANCELLED"},
      {"an error as a finish", 3, {}, false, 7, proto::FINISH_ERROR, std::nullopt, "FINISH_ERROR"},
      {"a finish this build does not know",
       3,
       {},
       false,
       7,
       static_cast<proto::FinishReason>(9),
       std::nullopt,
       "it is 'none'"},
      {"no token (protocol 2's stop)",
       3,
       {},
       false,
       -1,
       proto::FINISH_STOP,
       std::nullopt,
       "returned token -1 for request"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    Start();
    SimClient& c = AddClient();
    SimWorker& w = AddWorker();
    w.Start();
    c.Send(StopSubmit("r", row.max_tokens, row.stop_ids, row.ignore_eos));
    const uint64_t id = ExpectAccepted(c, "r");
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    w.Answer(*plan, {{id, row.token, row.reported}});
    if (!row.outcome) {
      ExpectReplicaFailed(c.TryRecv(), row.why);
      EXPECT_FALSE(c.TryRecv().has_value());
      continue;
    }
    std::optional<proto::ServerMessage> m = c.TryRecv();
    ASSERT_TRUE(m.has_value());
    if (*row.outcome != proto::FINISH_STOP) {  // the token, streamed
      ASSERT_TRUE(m->has_token()) << m->DebugString();
      EXPECT_EQ(std::vector<int>(m->token().tokens().begin(), m->token().tokens().end()), std::vector<int>{row.token});
      m = c.TryRecv();
    }
    if (*row.outcome == proto::FINISH_NONE) {
      EXPECT_FALSE(m.has_value()) << m->DebugString();
      EXPECT_EQ(ReplicaState(c, 0), "ready");
      continue;
    }
    ASSERT_TRUE(m && m->has_done()) << (m ? m->DebugString() : "no Done");
    EXPECT_EQ(m->done().finish_reason(), *row.outcome);
    const std::vector<int> expected =
        *row.outcome == proto::FINISH_STOP ? std::vector<int>{} : std::vector<int>{row.token};
    EXPECT_EQ(std::vector<int>(m->done().tokens().begin(), m->done().tokens().end()), expected);
  }
}

// A worker that goes on past max_tokens fails its replica; the request moves on from
// the tokens the client has, and ends where the coordinator says: the client never gets
// more than max_tokens tokens.
TEST_F(CoreTest, ARequestOfABrokenWorkerMovesOnAndEndsAtMaxTokens) {
  auto [c, w0, w1] = StartTwoReplicas();
  c.Submit("r", {1, 2}, /*max_tokens=*/2);
  const uint64_t id = ExpectAccepted(c, "r", /*replica=*/0);
  std::optional<proto::StepPlan> plan = ExpectPlan(w0);
  ASSERT_TRUE(plan.has_value());
  w0.Answer(*plan, {{id, 7, proto::FINISH_NONE}});
  plan = ExpectPlan(w0);
  ASSERT_TRUE(plan.has_value());
  w0.Answer(*plan, {{id, 8, proto::FINISH_NONE}});  // its last token, not reported as such
  std::optional<proto::CoordinatorMessage> shutdown = w0.RecvControl();
  ASSERT_TRUE(shutdown && shutdown->has_shutdown());
  EXPECT_NE(shutdown->shutdown().reason().find("worker 0/0 (pid " + std::to_string(w0.pid()) + ") sent a wrong result"),
            std::string::npos)
      << shutdown->shutdown().reason();
  plan = ExpectPlan(w1);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_EQ(std::vector<int>(plan->joins(0).generated().begin(), plan->joins(0).generated().end()),
            std::vector<int>{7});
  w1.Answer(*plan, {{id, 8, proto::FINISH_LENGTH}});
  std::vector<int> streamed;
  std::optional<proto::ServerMessage> m;
  while ((m = c.TryRecv()) && m->has_token())
    streamed.insert(streamed.end(), m->token().tokens().begin(), m->token().tokens().end());
  EXPECT_EQ(streamed, (std::vector<int>{7, 8}));
  ASSERT_TRUE(m && m->has_done()) << (m ? m->DebugString() : "no Done");
  EXPECT_EQ(m->done().finish_reason(), proto::FINISH_LENGTH);
  EXPECT_EQ(std::vector<int>(m->done().tokens().begin(), m->done().tokens().end()), (std::vector<int>{7, 8}));
}

// The review's "silent hang": a result with the right seq and no outputs.
TEST_F(CoreTest, AResultWithoutTheOutputOfARequestThatSampledFailsTheReplica) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 3);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {});
  ExpectReplicaFailed(c.TryRecv(), "step 1: request " + std::to_string(id) + " sampled in it but has no output");
}

// A prefill chunk that does not reach the end of the prompt samples nothing: it needs no
// output, and must not have one.
TEST_F(CoreTest, APrefillChunkHasNoOutput) {
  std::vector<int> prompt;
  for (int i = 0; i < 20; ++i) prompt.push_back(3 + i);  // more than max_step_tokens (16)
  for (const bool with_output : {false, true}) {
    SCOPED_TRACE(with_output ? "an output for the chunk" : "no output");
    auto [c, w, id, plan] = StartWithOneRequest(Options{}, prompt, 3);
    ASSERT_TRUE(plan.has_value());
    ASSERT_EQ(plan->entries(0).n_tokens(), 16);
    if (with_output) {
      w.Answer(*plan, {{id, 7, proto::FINISH_NONE}});
      ExpectReplicaFailed(c.TryRecv(), "has an output, but its entry does not reach a sample");
      continue;
    }
    w.Answer(*plan, {});
    plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    EXPECT_EQ(plan->entries(0).n_tokens(), 4);
    EXPECT_FALSE(c.TryRecv().has_value());
  }
}

// With plans in flight ahead of their results, an entry of a request that finished (or
// was cancelled) before its result came is stale: the workers skip it, and its missing
// output is no fault.
TEST_F(CoreTest, StaleEntriesOfRetiredRequestsNeedNoOutput) {
  Options o;
  o.pipeline_depth = 2;
  Start(o);
  SimClient& c = AddClient();
  SimWorker& w = AddWorker();
  w.Start();
  c.Submit("a", {1, 2}, 10);
  const uint64_t a = ExpectAccepted(c, "a");
  std::optional<proto::StepPlan> p1 = ExpectPlan(w);
  std::optional<proto::StepPlan> p2 = ExpectPlan(w);
  ASSERT_TRUE(p1 && p2);
  ASSERT_EQ(p2->entries_size(), 1);
  EXPECT_EQ(p2->entries(0).request_id(), a) << "a decodes on, in case its sample is no stop";
  w.Answer(*p1, {{a, 2, proto::FINISH_STOP}});  // EOS
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_STOP);
  w.Answer(*p2, {});  // a's entry was stale for the worker

  c.Submit("b", {1, 2}, 10);
  const uint64_t b = ExpectAccepted(c, "b");
  std::optional<proto::StepPlan> p3 = ExpectPlan(w);
  std::optional<proto::StepPlan> p4 = ExpectPlan(w);
  ASSERT_TRUE(p3 && p4);
  c.Cancel("b");
  m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_CANCELLED);
  w.Answer(*p3, {{b, 7, proto::FINISH_NONE}});  // computed before the worker heard of the cancel
  w.Answer(*p4, {});
  EXPECT_FALSE(c.TryRecv().has_value());
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.replicas(0).state(), "ready");
  EXPECT_EQ(s.replicas(0).steps(), 4u);
}

// The status sums the workers' own time per step and their wait for each step's plan
// (StepResult.step_seconds, wait_seconds); a value no clock can give (negative, NaN,
// an hour or more) is not counted.
TEST_F(CoreTest, StatusSumsTheWorkersComputeAndWaitPerStep) {
  Start();
  SimClient& c = AddClient();
  SimWorker& w = AddWorker();
  w.Start();
  c.Submit("a", {1, 2}, 10);
  const uint64_t a = ExpectAccepted(c, "a");
  const double waits[] = {0.0, 0.002, -1.0, std::nan(""), 7200.0, 0.003};
  for (double wait : waits) {
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    proto::StepResult r = ResultOf(*plan, {{a, 5, proto::FINISH_NONE}});
    r.set_wait_seconds(wait);
    w.Push(r);
    if (wait == 0.003) break;
  }
  const proto::ClusterStatus s = GetStatus(AddClient());  // c has its tokens to read
  ASSERT_EQ(s.replicas_size(), 1);
  EXPECT_EQ(s.replicas(0).steps(), 6u);
  EXPECT_DOUBLE_EQ(s.replicas(0).step_compute_seconds(), 0.006);  // ResultOf's 1 ms each
  EXPECT_DOUBLE_EQ(s.replicas(0).step_wait_seconds(), 0.005);
}

// Each row: a result the plan cannot have produced.
TEST_F(CoreTest, AResultThatDoesNotAnswerThePlanFailsTheReplica) {
  struct Row {
    const char* what;
    int max_tokens;
    // The result sent after plan 1 was published (first_answer: after plan 1 was
    // answered with a token and its finish).
    std::function<proto::StepResult(const proto::StepPlan& plan, uint64_t id)> result;
    std::optional<std::pair<int, proto::FinishReason>> first_answer;
    const char* why;
  };
  const std::vector<Row> rows = {
      {"an output for a request not in the plan", 3,
       [](const proto::StepPlan& p, uint64_t id) {
         return ResultOf(p, {{id + 100, 7, proto::FINISH_NONE}});
       },
       std::nullopt, "has an output but is not in the plan"},
      {"two outputs for one request", 3,
       [](const proto::StepPlan& p, uint64_t id) {
         return ResultOf(p, {{id, 7, proto::FINISH_NONE}, {id, 8, proto::FINISH_NONE}});
       },
       std::nullopt, "step 1 has 2 outputs for 1 entries"},
      {"a plan that was not published", 3,
       [](const proto::StepPlan& p, uint64_t id) {
         proto::StepResult r = ResultOf(p, {{id, 7, proto::FINISH_NONE}});
         r.set_seq(p.seq() + 1);
         return r;
       },
       std::nullopt, "the result of step 2 arrived; expected the result of step 1"},
      {"a plan answered already, another one in flight", 3,
       [](const proto::StepPlan& p, uint64_t id) {
         return ResultOf(p, {{id, 7, proto::FINISH_NONE}});
       },
       std::make_pair(7, proto::FINISH_NONE), "the result of step 1 arrived; expected the result of step 2"},
      {"a plan answered already, none in flight", 1,
       [](const proto::StepPlan& p, uint64_t id) {
         return ResultOf(p, {{id, 7, proto::FINISH_LENGTH}});
       },
       std::make_pair(7, proto::FINISH_LENGTH), "the result of step 1 arrived with no plan in flight"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    Options o;
    o.failover_wait_ms = 10000;  // the request waits: the client gets nothing
    auto [c, w, id, plan] = StartWithOneRequest(o, {1, 2}, row.max_tokens);
    ASSERT_TRUE(plan.has_value());
    if (row.first_answer) {
      w.Answer(*plan, {{id, row.first_answer->first, row.first_answer->second}});
      while (c.TryRecv()) {
      }
    }
    w.Push(row.result(*plan, id));
    SimClient& watcher = AddClient();
    const proto::ClusterStatus s = GetStatus(watcher);
    EXPECT_EQ(s.replicas(0).state(), "unhealthy");
    EXPECT_NE(s.replicas(0).error().find(row.why), std::string::npos) << s.replicas(0).error();
  }
}

// ---------------------------------------------------------------- live ranks

// A restarted worker whose old process is gone, before the coordinator heard of the
// closed connection: the refused registration makes the coordinator look (a heartbeat
// to the old connection, whose send fails), and the next one is admitted at once
// instead of after the heartbeat timeout (a minute here).
TEST_F(CoreTest, ARestartedRankIsAdmittedOnceItsOldProcessIsFoundGone) {
  Options o;
  o.interval_ms = 30000;
  o.timeout_ms = 60000;
  const OneRequest r = StartWithOneRequest(o);
  ASSERT_TRUE(r.plan.has_value());
  r.worker.Vanish();
  sim().Silence(r.worker);
  SimWorker& again = AddWorker();
  const proto::RegisterReply first = again.Register();
  EXPECT_FALSE(first.accepted());
  EXPECT_TRUE(first.retry()) << first.error();
  SimClient& watcher = AddClient();
  const proto::ClusterStatus s = GetStatus(watcher);
  EXPECT_EQ(s.replicas(0).state(), "unhealthy");
  EXPECT_NE(s.replicas(0).error().find("worker 0/0 (pid " + std::to_string(r.worker.pid()) + ") disconnected"),
            std::string::npos)
      << s.replicas(0).error();
  const proto::RegisterReply second = again.Register();
  EXPECT_TRUE(second.accepted()) << second.error();
}

// Someone else registering as a live rank that answers changes nothing: refused, and
// the live worker keeps its place and its work.
TEST_F(CoreTest, RegisteringAsALiveRankThatAnswersChangesNothing) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 3);
  ASSERT_TRUE(plan.has_value());
  SimWorker& eve = AddWorker();
  EXPECT_FALSE(w.RecvControl().has_value());  // counts the heartbeats so far
  const int beats = w.heartbeats_received();
  for (int i = 0; i < 5; ++i) {
    const proto::RegisterReply reply = eve.Register();
    EXPECT_FALSE(reply.accepted());
    EXPECT_TRUE(reply.retry());
    EXPECT_NE(reply.error().find("is already live"), std::string::npos) << reply.error();
  }
  EXPECT_FALSE(w.RecvControl().has_value()) << "no Shutdown for the live worker";
  EXPECT_EQ(w.heartbeats_received(), beats + 5) << "each refusal checked that the live worker is there";
  EXPECT_EQ(ReplicaState(c, 0), "ready");
  w.Answer(*plan, {{id, 20, proto::FINISH_NONE}});
  ASSERT_TRUE(Reply(c).has_token());
}

}  // namespace
}  // namespace flover
