// The coordinator's client API: submitting, streaming, text, stop strings, bad input,
// status, cancelling and queueing (harness: core_harness.h).
#include "tests/coordinator/core_harness.h"

namespace flover {
namespace {

using namespace coordinator_testing;

TEST_F(CoreTest, SubmitStreamsTokensThenDoneWithPlansInSequence) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  ASSERT_EQ(ReplicaState(c, 0), "ready");

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
  Advance(10ms);  // each step takes 10 ms
  w.Answer(*plan, {{id, 20, proto::FINISH_NONE}});

  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 2u);
  EXPECT_EQ(plan->joins_size(), 0);
  ASSERT_EQ(plan->entries_size(), 1);
  EXPECT_EQ(plan->entries(0).start_pos(), 3);
  EXPECT_EQ(plan->entries(0).n_tokens(), 1);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 0);  // position 3 is still in block 1
  Advance(10ms);
  w.Answer(*plan, {{id, 21, proto::FINISH_NONE}});

  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->seq(), 3u);
  EXPECT_EQ(plan->entries(0).start_pos(), 4);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 1);  // position 4 opens block 2
  Advance(10ms);
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
  EXPECT_NEAR(m.done().first_token_seconds(), 0.01, 1e-9);
  EXPECT_NEAR(m.done().total_seconds(), 0.03, 1e-9);
  EXPECT_EQ(m.done().queue_seconds(), 0.0) << "it ran at once";

  EXPECT_FALSE(QuietPlan(w).has_value());  // nothing left to run
  const proto::ClusterStatus s = GetStatus(c);
  EXPECT_EQ(s.completed(), 1u);
  EXPECT_EQ(s.replicas(0).steps(), 3u);
  EXPECT_EQ(s.replicas(0).kv_blocks_used(), 0);
}

TEST_F(CoreTest, WithoutStreamOnlyDoneArrives) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  c.Submit("q", {1, 2}, 2, /*stream=*/false);
  const uint64_t id = ExpectAccepted(c, "q");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 30, proto::FINISH_NONE}});
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 2, proto::FINISH_STOP}});  // EOS (TestModel), not output
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_STOP);
  EXPECT_EQ(m.done().completion_tokens(), 1);
}

TEST_F(CoreTest, TextPromptsAreTokenizedAndTokensDecoded) {
  std::optional<WithTokenizer> started = StartWithTokenizer();
  ASSERT_TRUE(started.has_value());
  auto& [tokenizer, w, c] = *started;
  proto::ClientMessage submit = TextSubmit("t", "Once upon a time");
  const std::vector<int> out = tokenizer.Encode("there was", false);  // " there", " was", ...
  ASSERT_GE(out.size(), 2u);
  submit.mutable_submit()->mutable_stop()->set_max_tokens(static_cast<int>(out.size()));
  c.Send(submit);
  const std::vector<int> prompt = tokenizer.Encode("Once upon a time", true);
  proto::ServerMessage accepted = Reply(c);
  ASSERT_TRUE(accepted.has_accepted()) << accepted.DebugString();
  EXPECT_EQ(accepted.accepted().prompt_tokens(), static_cast<int>(prompt.size()));
  const uint64_t id = accepted.accepted().request_id();
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_EQ(std::vector<int>(plan->joins(0).prompt().begin(), plan->joins(0).prompt().end()), prompt);
  w.Answer(*plan, {{id, out[0], proto::FINISH_NONE}});
  for (size_t i = 1; i < out.size(); ++i) {
    plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    w.Answer(*plan, {{id, out[i], i + 1 == out.size() ? proto::FINISH_LENGTH : proto::FINISH_NONE}});
  }
  int prev = prompt.back();
  for (int token : out) {
    proto::ServerMessage m = Reply(c);
    ASSERT_TRUE(m.has_token()) << m.DebugString();
    EXPECT_EQ(m.token().text(), tokenizer.DecodeToken(prev, token));
    prev = token;
  }
  proto::ServerMessage done = Reply(c);
  ASSERT_TRUE(done.has_done()) << done.DebugString();
  EXPECT_EQ(done.done().text(), " there was");
}

