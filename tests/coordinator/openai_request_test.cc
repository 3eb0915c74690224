// /v1/completions request parsing, errors and /v1/models (coordinator/openai).
#include <gtest/gtest.h>

#include <set>

#include "coordinator/openai/api_error.h"
#include "tests/coordinator/openai_test_util.h"

namespace flover::openai {
namespace {

using nlohmann::json;
using testing::ErrorOf;
using testing::Model;

std::vector<proto::SubmitRequest> Submits(const std::string& body, const ServedModel& model = Model()) {
  return testing::SubmitsOf(StartCompletions(body, model));
}

TEST(OpenAiErrors, ErrorBodyHasOpenAiShapeWithNulls) {
  const json body = json::parse(ErrorBody(InvalidParam("n", "n must be ...")));
  EXPECT_EQ(body, json::parse(R"({"error":{"message":"n must be ...","type":"invalid_request_error","param":"n","code":null}})"));
  const json core = json::parse(ErrorBody(ErrorFromCore([] {
    proto::Error e;
    e.set_code("ResourceExhausted");
    e.set_message("queue full");
    return e;
  }())));
  EXPECT_EQ(core["error"]["param"], nullptr);
  EXPECT_EQ(core["error"]["code"], "ResourceExhausted");
  EXPECT_EQ(core["error"]["message"], "queue full");
}

TEST(OpenAiErrors, CoreCodesMapToStatuses) {
  const std::vector<std::pair<std::string, int>> cases = {
      {"InvalidArgument", 400}, {"ResourceExhausted", 429}, {"Unavailable", 503}, {"DeadlineExceeded", 504},
      {"PermissionDenied", 403}, {"NotFound", 404},         {"Internal", 500},    {"Cancelled", 500}};
  for (const auto& [code, status] : cases) {
    proto::Error e;
    e.set_code(code);
    EXPECT_EQ(ErrorFromCore(e).status, status) << code;
  }
}

TEST(OpenAiModels, ListShape) {
  const json body = json::parse(ModelsBody(Model(), 1700000000));
  EXPECT_EQ(body, json::parse(R"({"object":"list","data":[{"id":"stories260K","object":"model",
                                  "created":1700000000,"owned_by":"flover"}]})"));
}

TEST(OpenAiCompletions, BodyMustBeAJsonObject) {
  for (const char* body : {"", "{", "[1]", "\"x\"", "{\"prompt\": \"\xff\"}"}) {
    const ApiError e = ErrorOf(StartCompletions(body, Model()));
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, "") << body;
  }
  EXPECT_NE(ErrorOf(StartCompletions("[1]", Model())).message.find("JSON object, got an array"), std::string::npos);
}

TEST(OpenAiCompletions, ModelMustBeTheServedOne) {
  const ApiError e = ErrorOf(StartCompletions(R"({"model":"gpt-4","prompt":"x"})", Model()));
  EXPECT_EQ(e.status, 404);
  EXPECT_EQ(e.code, "model_not_found");
  EXPECT_EQ(e.param, "model");
  EXPECT_NE(e.message.find("gpt-4"), std::string::npos);
  EXPECT_EQ(Submits(R"({"model":"stories260K","prompt":"x"})").size(), 1u);
  EXPECT_EQ(Submits(R"({"prompt":"x"})").size(), 1u);
}

struct BadField {
  const char* fields;  // spliced into {"prompt":"x", ...}
  const char* param;
  const char* message_part;
};

