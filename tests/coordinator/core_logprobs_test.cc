// Log-probabilities through the coordinator: each generated token's TokenLogprobs from
// the workers' TokenOutput reaches the stream and Done (one per token), across a
// failover and a stop string; a result whose log-probabilities cannot be honest makes
// the replica unhealthy. And the model's chat template, as the workers report it
// (harness: core_harness.h).
#include "tests/coordinator/core_harness.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace flover {
namespace {

using namespace coordinator_testing;

// A streamed submit of prompt {1, 2} that asks for log-probabilities.
proto::ClientMessage LogprobsSubmit(const std::string& id, int max_tokens, int top_logprobs) {
  proto::ClientMessage m = SubmitMessage(id, {1, 2}, max_tokens, /*stream=*/true);
  m.mutable_submit()->mutable_sampling()->set_logprobs(true);
  m.mutable_submit()->mutable_sampling()->set_top_logprobs(top_logprobs);
  return m;
}

// What a worker would report for `token` at step `step`: its own logprob, and `n_top`
// alternatives with `token` first.
TokenLogprobs MadeUp(int token, int step, int n_top) {
  TokenLogprobs l;
  l.logprob = -0.125f * static_cast<float>(step + 1);
  for (int i = 0; i < n_top; ++i) l.top.push_back({i == 0 ? token : 100 + i, l.logprob - static_cast<float>(i)});
  return l;
}

// The result of `plan` with one output that carries `logprobs`.
proto::StepResult WithLogprobs(const proto::StepPlan& plan, uint64_t id, int token, proto::FinishReason finish,
                               const TokenLogprobs& logprobs) {
  proto::StepResult r = ResultOf(plan, {{id, token, finish}});
  SetLogprobs(logprobs, r.mutable_outputs(0));
  return r;
}

std::vector<TokenLogprobs> AllOf(const google::protobuf::RepeatedPtrField<proto::TokenLogprobs>& all) {
  std::vector<TokenLogprobs> out;
  for (const proto::TokenLogprobs& l : all) out.push_back(FromProto(l));
  return out;
}

TEST_F(CoreTest, EachTokenComesWithItsLogprobsInTheStreamAndInDone) {
  Start();
  SimClient& c = AddClient();
  SimWorker& w = AddWorker();
  w.Start();
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  c.Send(LogprobsSubmit("l", 3, 2));
  const uint64_t id = ExpectAccepted(c, "l");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_TRUE(plan->joins(0).sampling().logprobs()) << "the workers are asked to compute them";
  EXPECT_EQ(plan->joins(0).sampling().top_logprobs(), 2);
  const std::vector<int> tokens = {7, 9, 11};
  std::vector<TokenLogprobs> sent;
  for (int step = 0; step < 3; ++step) {
    if (step > 0) plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    sent.push_back(MadeUp(tokens[step], step, 2));
    w.Push(WithLogprobs(*plan, id, tokens[step], step == 2 ? proto::FINISH_LENGTH : proto::FINISH_NONE, sent.back()));
    proto::ServerMessage m = Reply(c);
    ASSERT_TRUE(m.has_token()) << m.DebugString();
    ASSERT_EQ(m.token().tokens_size(), 1);
    ASSERT_EQ(m.token().logprobs_size(), 1) << "one per token";
    EXPECT_EQ(FromProto(m.token().logprobs(0)), sent.back());
  }
  proto::ServerMessage done = Reply(c);
  ASSERT_TRUE(done.has_done()) << done.DebugString();
  EXPECT_EQ(std::vector<int>(done.done().tokens().begin(), done.done().tokens().end()), tokens);
  EXPECT_EQ(AllOf(done.done().logprobs()), sent);
}

TEST_F(CoreTest, ARequestThatDidNotAskGetsNoLogprobsAndAStopTokenHasNone) {
  auto [c, w, id, plan] = StartWithOneRequest(Options{}, {1, 2}, 1);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 7, proto::FINISH_LENGTH}});
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().logprobs_size(), 0);
  m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().logprobs_size(), 0);

  // One that asks, and stops on EOS (2, not output): its one token's logprobs only.
  c.Send(LogprobsSubmit("e", 5, 1));
  const uint64_t e = ExpectAccepted(c, "e");
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Push(WithLogprobs(*plan, e, 30, proto::FINISH_NONE, MadeUp(30, 0, 1)));
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Push(WithLogprobs(*plan, e, 2, proto::FINISH_STOP, MadeUp(2, 1, 1)));
  m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  EXPECT_EQ(m.token().logprobs_size(), 1);
  m = Reply(c);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_STOP);
  ASSERT_EQ(m.done().tokens_size(), 1);
  EXPECT_EQ(AllOf(m.done().logprobs()), (std::vector<TokenLogprobs>{MadeUp(30, 0, 1)}));
}