// A stop string ends the text where it first appears: the stream never carries part of
// it, Done.text stops before it, and the request leaves the workers' batch.
TEST_F(CoreTest, AStopStringEndsTheTextAndTheRequest) {
  std::optional<WithTokenizer> started = StartWithTokenizer();
  ASSERT_TRUE(started.has_value());
  auto& [tokenizer, w, c] = *started;
  proto::ClientMessage submit = TextSubmit("s", "Once upon a time");
  submit.mutable_submit()->mutable_stop()->set_max_tokens(20);
  submit.mutable_submit()->mutable_stop()->add_stop_strings("a little");
  submit.mutable_submit()->mutable_stop()->add_stop_strings("never");
  c.Send(submit);
  proto::ServerMessage accepted = Reply(c);
  ASSERT_TRUE(accepted.has_accepted()) << accepted.DebugString();
  const uint64_t id = accepted.accepted().request_id();
  const std::vector<int> out = tokenizer.Encode("there was a little girl", false);
  size_t answered = 0;
  std::optional<proto::StepPlan> plan;
  for (; answered < out.size(); ++answered) {
    plan = ExpectPlan(w);
    if (!plan) break;  // the request left
    if (answered == 0) {
      ASSERT_EQ(plan->joins_size(), 1);
      EXPECT_EQ(plan->joins(0).stop().stop_strings_size(), 0) << "the coordinator applies them, not the workers";
    }
    w.Answer(*plan, {{id, out[answered], proto::FINISH_NONE}});
  }
  ASSERT_LT(answered, out.size()) << "the request should have stopped before the last token";
  std::string streamed;
  proto::ServerMessage m;
  for (m = Reply(c); m.has_token(); m = Reply(c)) {
    EXPECT_EQ(m.token().text().find("a l"), std::string::npos) << "part of the stop string was sent";
    streamed += m.token().text();
  }
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_STOP);
  EXPECT_EQ(m.done().text(), " there was ");
  EXPECT_EQ(streamed, m.done().text());
  EXPECT_EQ(m.done().completion_tokens(), static_cast<int>(answered));

  // The next plan tells the workers to drop it.
  c.Submit("next", {1, 2}, 1);
  ASSERT_TRUE(Reply(c).has_accepted());
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->leaves_size(), 1);
  EXPECT_EQ(plan->leaves(0), id);
}

// Text held back because it could begin a stop string is sent when the request ends
// otherwise: the stream's texts still add up to Done.text.
TEST_F(CoreTest, TextHeldForAStopStringIsSentAtTheEnd) {
  std::optional<WithTokenizer> started = StartWithTokenizer();
  ASSERT_TRUE(started.has_value());
  auto& [tokenizer, w, c] = *started;
  const std::vector<int> out = tokenizer.Encode("there was", false);
  proto::ClientMessage submit = TextSubmit("h", "Once upon a time");
  submit.mutable_submit()->mutable_stop()->set_max_tokens(static_cast<int>(out.size()));
  submit.mutable_submit()->mutable_stop()->add_stop_strings(" there was a dog");
  c.Send(submit);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_accepted()) << m.DebugString();
  const uint64_t id = m.accepted().request_id();
  for (size_t i = 0; i < out.size(); ++i) {
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    w.Answer(*plan, {{id, out[i], i + 1 == out.size() ? proto::FINISH_LENGTH : proto::FINISH_NONE}});
  }
  std::string streamed;
  int tokens = 0;
  for (m = Reply(c); m.has_token(); m = Reply(c)) {
    streamed += m.token().text();
    tokens += m.token().tokens_size();
    if (tokens < static_cast<int>(out.size())) {
      EXPECT_EQ(m.token().text(), "") << "held: may begin the stop string";
    }
  }
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_LENGTH);
  EXPECT_EQ(m.done().text(), " there was");
  EXPECT_EQ(streamed, " there was");
  EXPECT_EQ(tokens, static_cast<int>(out.size()));
}