TEST(OpenAiCompletions, WrongTypesAndRangesNameTheField) {
  const std::vector<BadField> cases = {
      {R"("temperature":"hot")", "temperature", "temperature must be a number, got a string"},
      {R"("temperature":2.5)", "temperature", "at most 2, got 2.5"},
      {R"("temperature":-0.1)", "temperature", "of at least 0"},
      {R"("top_p":0)", "top_p", "greater than 0"},
      {R"("top_p":1.5)", "top_p", "at most 1"},
      {R"("top_k":-2)", "top_k", "from -1 to"},
      {R"("top_k":1.5)", "top_k", "must be an integer, got 1.5"},
      {R"("n":0)", "n", "n must be an integer from 1 to 16, got 0"},
      {R"("n":17)", "n", "from 1 to 16"},
      {R"("n":true)", "n", "must be an integer, got true"},
      {R"("max_tokens":0)", "max_tokens", "from 1 to 2147483647"},
      {R"("max_tokens":"16")", "max_tokens", "must be an integer, got a string"},
      {R"("max_tokens":3000000000)", "max_tokens", "from 1 to 2147483647"},
      {R"("logprobs":21)", "logprobs", "from 0 to 20"},
      {R"("logprobs":true)", "logprobs", "must be an integer, got true"},
      {R"("echo":"yes")", "echo", "must be true or false, got a string"},
      {R"("stream":1)", "stream", "must be true or false, got 1"},
      {R"("stream_options":{"include_usage":true})", "stream_options", "only allowed when stream is true"},
      {R"("stream":true,"stream_options":3)", "stream_options", "must be an object"},
      {R"("stream":true,"stream_options":{"include_usage":"yes"})", "stream_options.include_usage",
       "stream_options.include_usage must be true or false"},
      {R"("stop":["a","b","c","d","e"])", "stop", "at most 4 strings, got 5"},
      {R"("stop":3)", "stop", "a string or an array of strings, got 3"},
      {R"("stop":["a",1])", "stop", "stop[1] must be a string"},
      {R"("presence_penalty":3)", "presence_penalty", "at most 2"},
      {R"("frequency_penalty":-2.5)", "frequency_penalty", "of at least -2"},
      {R"("repetition_penalty":0)", "repetition_penalty", "greater than 0"},
      {R"("seed":"x")", "seed", "must be an integer, got a string"},
      {R"("seed":1.5)", "seed", "must be an integer"},
      {R"("user":5)", "user", "must be a string"},
      {R"("ignore_eos":"no")", "ignore_eos", "true or false"},
      {R"("model":3)", "model", "must be a string"},
      {R"("logit_bias":{"1":2})", "logit_bias", "not supported"},
      {R"("suffix":"end")", "suffix", "not supported"},
      {R"("best_of":2)", "best_of", "not supported"},
      {R"("echo":true,"logprobs":0)", "echo", "echo with logprobs is not supported"},
  };
  for (const BadField& c : cases) {
    const std::string body = std::string(R"({"prompt":"x",)") + c.fields + "}";
    testing::ExpectRefused(StartCompletions(body, Model()), body, c.param, c.message_part);
  }
}

TEST(OpenAiCompletions, PromptFormsAndTheirErrors) {
  const std::vector<BadField> cases = {
      {R"("max_tokens":4)", "prompt", "prompt is required"},
      {R"("prompt":5)", "prompt", "got 5"},
      {R"("prompt":[])", "prompt", "must not be an empty array"},
      {R"("prompt":[[]])", "prompt", "prompt[0] is an empty array"},
      {R"("prompt":[-1])", "prompt", "prompt[0] must be a token id"},
      {R"("prompt":[1,"a"])", "prompt", "prompt[0] is 1"},
      {R"("prompt":["a",3])", "prompt", "prompt[1] is 3"},
      {R"("prompt":[[1,2],[5,-1]])", "prompt[1]", "prompt[1][1] must be a token id"},
      {R"("prompt":[[1,2.5]])", "prompt", "not all integers"},
  };
  for (const BadField& c : cases) {
    const std::string body = std::string("{") + c.fields + "}";
    testing::ExpectRefused(StartCompletions(body, Model()), body, c.param, c.message_part);
  }
  std::vector<proto::SubmitRequest> s = Submits(R"({"prompt":"Once upon"})");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].text(), "Once upon");
  s = Submits(R"({"prompt":[1, 403, 407]})");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(std::vector<int>(s[0].token_ids().ids().begin(), s[0].token_ids().ids().end()),
            (std::vector<int>{1, 403, 407}));
  s = Submits(R"({"prompt":["a","b"]})");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].text(), "a");
  EXPECT_EQ(s[1].text(), "b");
  s = Submits(R"({"prompt":[[1,5],[1,6,7]]})");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].token_ids().ids_size(), 3);
  s = Submits(R"({"prompt":["a",[1,6]]})");  // mixed forms, one per prompt
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(s[0].has_text() || s[0].prompt_case() == proto::SubmitRequest::kText);
  EXPECT_EQ(s[1].prompt_case(), proto::SubmitRequest::kTokenIds);
}

