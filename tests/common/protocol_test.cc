// Round trips of every protocol message through the versioned envelopes, strict
// parsing (version, unknown fields, garbage) and plan-gap detection.
#include "common/protocol.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace flover {
namespace {

using google::protobuf::util::MessageDifferencer;

template <typename M>
void ExpectRoundTrip(const M& m) {
  Result<M> back = Parse<M>(Serialize(m), /*reject_unknown_fields=*/true);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  M expected = m;
  expected.set_protocol_version(kProtocolVersion);
  EXPECT_TRUE(MessageDifferencer::Equals(*back, expected)) << back->DebugString() << "\nvs\n" << expected.DebugString();
}

proto::SamplingParams Sampling() {
  SamplingParams s;
  s.temperature = 0.7f;
  s.top_k = 40;
  s.top_p = 0.9f;
  s.repetition_penalty = 1.1f;
  s.seed = 1234567890123ull;
  return ToProto(s);
}

TEST(ProtocolTest, ClientMessagesRoundTrip) {
  proto::ClientMessage submit;
  auto* s = submit.mutable_submit();
  s->set_client_request_id("req-1");
  s->set_text("Once upon a time");
  *s->mutable_sampling() = Sampling();
  s->mutable_stop()->set_max_tokens(64);
  s->mutable_stop()->add_stop_token_ids(13);
  s->set_stream(true);
  s->set_priority(-2);
  ExpectRoundTrip(submit);
  proto::ClientMessage ids;
  ids.mutable_submit()->mutable_token_ids()->add_ids(1);
  ids.mutable_submit()->mutable_token_ids()->add_ids(301);
  ExpectRoundTrip(ids);
  proto::ClientMessage cancel;
  cancel.mutable_cancel()->set_client_request_id("req-1");
  ExpectRoundTrip(cancel);
  proto::ClientMessage status;
  status.mutable_status();
  ExpectRoundTrip(status);
}

TEST(ProtocolTest, ServerMessagesRoundTrip) {
  proto::ServerMessage accepted;
  accepted.mutable_accepted()->set_client_request_id("a");
  accepted.mutable_accepted()->set_request_id(99);
  accepted.mutable_accepted()->set_prompt_tokens(4);
  accepted.mutable_accepted()->set_replica(1);
  ExpectRoundTrip(accepted);
  proto::ServerMessage token;
  token.mutable_token()->set_client_request_id("a");
  token.mutable_token()->add_tokens(269);
  token.mutable_token()->set_text(" and");
  ExpectRoundTrip(token);
  proto::ServerMessage done;
  auto* d = done.mutable_done();
  d->set_client_request_id("a");
  d->set_finish_reason(proto::FINISH_LENGTH);
  d->add_tokens(269);
  d->set_text(" and");
  d->set_prompt_tokens(4);
  d->set_completion_tokens(1);
  d->set_queue_seconds(0.001);
  d->set_first_token_seconds(0.01);
  d->set_total_seconds(0.02);
  ExpectRoundTrip(done);
  ExpectRoundTrip(ErrorReply("a", InvalidArgument("prompt is empty")));
  proto::ServerMessage status;
  auto* st = status.mutable_status();
  st->set_name("local");
  *st->mutable_model() = ToProto(ModelSpec{64, 172, 5, 8, 4, 512, 512}, "stories260K");
  auto* r = st->add_replicas();
  r->set_replica(0);
  r->set_state("ready");
  r->set_kv_blocks_total(100);
  r->set_kv_blocks_used(7);
  auto* w = r->add_workers();
  w->set_rank(1);
  w->set_state("ready");
  w->set_pid(42);
  ExpectRoundTrip(status);
}

TEST(ProtocolTest, ControlPlaneMessagesRoundTrip) {
  proto::WorkerMessage reg;
  reg.mutable_register_()->set_replica(1);
  reg.mutable_register_()->set_rank(1);
  reg.mutable_register_()->set_host("127.0.0.1");
  reg.mutable_register_()->set_pid(1234);
  reg.mutable_register_()->set_device("cpu");
  ExpectRoundTrip(reg);
  proto::WorkerMessage ready;
  ready.mutable_ready()->set_kv_blocks(4096);
  *ready.mutable_ready()->mutable_model() = ToProto(ModelSpec{64, 172, 5, 8, 4, 512, 512}, "m");
  ExpectRoundTrip(ready);
  proto::WorkerMessage set;
  set.mutable_store_set()->set_key("replica/0/gloo/rank0");
  set.mutable_store_set()->set_value(std::string("\0\1\2binary", 9));
  ExpectRoundTrip(set);
  proto::WorkerMessage get;
  get.mutable_store_get()->set_key("k");
  get.mutable_store_get()->set_timeout_ms(30000);
  ExpectRoundTrip(get);
  proto::WorkerMessage hb;
  hb.mutable_heartbeat()->set_last_plan_seq(77);
  ExpectRoundTrip(hb);
  proto::WorkerMessage failure;
  failure.mutable_failure()->set_message("plan 7 arrived after plan 5");
  ExpectRoundTrip(failure);
  proto::WorkerMessage result;
  auto* sr = result.mutable_step_result();
  sr->set_replica(0);
  sr->set_seq(12);
  auto* out = sr->add_outputs();
  out->set_request_id(5);
  out->set_token(2);  // a stop token (not output)
  out->set_finish(proto::FINISH_STOP);
  sr->set_step_seconds(0.004);
  ExpectRoundTrip(result);

  proto::CoordinatorMessage reply;
  auto* rr = reply.mutable_register_reply();
  rr->set_accepted(true);
  rr->mutable_config()->set_name("x");
  rr->mutable_config()->mutable_scheduler()->set_policy(proto::SCHEDULER_POLICY_DYNAMIC);
  rr->set_plans_endpoint("tcp://127.0.0.1:5557");
  rr->set_plan_topic("replica/0/");
  ExpectRoundTrip(reply);
  proto::CoordinatorMessage value;
  value.mutable_store_value()->set_key("k");
  value.mutable_store_value()->set_found(true);
  value.mutable_store_value()->set_value("v");
  ExpectRoundTrip(value);
  proto::CoordinatorMessage shutdown;
  shutdown.mutable_shutdown()->set_reason("SIGTERM");
  ExpectRoundTrip(shutdown);
  proto::CoordinatorMessage plan;
  auto* p = plan.mutable_plan();
  p->set_replica(1);
  p->set_seq(3);
  auto* j = p->add_joins();
  j->set_request_id(8);
  j->add_prompt(1);
  j->add_prompt(301);
  *j->mutable_sampling() = Sampling();
  j->mutable_stop()->set_max_tokens(10);
  p->add_leaves(4);
  p->add_resets(6);
  auto* e = p->add_entries();
  e->set_request_id(8);
  e->set_start_pos(0);
  e->set_n_tokens(2);
  e->add_new_blocks(17);
  p->set_separate_passes(true);
  ExpectRoundTrip(plan);
}

TEST(ProtocolTest, RejectsGarbageOtherVersionsAndUnknownFields) {
  EXPECT_EQ(Parse<proto::ClientMessage>(std::string("\xff\xff\xff\xff", 4)).status().code(), StatusCode::kCorruption);

  proto::ClientMessage old;
  old.mutable_status();
  old.set_protocol_version(kProtocolVersion + 1);
  Status s = Parse<proto::ClientMessage>(old.SerializeAsString()).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("protocol version"), std::string::npos) << s.message();