// SubmitRequest.timeout_ms: a request not done in time ends with DeadlineExceeded,
// whether it runs (and then leaves the workers' batch) or waits for a replica.
TEST_F(CoreTest, ARequestPastItsTimeoutEndsWithDeadlineExceeded) {
  Start();
  SimClient& c = AddClient();
  proto::ClientMessage waiting;  // no replica is ready yet: it waits in the queue
  waiting.mutable_submit()->set_client_request_id("q");
  waiting.mutable_submit()->mutable_token_ids()->add_ids(1);
  waiting.mutable_submit()->mutable_stop()->set_max_tokens(5);
  waiting.mutable_submit()->set_timeout_ms(200);
  c.Send(waiting);
  Advance(199ms);
  EXPECT_FALSE(c.TryRecv().has_value()) << "not yet";
  Advance(1ms);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "DeadlineExceeded");
  EXPECT_EQ(m.error().message(), "request 'q' did not finish within its timeout of 0.200 s (0 token(s) generated)");

  SimWorker& w = AddWorker();
  w.Start();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  proto::ClientMessage running = waiting;
  running.mutable_submit()->set_client_request_id("r");
  c.Send(running);
  const uint64_t id = ExpectAccepted(c, "r");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 7, proto::FINISH_NONE}});
  ASSERT_TRUE(ExpectPlan(w).has_value());  // and this step never ends
  Advance(200ms);
  m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "DeadlineExceeded");
  EXPECT_NE(m.error().message().find("(1 token(s) generated)"), std::string::npos) << m.error().message();
  c.Submit("next", {1, 2}, 1);
  ASSERT_TRUE(Reply(c).has_accepted());
}

TEST_F(CoreTest, BadRequestsGetErrorsAndNeverReachAWorker) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  ASSERT_EQ(ReplicaState(c, 0), "ready");

  c.Submit("big-id", {1, 9999}, 4);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "big-id");
  EXPECT_EQ(m.error().code(), "InvalidArgument");
  EXPECT_NE(m.error().message().find("outside the vocabulary"), std::string::npos) << m.error().message();

  c.Submit("zero", {1, 2}, 0);
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().client_request_id(), "zero");
  EXPECT_NE(m.error().message().find("max_tokens"), std::string::npos);

  c.Submit("long", std::vector<int>(65, 3), 1);
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_NE(m.error().message().find("prompt has 65 tokens"), std::string::npos) << m.error().message();

  proto::ClientMessage text;
  text.mutable_submit()->set_client_request_id("text");
  text.mutable_submit()->set_text("hello");
  text.mutable_submit()->mutable_stop()->set_max_tokens(1);
  c.Send(text);
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().message(), "this cluster has no tokenizer: send token ids");

  EXPECT_FALSE(QuietPlan(w).has_value());
  EXPECT_EQ(GetStatus(c).completed(), 0u);
}

TEST_F(CoreTest, RequestLargerThanTheKvPoolIsResourceExhausted) {
  Start();
  SimWorker& w = AddWorker();
  w.Start(TestModel(), /*kv_blocks=*/2);  // 8 token slots
  SimClient& c = AddClient();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  c.Submit("x", {1, 2, 3, 4, 5}, 5);  // 9 positions
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "ResourceExhausted");
  EXPECT_FALSE(QuietPlan(w).has_value());
}

TEST_F(CoreTest, MalformedClientMessagesGetErrorsWithoutId) {
  Start();
  SimClient& c = AddClient();
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

  // Still serving.
  EXPECT_EQ(GetStatus(c).name(), "coordinator-test");
}