// What an honest worker cannot send: the replica fails, and nothing of the result
// reaches the client.
TEST_F(CoreTest, ResultsWithLogprobsThatCannotBeHonestMakeTheReplicaUnhealthy) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    std::string name;
    int top_logprobs;  // asked; -1: logprobs not asked at all
    std::function<void(proto::TokenOutput*)> corrupt;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"more alternatives than asked", 2,
       [](proto::TokenOutput* o) { SetLogprobs(MadeUp(o->token(), 0, 3), o); }, "has 3 top log-probabilities; it asked for 2"},
      {"alternatives nobody asked for", -1,
       [](proto::TokenOutput* o) { SetLogprobs(MadeUp(o->token(), 0, 1), o); }, "has 1 top log-probabilities; it asked for 0"},
      {"a NaN logprob", 2, [&](proto::TokenOutput* o) { o->set_logprob(nan); }, "broken log-probabilities"},
      {"a positive logprob", 2, [](proto::TokenOutput* o) { o->set_logprob(0.5f); }, "broken log-probabilities"},
      {"a NaN alternative", 2,
       [&](proto::TokenOutput* o) {
         SetLogprobs(MadeUp(o->token(), 0, 2), o);
         o->mutable_top_logprobs(1)->set_logprob(nan);
       },
       "broken log-probabilities"},
      {"an alternative outside the vocabulary", 2,
       [](proto::TokenOutput* o) {
         SetLogprobs(MadeUp(o->token(), 0, 2), o);
         o->mutable_top_logprobs(1)->set_token(512);
       },
       "outside the vocabulary of 512"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    Start();
    SimClient& c = AddClient();
    SimWorker& w = AddWorker();
    w.Start();
    ASSERT_EQ(ReplicaState(c, 0), "ready");
    proto::ClientMessage submit = LogprobsSubmit("b", 3, std::max(k.top_logprobs, 0));
    if (k.top_logprobs < 0) submit.mutable_submit()->mutable_sampling()->set_logprobs(false);
    c.Send(submit);
    const uint64_t id = ExpectAccepted(c, "b");
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    ASSERT_TRUE(plan.has_value());
    proto::StepResult result = ResultOf(*plan, {{id, 7, proto::FINISH_NONE}});
    k.corrupt(result.mutable_outputs(0));
    w.Push(result);
    proto::ServerMessage m = Reply(c);
    ASSERT_TRUE(m.has_error()) << "no token of a broken result reaches the client: " << m.DebugString();
    EXPECT_EQ(m.error().code(), "Unavailable");
    EXPECT_NE(m.error().message().find("replica 0 is unhealthy"), std::string::npos) << m.error().message();
    EXPECT_NE(m.error().message().find(k.why), std::string::npos) << m.error().message();
    EXPECT_EQ(ReplicaState(c, 0), "unhealthy");
  }
}