  // A submit with an extra field 99 inside `stop`, as a newer client would send.
  proto::ClientMessage m;
  m.mutable_submit()->set_client_request_id("x");
  m.mutable_submit()->mutable_stop()->set_max_tokens(3);
  m.mutable_submit()->mutable_stop()->GetReflection()->MutableUnknownFields(m.mutable_submit()->mutable_stop())
      ->AddVarint(99, 1);
  const std::string bytes = Serialize(m);
  EXPECT_TRUE(Parse<proto::ClientMessage>(bytes, /*reject_unknown_fields=*/false).ok());
  Status strict = Parse<proto::ClientMessage>(bytes, /*reject_unknown_fields=*/true).status();
  EXPECT_EQ(strict.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(strict.message().find("submit.stop"), std::string::npos) << strict.message();
}

TEST(ProtocolTest, PlanSequenceDetectsGapsAndRepeats) {
  PlanSequence seq;
  EXPECT_TRUE(seq.Accept(1).ok());
  EXPECT_TRUE(seq.Accept(2).ok());
  Status gap = seq.Accept(5);
  EXPECT_EQ(gap.code(), StatusCode::kUnavailable);
  EXPECT_NE(gap.message().find("2 plan(s) lost, from plan 3"), std::string::npos) << gap.message();
  EXPECT_EQ(seq.last(), 2u) << "a rejected plan does not advance";
  EXPECT_FALSE(seq.Accept(2).ok()) << "repeat";
  EXPECT_TRUE(seq.Accept(3).ok());
  PlanSequence late;
  EXPECT_FALSE(late.Accept(4).ok()) << "a worker must see plan 1 first";
}

TEST(ProtocolTest, SamplingDefaultsSurviveProto3Zeros) {
  proto::SamplingParams zero;  // what a client sets when it means "defaults"
  SamplingParams s = FromProto(zero);
  EXPECT_EQ(s.temperature, 0.0f);
  EXPECT_EQ(s.top_p, 1.0f);
  EXPECT_EQ(s.repetition_penalty, 1.0f);
  StopParams stop;
  stop.max_tokens = 7;
  stop.stop_token_ids = {2, 13};
  stop.ignore_eos = true;
  StopParams back = FromProto(ToProto(stop));
  EXPECT_EQ(back.max_tokens, 7);
  EXPECT_EQ(back.stop_token_ids, stop.stop_token_ids);
  EXPECT_TRUE(back.ignore_eos);
  for (FinishReason r : {FinishReason::kNone, FinishReason::kStop, FinishReason::kLength, FinishReason::kCancelled,
                         FinishReason::kError})
    EXPECT_EQ(FromProto(ToProto(r)), r);
}

TEST(ProtocolTest, OpenAiSamplingFieldsRoundTrip) {
  SamplingParams s;
  s.presence_penalty = -1.5f;
  s.frequency_penalty = 0.75f;
  s.logprobs = true;
  s.top_logprobs = 7;
  const SamplingParams back = FromProto(ToProto(s));
  EXPECT_EQ(back.presence_penalty, -1.5f);
  EXPECT_EQ(back.frequency_penalty, 0.75f);
  EXPECT_TRUE(back.logprobs);
  EXPECT_EQ(back.top_logprobs, 7);
  const SamplingParams zero = FromProto(proto::SamplingParams{});
  EXPECT_EQ(zero.presence_penalty, 0.0f);
  EXPECT_EQ(zero.frequency_penalty, 0.0f);
  EXPECT_FALSE(zero.logprobs);
  EXPECT_EQ(zero.top_logprobs, 0);
}

TEST(ProtocolTest, LogprobsRoundTripThroughTokenOutputAndTokenLogprobs) {
  const TokenLogprobs l{-0.25f, {{4, -0.25f}, {9, -1.5f}, {2, -3.0f}}};
  proto::TokenOutput out;
  out.set_request_id(3);
  SetLogprobs(l, &out);
  EXPECT_EQ(LogprobsOf(out), l);
  EXPECT_EQ(FromProto(ToProto(l)), l);
  EXPECT_TRUE(CheckOutputLogprobs(out, 10).ok());
  EXPECT_TRUE(LogprobsOf(proto::TokenOutput{}).top.empty());
}

TEST(ProtocolTest, CheckOutputLogprobsRefusesWhatCannotBeALogprob) {
  auto check = [](float logprob, int top_token, float top_logprob) {
    proto::TokenOutput out;
    out.set_request_id(12);
    out.set_logprob(logprob);
    proto::TokenLogprob* t = out.add_top_logprobs();
    t->set_token(top_token);
    t->set_logprob(top_logprob);
    const Status s = CheckOutputLogprobs(out, 10);
    return s.ok() ? std::string() : s.message();
  };
  EXPECT_EQ(check(-1.0f, 9, 0.0f), "");
  EXPECT_EQ(check(0.5f, 1, -1.0f), "request 12 has log-probability 0.500000 for its token; a log-probability is "
                                   "finite and <= 0");
  EXPECT_NE(check(std::nanf(""), 1, -1.0f).find("request 12 has log-probability nan"), std::string::npos);
  EXPECT_NE(check(-std::numeric_limits<float>::infinity(), 1, -1.0f).find("finite"), std::string::npos);
  EXPECT_EQ(check(-1.0f, 10, -1.0f), "request 12 has top log-probability token 10, outside the vocabulary of 10");
  EXPECT_EQ(check(-1.0f, -1, -1.0f), "request 12 has top log-probability token -1, outside the vocabulary of 10");
  EXPECT_NE(check(-1.0f, 3, std::nanf("")).find("for top token 3"), std::string::npos);
}

TEST(ProtocolTest, ModelInfoCarriesTheChatTemplate) {
  ModelSpec spec;
  spec.vocab_size = 5;
  spec.chat_template = "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}";
  const proto::ModelInfo info = ToProto(spec, "test");
  EXPECT_EQ(info.chat_template(), spec.chat_template);
  EXPECT_EQ(FromProto(info).chat_template, spec.chat_template);
}

TEST(ProtocolTest, ModelInfoCarriesTheExtraEosIds) {
  ModelSpec spec;
  spec.vocab_size = 50;
  spec.extra_eos_ids = {41, 47};
  EXPECT_EQ(FromProto(ToProto(spec, "test")).extra_eos_ids, spec.extra_eos_ids);
}

}  // namespace
}  // namespace flover