TEST(OpenAiCompletions, EveryFieldReachesTheSubmit) {
  const std::vector<proto::SubmitRequest> s = Submits(R"({"model":"stories260K","prompt":"x","max_tokens":7,
      "temperature":0.5,"top_p":0.9,"top_k":40,"seed":42,"stop":["a","bc"],"presence_penalty":0.5,
      "frequency_penalty":-1,"repetition_penalty":1.2,"logprobs":3,"ignore_eos":true,"user":"u",
      "stream":true,"stream_options":{"include_usage":true},"some_future_field":{"x":1}})");
  ASSERT_EQ(s.size(), 1u);
  const proto::SubmitRequest& r = s[0];
  EXPECT_TRUE(r.client_request_id().empty());
  EXPECT_FLOAT_EQ(r.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(r.sampling().top_p(), 0.9f);
  EXPECT_EQ(r.sampling().top_k(), 40);
  EXPECT_EQ(r.sampling().seed(), 42u);
  EXPECT_FLOAT_EQ(r.sampling().presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(r.sampling().frequency_penalty(), -1.0f);
  EXPECT_FLOAT_EQ(r.sampling().repetition_penalty(), 1.2f);
  EXPECT_TRUE(r.sampling().logprobs());
  EXPECT_EQ(r.sampling().top_logprobs(), 3);
  EXPECT_EQ(r.stop().max_tokens(), 7);
  ASSERT_EQ(r.stop().stop_strings_size(), 2);
  EXPECT_EQ(r.stop().stop_strings(1), "bc");
  EXPECT_TRUE(r.stop().ignore_eos());
  EXPECT_TRUE(r.stream());
  EXPECT_EQ(r.timeout_ms(), 600000u);
}

TEST(OpenAiCompletions, DefaultsAreOpenAis) {
  const std::vector<proto::SubmitRequest> s =
      Submits(R"({"prompt":"x","max_tokens":null,"temperature":null,"stop":"","top_k":-1})");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].stop().max_tokens(), 16);
  EXPECT_FLOAT_EQ(s[0].sampling().temperature(), 1.0f);
  EXPECT_FLOAT_EQ(s[0].sampling().top_p(), 1.0f);
  EXPECT_FLOAT_EQ(s[0].sampling().repetition_penalty(), 1.0f);
  EXPECT_EQ(s[0].sampling().top_k(), 0);
  EXPECT_FALSE(s[0].sampling().logprobs());
  EXPECT_EQ(s[0].stop().stop_strings_size(), 0);
  EXPECT_FALSE(s[0].stream());
  EXPECT_EQ(Submits(R"({"prompt":"x","stop":"The"})")[0].stop().stop_strings(0), "The");
  EXPECT_EQ(Submits(R"({"prompt":"x","max_tokens":16.0})")[0].stop().max_tokens(), 16);
}

TEST(OpenAiCompletions, NChoicesPerPromptWithConsecutiveSeeds) {
  const std::vector<proto::SubmitRequest> s = Submits(R"({"prompt":["a","b"],"n":3,"seed":10})");
  ASSERT_EQ(s.size(), 6u);
  for (size_t i = 0; i < s.size(); ++i) {
    EXPECT_EQ(s[i].text(), i < 3 ? "a" : "b") << i;  // index = prompt_index * n + i
    EXPECT_EQ(s[i].sampling().seed(), 10u + i % 3) << i;
  }
  EXPECT_EQ(Submits(R"({"prompt":"x","seed":-1})")[0].sampling().seed(), ~uint64_t{0});
  // Without a seed every choice draws its own.
  const std::vector<proto::SubmitRequest> unseeded = Submits(R"({"prompt":"a","n":8})");
  std::set<uint64_t> seeds;
  for (const proto::SubmitRequest& r : unseeded) seeds.insert(r.sampling().seed());
  EXPECT_EQ(seeds.size(), 8u);
  const ApiError e = ErrorOf(StartCompletions(R"({"prompt":["a","b","c"],"n":6})", Model()));
  EXPECT_EQ(e.param, "n");
  EXPECT_NE(e.message.find("3 prompts x n=6 = 18 choices"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("http.max_n"), std::string::npos) << e.message;
}

TEST(OpenAiCompletions, WithoutATokenizerOnlyTokenPromptsWork) {
  ServedModel model = Model();
  model.tokenizer = nullptr;
  ApiError e = ErrorOf(StartCompletions(R"({"prompt":"x"})", model));
  EXPECT_EQ(e.param, "prompt");
  EXPECT_NE(e.message.find("this cluster has none"), std::string::npos) << e.message;
  e = ErrorOf(StartCompletions(R"({"prompt":[1,2],"stop":"x"})", model));
  EXPECT_EQ(e.param, "stop");
  e = ErrorOf(StartCompletions(R"({"prompt":[1,2],"echo":true})", model));
  EXPECT_EQ(e.param, "echo");
  EXPECT_EQ(Submits(R"({"prompt":[1,2]})", model).size(), 1u);
}

}  // namespace
}  // namespace flover::openai
