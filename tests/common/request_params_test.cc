// The length rule of request_params.h: when a request stops by length, and the KV
// positions that makes it need at most; the finish rule built on it; the validation of
// the OpenAI sampling fields.
#include "common/request_params.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace flover {
namespace {

TEST(StopsByLengthTest, StopsAtMaxTokens) {
  // Prompt 3, max_tokens 4, a context of 16: the 4th generated token is the last.
  EXPECT_FALSE(StopsByLength(3, 0, 4, 16));
  EXPECT_FALSE(StopsByLength(3, 3, 4, 16));
  EXPECT_TRUE(StopsByLength(3, 4, 4, 16));
  EXPECT_TRUE(StopsByLength(3, 5, 4, 16));
}

TEST(StopsByLengthTest, StopsWhenTheNewestTokenHasNoPosition) {
  // Prompt 10, context 16: 6 generated tokens put the newest at position 15, which a
  // step can still compute; the 7th sits at 16, beyond the context.
  EXPECT_FALSE(StopsByLength(10, 6, 100, 16));
  EXPECT_TRUE(StopsByLength(10, 7, 100, 16));
  // A prompt that fills the context may still sample one token (from position 15).
  EXPECT_FALSE(StopsByLength(16, 0, 100, 16));
  EXPECT_TRUE(StopsByLength(16, 1, 100, 16));
}

TEST(MaxKvPositionsTest, PromptPlusMaxTokensMinusOneCappedByContext) {
  RequestParams r;
  r.prompt = {1, 2, 3};
  r.stop.max_tokens = 4;
  EXPECT_EQ(MaxKvPositions(r, 16), 6);
  r.stop.max_tokens = 100;
  EXPECT_EQ(MaxKvPositions(r, 16), 16);
  ModelSpec model;
  model.max_seq_len = 5;
  EXPECT_EQ(MaxKvPositions(r, model), 5);
}

// MaxKvPositions counts the positions a request computes before StopsByLength ends it:
// every token it holds at that point but the last.
TEST(MaxKvPositionsTest, AgreesWithStopsByLength) {
  for (int max_seq_len : {1, 7, 16}) {
    for (int n_prompt = 1; n_prompt <= max_seq_len; ++n_prompt) {
      for (int max_tokens : {1, 2, 5, 40}) {
        int n_generated = 1;
        while (!StopsByLength(n_prompt, n_generated, max_tokens, max_seq_len)) ++n_generated;
        RequestParams r;
        r.prompt.assign(n_prompt, 1);
        r.stop.max_tokens = max_tokens;
        EXPECT_EQ(MaxKvPositions(r, max_seq_len), n_prompt + n_generated - 1)
            << "prompt " << n_prompt << " max_tokens " << max_tokens << " context " << max_seq_len;
      }
    }
  }
}

// The finish rule, as a table: (token sampled, stop parameters, tokens generated
// before) -> finish. Model: context 16, BOS 1, EOS 2; prompt of 3 tokens.
TEST(FinishAfterSampleTest, StopTokensFirstThenLength) {
  const ModelStops model{.max_seq_len = 16, .bos_id = 1, .eos_id = 2};
  struct Row {
    int token;
    int max_tokens;
    std::vector<int> stop_ids;
    bool ignore_eos;
    int n_generated;
    FinishReason expected;
  };
  const std::vector<Row> rows = {
      {7, 4, {}, false, 0, FinishReason::kNone},      {7, 4, {}, false, 3, FinishReason::kLength},  // the 4th token
      {2, 4, {}, false, 0, FinishReason::kStop},                                                    // EOS
      {1, 4, {}, false, 0, FinishReason::kStop},                                                    // BOS
      {2, 4, {}, false, 3, FinishReason::kStop},  // a stop as the last token is a stop
      {2, 4, {}, true, 0, FinishReason::kNone},   // EOS ignored
      {2, 4, {}, true, 3, FinishReason::kLength},     {9, 4, {9}, false, 0, FinishReason::kStop},  // a stop id
      {9, 4, {9}, true, 0, FinishReason::kStop},       // ignore_eos leaves stop ids alone
      {7, 100, {}, false, 13, FinishReason::kLength},  // the newest token at position 16
      {7, 100, {}, false, 12, FinishReason::kNone},
  };
  for (const Row& row : rows) {
    StopParams stop;
    stop.max_tokens = row.max_tokens;
    stop.stop_token_ids = row.stop_ids;
    stop.ignore_eos = row.ignore_eos;
    EXPECT_EQ(FinishAfterSample(row.token, stop, 3, row.n_generated, model), row.expected)
        << "token " << row.token << " after " << row.n_generated;
  }
  ModelSpec spec;
  spec.max_seq_len = 16;
  spec.bos_id = 5;
  spec.eos_id = 6;
  const ModelStops stops = StopsOf(spec);
  EXPECT_EQ(stops.max_seq_len, 16);
  EXPECT_EQ(stops.bos_id, 5);
  EXPECT_EQ(stops.eos_id, 6);
}

// Models whose generation config lists several end-of-text ids (LLaMA 3's <|eot_id|>)
// stop on each of them, unless ignore_eos, and on nothing else.
TEST(FinishAfterSampleTest, EveryExtraEosIdStops) {
  ModelSpec spec;
  spec.max_seq_len = 16;
  spec.vocab_size = 32;
  spec.extra_eos_ids = {9, 11};
  const ModelStops model = StopsOf(spec);
  StopParams stop;
  stop.max_tokens = 4;
  for (int token : {2, 9, 11}) EXPECT_EQ(FinishAfterSample(token, stop, 3, 0, model), FinishReason::kStop) << token;
  for (int token : {0, 3, 10, 12}) EXPECT_EQ(FinishAfterSample(token, stop, 3, 0, model), FinishReason::kNone) << token;
  stop.ignore_eos = true;
  EXPECT_EQ(FinishAfterSample(11, stop, 3, 0, model), FinishReason::kNone);
}

TEST(ModelSpecTest, ExtraEosIdsAreBoundedAndInTheVocabulary) {
  ModelSpec spec;
  spec.dim = 8;
  spec.hidden_dim = 8;
  spec.n_layers = 1;
  spec.n_heads = 2;
  spec.n_kv_heads = 2;
  spec.vocab_size = 32;
  spec.max_seq_len = 16;
  spec.extra_eos_ids = {31};
  EXPECT_TRUE(spec.Validate().ok());
  spec.extra_eos_ids = {32};
  EXPECT_NE(spec.Validate().message().find("eos id 32 outside the vocabulary"), std::string::npos);
  spec.extra_eos_ids.assign(ModelSpec::kMaxExtraEosIds + 1, 3);
  EXPECT_NE(spec.Validate().message().find("at most"), std::string::npos);
}

RequestParams ValidRequest() {
  RequestParams r;
  r.prompt = {1, 5, 9};
  return r;
}

ModelSpec SmallModel() {
  ModelSpec spec;
  spec.vocab_size = 32;
  spec.max_seq_len = 16;
  return spec;
}

// The error of ValidateRequest after `change`, or "" when it passes.
template <typename Change>
std::string ErrorAfter(Change change) {
  RequestParams r = ValidRequest();
  change(r.sampling);
  const Status s = ValidateRequest(r, SmallModel());
  return s.ok() ? "" : s.message();
}

TEST(ValidateRequestTest, PenaltiesMustLieInMinusTwoToTwo) {
  for (float v : {-2.0f, -0.5f, 0.0f, 1.25f, 2.0f}) {
    EXPECT_EQ(ErrorAfter([&](SamplingParams& s) { s.presence_penalty = v; }), "") << v;
    EXPECT_EQ(ErrorAfter([&](SamplingParams& s) { s.frequency_penalty = v; }), "") << v;
  }
  for (float v : {-2.01f, 2.5f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    EXPECT_NE(ErrorAfter([&](SamplingParams& s) { s.presence_penalty = v; }).find("presence_penalty must be in [-2, 2]"),
              std::string::npos)
        << v;
    EXPECT_NE(
        ErrorAfter([&](SamplingParams& s) { s.frequency_penalty = v; }).find("frequency_penalty must be in [-2, 2]"),
        std::string::npos)
        << v;
  }
}

TEST(ValidateRequestTest, TopLogprobsInZeroToTwentyAndNeedsLogprobs) {
  EXPECT_EQ(ErrorAfter([](SamplingParams& s) { s.logprobs = true; }), "");
  EXPECT_EQ(ErrorAfter([](SamplingParams& s) {
              s.logprobs = true;
              s.top_logprobs = 20;
            }),
            "");
  EXPECT_EQ(ErrorAfter([](SamplingParams& s) {
              s.logprobs = true;
              s.top_logprobs = 21;
            }),
            "top_logprobs must be in [0, 20], got 21");
  EXPECT_EQ(ErrorAfter([](SamplingParams& s) {
              s.logprobs = true;
              s.top_logprobs = -1;
            }),
            "top_logprobs must be in [0, 20], got -1");
  EXPECT_EQ(ErrorAfter([](SamplingParams& s) { s.top_logprobs = 3; }), "top_logprobs = 3 needs logprobs = true");
}

TEST(SamplingParamsTest, ArgmaxOnlyWithoutPenaltiesOrLogprobs) {
  SamplingParams s;
  EXPECT_TRUE(s.argmax_only());
  EXPECT_FALSE(s.penalises_generated());
  s.presence_penalty = 0.1f;
  EXPECT_TRUE(s.penalises_generated());
  EXPECT_FALSE(s.argmax_only());
  s = SamplingParams{};
  s.frequency_penalty = -0.1f;
  EXPECT_TRUE(s.penalises_generated());
  s = SamplingParams{};
  s.logprobs = true;
  EXPECT_FALSE(s.argmax_only());
  s = SamplingParams{};
  s.temperature = 0.5f;
  EXPECT_FALSE(s.argmax_only());
}

}  // namespace
}  // namespace flover