TEST_F(CoreTest, StatusReportsTheLatencyOfFinishedRequests) {
  OneRequest r = StartWithOneRequest(Options{});
  ASSERT_TRUE(r.plan.has_value());
  SimClient& watcher = AddClient();
  // (Asked of the core: a status request this soon after the last would wait for the
  // next build, kStatusEvery, and move the clock.)
  EXPECT_EQ(sim().core().BuildStatus(sim().now(), ClientRole::kAdmin).latency().requests(), 0u);
  Advance(20ms);
  r.worker.Answer(*r.plan, {{r.id, 7, proto::FINISH_NONE}});
  std::optional<proto::StepPlan> plan = ExpectPlan(r.worker);
  ASSERT_TRUE(plan.has_value());
  Advance(30ms);
  r.worker.Answer(*plan, {{r.id, 8, proto::FINISH_NONE}});
  plan = ExpectPlan(r.worker);
  ASSERT_TRUE(plan.has_value());
  r.worker.Answer(*plan, {{r.id, 9, proto::FINISH_LENGTH}});
  proto::ServerMessage m;
  do m = Reply(r.client);
  while (m.has_token());
  ASSERT_TRUE(m.has_done()) << m.DebugString();

  const proto::LatencySummary l = GetStatus(watcher).latency();
  EXPECT_EQ(l.window_seconds(), 60);
  EXPECT_EQ(l.requests(), 1u);
  // One request: every percentile is its value, the same as in its Done.
  EXPECT_DOUBLE_EQ(l.total().p50(), m.done().total_seconds());
  EXPECT_DOUBLE_EQ(l.total().p99(), m.done().total_seconds());
  EXPECT_DOUBLE_EQ(l.first_token().p50(), m.done().first_token_seconds());
  EXPECT_DOUBLE_EQ(l.queue().p50(), m.done().queue_seconds());
  EXPECT_NEAR(l.first_token().p50(), 0.02, 1e-9);
  // Two gaps after the first token: 30 ms, then none.
  EXPECT_NEAR(l.per_token().p50(), 0.015, 1e-9);
  EXPECT_NEAR(l.per_token().p50(), (l.total().p50() - l.first_token().p50()) / 2, 1e-9);
}

TEST_F(CoreTest, StatusDescribesReplicasWorkersAndLoad) {
  Start();
  SimClient& c = AddClient();
  SimWorker& w = AddWorker();
  w.Start(TestModel(), 12);
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  c.Submit("s", {1, 2, 3, 4, 5}, 10);
  ExpectAccepted(c, "s");
  ASSERT_TRUE(ExpectPlan(w).has_value());  // in flight, unanswered
  // Built now (a status request this soon after the last would wait for the next build).
  const proto::ClusterStatus s = sim().core().BuildStatus(sim().now(), ClientRole::kAdmin);
  EXPECT_EQ(s.name(), "coordinator-test");
  EXPECT_EQ(s.model().vocab_size(), 512);
  ASSERT_EQ(s.replicas_size(), 1);
  const proto::ReplicaStatus& r = s.replicas(0);
  EXPECT_EQ(r.state(), "ready");
  EXPECT_EQ(r.running(), 1);
  EXPECT_EQ(r.waiting(), 0);
  EXPECT_EQ(r.kv_blocks_total(), 12);
  EXPECT_EQ(r.kv_blocks_used(), 2);
  ASSERT_EQ(r.workers_size(), 1);
  EXPECT_EQ(r.workers(0).state(), "ready");
  EXPECT_EQ(r.workers(0).pid(), w.pid());
  EXPECT_EQ(r.workers(0).device(), "cpu");
  EXPECT_EQ(r.workers(0).last_heartbeat_age_s(), 0.0);
  Advance(100ms);
  const proto::ClusterStatus later = GetStatus(c);
  EXPECT_NEAR(later.replicas(0).workers(0).last_heartbeat_age_s(), 0.0, 0.041) << "it heartbeats every 40 ms";
  EXPECT_NEAR(later.uptime_seconds() - s.uptime_seconds(), 0.1, 1e-9);
}

