#include "coordinator/admission.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <google/protobuf/unknown_field_set.h>

#include "common/protocol.h"

namespace flover {
namespace {

ModelSpec Model() {
  ModelSpec m;
  m.dim = 64;
  m.hidden_dim = 172;
  m.n_layers = 2;
  m.n_heads = 8;
  m.n_kv_heads = 4;
  m.vocab_size = 32;
  m.max_seq_len = 16;
  return m;
}

// "hi" -> {BOS, " hi"} through two merges.
Tokenizer SmallTokenizer() {
  Result<Tokenizer> t = Tokenizer::FromPieces({"<unk>", "<s>", "</s>", " ", "h", "i", " h", " hi"},
                                              {0, 0, 0, 0, 0, 0, 1, 2});
  FLOVER_CHECK(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

proto::SubmitRequest Submit(const std::string& id, std::vector<int> ids, int max_tokens = 4) {
  proto::SubmitRequest s;
  s.set_client_request_id(id);
  s.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  s.mutable_stop()->set_max_tokens(max_tokens);
  return s;
}

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : tokenizer_(SmallTokenizer()), model_(Model()) {
    context_.tokenizer = &tokenizer_;
    context_.model = &model_;
    context_.kv_capacity_tokens = 64;
    context_.max_queued = 8;
  }

  Status AdmitStatus(const proto::SubmitRequest& s) { return Admit(s, context_).status(); }

  Tokenizer tokenizer_;
  ModelSpec model_;
  AdmissionContext context_;
};

TEST_F(AdmissionTest, TokenIdsAreUsedAsGiven) {
  proto::SubmitRequest s = Submit("a", {1, 5, 7});
  s.mutable_sampling()->set_temperature(0.5f);
  s.mutable_sampling()->set_seed(42);
  s.mutable_stop()->add_stop_token_ids(9);
  Result<RequestParams> r = Admit(s, context_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->prompt, (std::vector<int>{1, 5, 7}));
  EXPECT_EQ(r->sampling.temperature, 0.5f);
  EXPECT_EQ(r->sampling.seed, 42u);
  EXPECT_EQ(r->sampling.top_p, 1.0f);  // proto 0 reads as off
  EXPECT_EQ(r->stop.max_tokens, 4);
  EXPECT_EQ(r->stop.stop_token_ids, (std::vector<int>{9}));
}

TEST_F(AdmissionTest, TextIsTokenizedWithBos) {
  proto::SubmitRequest s = Submit("a", {});
  s.set_text("hi");
  Result<RequestParams> r = Admit(s, context_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->prompt, (std::vector<int>{1, 7}));
}

// A text whose bytes cannot fit the context whatever its tokens is refused before the
// tokenizer runs (16 tokens of at most 5 bytes, "<unk>", here: 80 bytes).
TEST_F(AdmissionTest, TextLongerThanAnyContextIsRefusedBeforeTokenizing) {
  EXPECT_EQ(tokenizer_.max_piece_bytes(), 5);
  proto::SubmitRequest s = Submit("a", {});
  s.set_text(std::string(81, 'h'));
  Status st = AdmitStatus(s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "prompt text of 81 bytes is longer than this model's context of 16 tokens can hold");
  s.set_text(std::string(80, 'h'));  // tokenized, then too long as tokens
  st = AdmitStatus(s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().find("prompt text of"), std::string::npos) << st.message();
  context_.model = nullptr;  // model unknown yet: tokenized, checked later
  s.set_text(std::string(81, 'h'));
  EXPECT_TRUE(AdmitStatus(s).ok());
}

TEST_F(AdmissionTest, StopStringsAreBoundedAndNeedATokenizer) {
  proto::SubmitRequest s = Submit("a", {1, 5});
  s.mutable_stop()->add_stop_strings("\n\n");
  Result<RequestParams> r = Admit(s, context_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stop.stop_strings, (std::vector<std::string>{"\n\n"}));
  s.mutable_stop()->add_stop_strings("");
  EXPECT_EQ(AdmitStatus(s).message(), "a stop string is empty: each needs at least one byte");
  s.mutable_stop()->set_stop_strings(1, std::string(257, 'x'));
  EXPECT_EQ(AdmitStatus(s).message(), "stop string 1 has 257 bytes, more than limits.max_stop_string_bytes = 256");
  s.mutable_stop()->clear_stop_strings();
  for (int i = 0; i < 17; ++i) s.mutable_stop()->add_stop_strings("x");
  EXPECT_EQ(AdmitStatus(s).message(), "stop has 17 stop strings, more than limits.max_stop_strings = 16");
  s.mutable_stop()->mutable_stop_strings()->RemoveLast();
  context_.tokenizer = nullptr;
  EXPECT_EQ(AdmitStatus(s).message(), "stop strings need the cluster's tokenizer (model.tokenizer); use stop token ids");
}

// Every size a client chooses is checked against limits: before anything else (the
// model checks would pass these requests), with the key and the value in the message.
TEST_F(AdmissionTest, SizesOverTheConfiguredLimitsAreRefusedNamingTheKey) {
  context_.limits.max_request_id_bytes = 8;
  context_.limits.max_prompt_bytes = 4;
  context_.limits.max_prompt_tokens = 3;
  context_.limits.max_stop_ids = 2;
  context_.limits.max_stop_strings = 2;
  context_.limits.max_stop_string_bytes = 3;
  struct Case {
    proto::SubmitRequest submit;
    std::string expected;
  };
  std::vector<Case> cases;
  cases.push_back(
      {Submit("123456789", {1, 2}), "client_request_id has 9 bytes, more than limits.max_request_id_bytes = 8"});
  proto::SubmitRequest text = Submit("a", {});
  text.set_text("hhhhh");
  cases.push_back({text, "the prompt text has 5 bytes, more than limits.max_prompt_bytes = 4"});
  cases.push_back({Submit("a", {1, 2, 3, 4}), "the prompt has 4 token ids, more than limits.max_prompt_tokens = 3"});
  proto::SubmitRequest ids = Submit("a", {1, 2});
  for (int id : {3, 4, 5}) ids.mutable_stop()->add_stop_token_ids(id);
  cases.push_back({ids, "stop has 3 stop token ids, more than limits.max_stop_ids = 2"});
  proto::SubmitRequest strings = Submit("a", {1, 2});
  for (const char* text : {"a", "b", "c"}) strings.mutable_stop()->add_stop_strings(text);
  cases.push_back({strings, "stop has 3 stop strings, more than limits.max_stop_strings = 2"});
  proto::SubmitRequest long_string = Submit("a", {1, 2});
  long_string.mutable_stop()->add_stop_strings("abc");
  long_string.mutable_stop()->add_stop_strings("abcd");
  cases.push_back({long_string, "stop string 1 has 4 bytes, more than limits.max_stop_string_bytes = 3"});
  for (const Case& c : cases) {
    const Status st = AdmitStatus(c.submit);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.expected;
    EXPECT_EQ(st.message(), c.expected);
  }
  // At the limits: admitted.
  proto::SubmitRequest fits = Submit("12345678", {1, 2, 3});
  for (int id : {3, 4}) fits.mutable_stop()->add_stop_token_ids(id);
  for (const char* text : {"abc", "d"}) fits.mutable_stop()->add_stop_strings(text);
  EXPECT_TRUE(Admit(fits, context_).ok()) << AdmitStatus(fits).ToString();
  proto::SubmitRequest text_fits = Submit("a", {});
  text_fits.set_text("hhhh");
  EXPECT_TRUE(Admit(text_fits, context_).ok()) << AdmitStatus(text_fits).ToString();
}

TEST_F(AdmissionTest, AConnectionWithMaxRequestsInFlightIsResourceExhausted) {
  context_.limits.max_requests_per_client = 3;
  context_.client_in_flight = 3;
  Status st = AdmitStatus(Submit("a", {1, 2}));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(st.message(), "this connection has 3 requests in flight, as many as limits.max_requests_per_client = 3 "
                          "allows; wait for some to finish");
  EXPECT_EQ(AdmitStatus(Submit("a", {1, 99})).code(), StatusCode::kInvalidArgument) << "bad input is said first";
  context_.client_in_flight = 2;
  EXPECT_TRUE(Admit(Submit("a", {1, 2}), context_).ok());
}

TEST(EchoedRequestIdTest, KeepsShortIdsAndCutsLongOnesAtACharacterBoundary) {
  EXPECT_EQ(EchoedRequestId("abc", 3), "abc");
  EXPECT_EQ(EchoedRequestId("abcdef", 3), "abc");
  EXPECT_EQ(EchoedRequestId("", 0), "");
  // "a\u00e9b": the cut at 2 bytes would split the 2-byte character.
  const std::string accented = std::string("a\xc3\xa9") + "b";
  EXPECT_EQ(EchoedRequestId(accented, 2), "a");
  EXPECT_EQ(EchoedRequestId(accented, 3), "a\xc3\xa9");
  EXPECT_EQ(EchoedRequestId(std::string(1 << 20, 'x'), 256).size(), 256u);
}

TEST_F(AdmissionTest, TextWithoutTokenizerIsRefused) {
  context_.tokenizer = nullptr;
  proto::SubmitRequest s = Submit("a", {});
  s.set_text("hi");
  const Status st = AdmitStatus(s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "this cluster has no tokenizer: send token ids");
}

TEST_F(AdmissionTest, ClientRequestIdMustBeGivenAndFreshOnTheConnection) {
  Status st = AdmitStatus(Submit("", {1, 2}));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("client_request_id is empty"), std::string::npos) << st.message();
  context_.id_in_flight = true;
  st = AdmitStatus(Submit("dup", {1, 2}));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'dup' is already in flight"), std::string::npos) << st.message();
}

TEST_F(AdmissionTest, MissingPromptIsRefused) {
  proto::SubmitRequest s;
  s.set_client_request_id("a");
  s.mutable_stop()->set_max_tokens(1);
  const Status st = AdmitStatus(s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("no prompt"), std::string::npos) << st.message();
}

TEST_F(AdmissionTest, ModelChecksNameTheProblem) {
  struct Case {
    proto::SubmitRequest submit;
    std::string expected;
  };
  std::vector<Case> cases;
  cases.push_back({Submit("a", {}), "prompt is empty"});
  cases.push_back({Submit("a", std::vector<int>(17, 3)), "prompt has 17 tokens; this model allows 16"});
  cases.push_back({Submit("a", {1, 32}), "outside the vocabulary [0, 32)"});
  cases.push_back({Submit("a", {1, -1}), "has id -1"});
  cases.push_back({Submit("a", {1, 2}, /*max_tokens=*/0), "max_tokens must be >= 1"});
  cases.push_back({Submit("a", {1, 2}, -5), "max_tokens must be >= 1"});
  proto::SubmitRequest hot = Submit("a", {1, 2});
  hot.mutable_sampling()->set_temperature(-1.0f);
  cases.push_back({hot, "temperature"});
  proto::SubmitRequest top_p = Submit("a", {1, 2});
  top_p.mutable_sampling()->set_top_p(1.5f);
  cases.push_back({top_p, "top_p"});
  proto::SubmitRequest stop = Submit("a", {1, 2});
  stop.mutable_stop()->add_stop_token_ids(99);
  cases.push_back({stop, "stop token id 99"});
  for (const Case& c : cases) {
    const Status st = AdmitStatus(c.submit);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.expected;
    EXPECT_NE(st.message().find(c.expected), std::string::npos) << st.message();
  }
}

TEST_F(AdmissionTest, RequestLargerThanTheSmallestKvPoolIsResourceExhausted) {
  context_.kv_capacity_tokens = 8;
  // prompt 4 + max_tokens 5 - 1 = 8 positions: fits exactly.
  EXPECT_TRUE(Admit(Submit("a", {1, 2, 3, 4}, 5), context_).ok());
  const Status st = AdmitStatus(Submit("a", {1, 2, 3, 4}, 6));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("needs up to 9 KV slots"), std::string::npos) << st.message();
  // Capped by the context: max_seq_len 16 positions at most.
  context_.kv_capacity_tokens = 16;
  EXPECT_TRUE(Admit(Submit("a", {1, 2}, 1000), context_).ok());
}

TEST_F(AdmissionTest, FullQueueIsOverloaded) {
  context_.n_queued = 8;
  const Status st = AdmitStatus(Submit("a", {1, 2}));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("overloaded"), std::string::npos) << st.message();
  context_.n_queued = 7;
  EXPECT_TRUE(Admit(Submit("a", {1, 2}), context_).ok());
}