// The coordinator holds the logprobs of the tokens a request generated before its
// replica failed; the other replica recomputes and only adds those of the new tokens.
TEST_F(CoreTest, LogprobsOfTokensGeneratedBeforeAFailoverAreKept) {
  auto [c, w0, w1] = StartTwoReplicas();
  c.Send(LogprobsSubmit("f", 3, 1));
  const uint64_t id = ExpectAccepted(c, "f", /*replica=*/0);
  std::optional<proto::StepPlan> plan = ExpectPlan(w0);
  ASSERT_TRUE(plan.has_value());
  w0.Push(WithLogprobs(*plan, id, 7, proto::FINISH_NONE, MadeUp(7, 0, 1)));
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_token()) << m.DebugString();
  ReportFailure(w0, "GPU fell off the bus");

  std::vector<TokenLogprobs> sent = {MadeUp(7, 0, 1)};
  const std::vector<int> more = {8, 9};
  for (int step = 0; step < 2; ++step) {
    plan = ExpectPlan(w1);
    ASSERT_TRUE(plan.has_value());
    if (step == 0) {
      ASSERT_EQ(plan->joins_size(), 1);
      EXPECT_EQ(plan->joins(0).generated_size(), 1);
      EXPECT_TRUE(plan->joins(0).sampling().logprobs());
    }
    sent.push_back(MadeUp(more[step], step + 1, 1));
    w1.Push(WithLogprobs(*plan, id, more[step], step == 1 ? proto::FINISH_LENGTH : proto::FINISH_NONE, sent.back()));
  }
  for (m = Reply(c); m.has_token(); m = Reply(c)) EXPECT_EQ(m.token().logprobs_size(), m.token().tokens_size());
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(std::vector<int>(m.done().tokens().begin(), m.done().tokens().end()), (std::vector<int>{7, 8, 9}));
  EXPECT_EQ(AllOf(m.done().logprobs()), sent);
}

// A stop string ends the text within a token; Done keeps one logprobs per token it
// reports, and nothing of the tokens after the stop.
TEST_F(CoreTest, AStopStringKeepsLogprobsAlignedWithTheTokens) {
  std::optional<WithTokenizer> started = StartWithTokenizer();
  ASSERT_TRUE(started.has_value());
  auto& [tokenizer, w, c] = *started;
  proto::ClientMessage submit = TextSubmit("s", "Once upon a time");
  submit.mutable_submit()->mutable_stop()->set_max_tokens(20);
  submit.mutable_submit()->mutable_stop()->add_stop_strings("a little");
  submit.mutable_submit()->mutable_sampling()->set_logprobs(true);
  c.Send(submit);
  proto::ServerMessage accepted = Reply(c);
  ASSERT_TRUE(accepted.has_accepted()) << accepted.DebugString();
  const uint64_t id = accepted.accepted().request_id();
  const std::vector<int> out = tokenizer.Encode("there was a little girl", false);
  std::vector<TokenLogprobs> sent;
  for (size_t i = 0; i < out.size(); ++i) {
    std::optional<proto::StepPlan> plan = ExpectPlan(w);
    if (!plan) break;  // the request left
    sent.push_back(MadeUp(out[i], static_cast<int>(i), 0));
    w.Push(WithLogprobs(*plan, id, out[i], proto::FINISH_NONE, sent.back()));
  }
  proto::ServerMessage m;
  int streamed = 0;
  for (m = Reply(c); m.has_token(); m = Reply(c)) {
    EXPECT_EQ(m.token().logprobs_size(), m.token().tokens_size());
    streamed += m.token().logprobs_size();
  }
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().finish_reason(), proto::FINISH_STOP);
  EXPECT_EQ(m.done().text(), " there was ");
  ASSERT_LT(m.done().tokens_size(), static_cast<int>(out.size()));
  EXPECT_EQ(m.done().logprobs_size(), m.done().tokens_size());
  EXPECT_EQ(streamed, m.done().tokens_size());
  sent.resize(m.done().tokens_size());
  EXPECT_EQ(AllOf(m.done().logprobs()), sent);
}

// The chat template the workers read from the model file stays with the model the
// cluster serves: in the status, and for the HTTP layer.
TEST_F(CoreTest, TheServedModelKeepsTheWorkersChatTemplate) {
  Start();
  SimClient& c = AddClient();
  EXPECT_EQ(sim().core().served_model(), nullptr) << "no replica is ready yet";
  proto::ModelInfo model = TestModel();
  model.set_chat_template("{{ bos_token }}{% for m in messages %}<|user|>{{ m.content }}{% endfor %}");
  SimWorker& w = AddWorker();
  w.Start(model);
  ASSERT_EQ(ReplicaState(c, 0), "ready");
  EXPECT_EQ(GetStatus(c).model().chat_template(), model.chat_template());
  ASSERT_NE(sim().core().served_model(), nullptr);
  EXPECT_EQ(sim().core().served_model()->chat_template(), model.chat_template());
}

}  // namespace
}  // namespace flover