// Where the workers run (hosts, pids) and why a replica failed (which names them) is for
// admins; a client key sees the rest of the status.
TEST_F(CoreTest, StatusShowsWorkerHostsPidsAndFailureReasonsOnlyToAdmins) {
  Start();
  SimClient& admin = AddClient(ClientRole::kAdmin);
  SimClient& client = AddClient(ClientRole::kClient);
  SimWorker& w = AddWorker();
  w.Start();
  ASSERT_EQ(ReplicaState(admin, 0), "ready");
  const proto::WorkerStatus as_admin = GetStatus(admin).replicas(0).workers(0);
  EXPECT_EQ(as_admin.pid(), w.pid());
  EXPECT_EQ(as_admin.host(), "127.0.0.1");
  const proto::ClusterStatus s = GetStatus(client);
  ASSERT_EQ(s.replicas(0).workers_size(), 1);
  const proto::WorkerStatus& as_client = s.replicas(0).workers(0);
  EXPECT_EQ(as_client.pid(), 0);
  EXPECT_EQ(as_client.host(), "");
  EXPECT_EQ(as_client.state(), "ready") << "the rest is there";
  EXPECT_EQ(as_client.device(), "cpu");

  w.Disconnect();
  Advance(1ms);
  const proto::ReplicaStatus failed_for_admin = GetStatus(admin).replicas(0);
  ASSERT_EQ(failed_for_admin.state(), "unhealthy");
  EXPECT_NE(failed_for_admin.error().find("(pid " + std::to_string(w.pid()) + ")"), std::string::npos)
      << failed_for_admin.error();
  const proto::ReplicaStatus failed_for_client = GetStatus(client).replicas(0);
  EXPECT_EQ(failed_for_client.state(), "unhealthy");
  EXPECT_EQ(failed_for_client.error(), "replica 0 failed (the reason, which names its workers, is shown to admins)");
}

TEST_F(CoreTest, CancelSendsDoneAndTheNextPlanCarriesTheLeave) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  c.Submit("a", {1, 2, 3}, 50);
  const uint64_t a = ExpectAccepted(c, "a");
  std::optional<proto::StepPlan> p1 = ExpectPlan(w);
  ASSERT_TRUE(p1.has_value());
  w.Answer(*p1, {{a, 40, proto::FINISH_NONE}});
  std::optional<proto::StepPlan> p2 = ExpectPlan(w);
  ASSERT_TRUE(p2.has_value());
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token());

  // Cancel while plan 2 is in flight: Done at once; plan 2's output is stale.
  c.Cancel("a");
  m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_CANCELLED);
  EXPECT_EQ(m.done().completion_tokens(), 1);
  w.Answer(*p2, {{a, 41, proto::FINISH_NONE}});
  EXPECT_FALSE(QuietReply(c).has_value());  // no token after Done
  EXPECT_FALSE(QuietPlan(w).has_value());   // nothing to run

  c.Submit("b", {1, 2}, 1);
  const uint64_t b = ExpectAccepted(c, "b");
  std::optional<proto::StepPlan> p3 = ExpectPlan(w);
  ASSERT_TRUE(p3.has_value());
  EXPECT_EQ(p3->seq(), 3u);
  ExpectLeaveAndJoin(*p3, a, b);

  c.Cancel("nope");
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().code(), "NotFound");
  EXPECT_EQ(m.error().client_request_id(), "nope");
}

TEST_F(CoreTest, DuplicateClientRequestIdInFlightIsRejected) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  SimClient& other = AddClient();
  c.Submit("same", {1, 2}, 5);
  ExpectAccepted(c, "same");
  c.Submit("same", {1, 2}, 5);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_NE(m.error().message().find("already in flight"), std::string::npos);
  other.Submit("same", {1, 2}, 5);  // another connection may reuse it
  ExpectAccepted(other, "same");
}