TEST_F(AdmissionTest, InvalidInputWinsOverAFullQueue) {
  context_.n_queued = 100;
  EXPECT_EQ(AdmitStatus(Submit("a", {1, 99})).code(), StatusCode::kInvalidArgument);
}

TEST_F(AdmissionTest, ModelChecksWaitUntilTheModelIsKnown) {
  context_.model = nullptr;
  Result<RequestParams> r = Admit(Submit("a", {1, 99}), context_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Status st = CheckAgainstModel(*r, model_, 64);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("outside the vocabulary"), std::string::npos);
}

// ---------------------------------------------------------------- wire parsing

TEST(ParseClientMessageTest, AcceptsAWellFormedSubmit) {
  proto::ClientMessage m;
  *m.mutable_submit() = Submit("a", {1, 2});
  Result<proto::ClientMessage> parsed = ParseClientMessage(Serialize(m));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->submit().client_request_id(), "a");
}

TEST(ParseClientMessageTest, RejectsGarbageWrongVersionEmptyBodyAndUnknownFields) {
  EXPECT_FALSE(ParseClientMessage(std::string("\xff\xff\xff\xff", 4)).ok());

  proto::ClientMessage m;
  m.mutable_status();
  std::string bytes = m.SerializeAsString();  // protocol_version 0
  Status st = ParseClientMessage(bytes).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("protocol version 0"), std::string::npos) << st.message();

  st = ParseClientMessage(Serialize(proto::ClientMessage())).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("no body"), std::string::npos) << st.message();

  proto::ClientMessage nested;
  *nested.mutable_submit() = Submit("a", {1, 2});
  proto::SamplingParams* sampling = nested.mutable_submit()->mutable_sampling();
  sampling->GetReflection()->MutableUnknownFields(sampling)->AddVarint(99, 1);
  st = ParseClientMessage(Serialize(nested)).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("unknown fields in submit.sampling"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace flover