// Found by fuzz_client_messages (docs/fuzzing.md): an Error that names a request ends
// it for its client (client/request_session.cc), but a refused second submission of an
// id in flight, or an unreadable cancel of it, got an Error with that id while the
// request went on streaming. Such an Error now leaves the id empty and names it in its
// message.
TEST_F(CoreTest, ARefusedMessageAboutARequestInFlightLeavesItRunning) {
  OneRequest r = StartWithOneRequest(Options(), {1, 2}, 2);
  ASSERT_TRUE(r.plan.has_value());
  r.client.Submit("r", {1, 2}, 5);
  proto::ServerMessage m = Reply(r.client);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "");
  EXPECT_NE(m.error().message().find("'r' is already in flight"), std::string::npos) << m.error().message();
  EXPECT_NE(m.error().message().find("request 'r', which is in flight and goes on"), std::string::npos)
      << m.error().message();
  proto::ClientMessage cancel = CancelMessage("r");
  cancel.set_protocol_version(kProtocolVersion + 21);
  r.client.SendRaw(cancel.SerializeAsString());
  m = Reply(r.client);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "");
  EXPECT_NE(m.error().message().find("protocol version"), std::string::npos) << m.error().message();
  // A cancel of an id that is not in flight is refused with its id, as before.
  cancel.mutable_cancel()->set_client_request_id("other");
  r.client.SendRaw(cancel.SerializeAsString());
  m = Reply(r.client);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "other");

  // "r" goes on to its end.
  r.worker.Answer(*r.plan, {{r.id, 40, proto::FINISH_NONE}});
  m = Reply(r.client);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().client_request_id(), "r");
  std::optional<proto::StepPlan> p2 = ExpectPlan(r.worker);
  ASSERT_TRUE(p2.has_value());
  r.worker.Answer(*p2, {{r.id, 41, proto::FINISH_LENGTH}});
  ASSERT_TRUE(Reply(r.client).has_token());
  m = Reply(r.client);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().client_request_id(), "r");
  EXPECT_EQ(m.done().completion_tokens(), 2);
}

TEST_F(CoreTest, SubmissionsBeforeAnyReplicaIsReadyWaitThenRun) {
  Start();
  SimClient& c = AddClient();
  c.Submit("early", {1, 2}, 1);
  EXPECT_FALSE(QuietReply(c).has_value()) << "it waits for a replica";
  EXPECT_EQ(GetStatus(c).queued(), 1);
  SimWorker& w = AddWorker();
  w.Start();
  const uint64_t id = ExpectAccepted(c, "early");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->joins(0).request_id(), id);
}

// Policy dynamic: a batch forms when its window closes, measured from its oldest
// request, with no other event to wake the coordinator; a request arriving while the
// batch runs waits for the next batch.
TEST_F(CoreTest, ADynamicBatchFormsWhenItsWindowClosesAndLateArrivalsWait) {
  Options o;
  o.policy = "dynamic";
  o.batch_window_ms = 10;
  Start(o);
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  c.Submit("a", {1, 2}, 2);
  const uint64_t a = ExpectAccepted(c, "a");
  Advance(4ms);
  c.Submit("b", {1, 2}, 1);
  const uint64_t b = ExpectAccepted(c, "b");
  Advance(5ms);
  EXPECT_FALSE(ExpectPlan(w).has_value()) << "the window is open for 10 ms after a arrived";
  Advance(1ms);
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value()) << "the window closed";
  ASSERT_EQ(plan->joins_size(), 2);
  EXPECT_EQ(plan->joins(0).request_id(), a);
  EXPECT_EQ(plan->joins(1).request_id(), b);

  c.Submit("late", {1, 2}, 1);
  const uint64_t late = ExpectAccepted(c, "late");
  w.Answer(*plan, {{a, 5, proto::FINISH_NONE}, {b, 6, proto::FINISH_LENGTH}});
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->joins_size(), 0) << "late waits for the next batch: " << plan->DebugString();
  ASSERT_EQ(plan->entries_size(), 1);
  EXPECT_EQ(plan->entries(0).request_id(), a);
  w.Answer(*plan, {{a, 7, proto::FINISH_LENGTH}});
  EXPECT_FALSE(ExpectPlan(w).has_value()) << "the next window closes 10 ms after late arrived";
  Advance(10ms);
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_EQ(plan->joins(0).request_id(), late);
}

TEST_F(CoreTest, QueueBoundGivesOverloaded) {
  Options o;
  o.max_queued = 2;
  Start(o);
  SimClient& c = AddClient();
  c.Submit("q1", {1}, 1);
  c.Submit("q2", {1}, 1);
  c.Submit("q3", {1}, 1);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "q3");
  EXPECT_EQ(m.error().code(), "ResourceExhausted");
  EXPECT_NE(m.error().message().find("overloaded"), std::string::npos);
}

}  // namespace
}  // namespace flover
