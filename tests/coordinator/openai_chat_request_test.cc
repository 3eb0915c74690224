// /v1/chat/completions request parsing (coordinator/openai).
#include <gtest/gtest.h>

#include "tests/coordinator/openai_test_util.h"

namespace flover::openai {
namespace {

using testing::ErrorOf;
using testing::Model;

std::vector<proto::SubmitRequest> ChatSubmits(const std::string& body, const ServedModel& model = Model()) {
  return testing::SubmitsOf(StartChatCompletions(body, model));
}

constexpr const char* kUser = R"("messages":[{"role":"user","content":"Hi"}])";

TEST(OpenAiChat, MessagesAreRenderedWithTheTemplate) {
  const std::vector<proto::SubmitRequest> s = ChatSubmits(R"({"model":"stories260K","messages":[
      {"role":"developer","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Hello "},{"type":"text","text":"there"}]},
      {"role":"assistant","content":null},
      {"role":"user","content":"Tell a story","name":"ann"}]})");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].text(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n"
            "<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\nTell a story<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(s[0].stop().max_tokens(), 2147483647);  // no limit asked: until the context is full
  EXPECT_FLOAT_EQ(s[0].sampling().temperature(), 1.0f);
  ASSERT_EQ(s[0].stop().stop_strings_size(), 1);
  EXPECT_EQ(s[0].stop().stop_strings(0), "<|im_end|>");
}

TEST(OpenAiChat, FieldsReachTheSubmit) {
  std::vector<proto::SubmitRequest> s = ChatSubmits(std::string("{") + kUser + R"(,"max_completion_tokens":5,
      "max_tokens":9,"logprobs":true,"top_logprobs":2,"n":2,"seed":7,"stop":"x","add_generation_prompt":false,
      "tool_choice":"none","response_format":{"type":"text"}})");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].text(), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(s[1].stop().max_tokens(), 5);  // max_completion_tokens is preferred
  EXPECT_TRUE(s[1].sampling().logprobs());
  EXPECT_EQ(s[1].sampling().top_logprobs(), 2);
  EXPECT_EQ(s[0].sampling().seed(), 7u);
  EXPECT_EQ(s[1].sampling().seed(), 8u);
  ASSERT_EQ(s[0].stop().stop_strings_size(), 2);
  EXPECT_EQ(s[0].stop().stop_strings(0), "x");
  EXPECT_EQ(s[0].stop().stop_strings(1), "<|im_end|>");
  s = ChatSubmits(std::string("{") + kUser + R"(,"max_tokens":9,"logprobs":true})");
  EXPECT_EQ(s[0].stop().max_tokens(), 9);
  EXPECT_EQ(s[0].sampling().top_logprobs(), 0);
}

TEST(OpenAiChat, BadMessagesNameTheField) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {R"({})", "messages", "messages is required"},
      {R"({"messages":"hi"})", "messages", "must be an array, got a string"},
      {R"({"messages":[]})", "messages", "must not be empty"},
      {R"({"messages":[3]})", "messages[0]", "must be an object, got 3"},
      {R"({"messages":[{"role":"user","content":"a"},{"role":"tool","content":"b"}]})", "messages[1].role",
       "got \"tool\""},
      {R"({"messages":[{"content":"a"}]})", "messages[0].role", "got none"},
      {R"({"messages":[{"role":5,"content":"a"}]})", "messages[0].role", "must be a string, got 5"},
      {R"({"messages":[{"role":"user"}]})", "messages[0].content", "is required"},
      {R"({"messages":[{"role":"user","content":7}]})", "messages[0].content", "string or an array of text parts"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})",
       "messages[0].content[0].type", "only text parts"},
      {R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})", "messages[0].content[0].text", "is required"},
      {R"({"messages":[{"role":"user","content":["a"]}]})", "messages[0].content[0]", "must be an object"},
      {R"({"messages":[{"role":"assistant","content":"a","tool_calls":[{"id":"1"}]}]})", "messages[0].tool_calls",
       "not supported"},
  };
  for (const auto& [body, param, part] : cases) {
    testing::ExpectRefused(StartChatCompletions(body, Model()), body, param, part);
  }
}

TEST(OpenAiChat, BadFieldsNameTheField) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {R"("logprobs":2)", "logprobs", "must be true or false, got 2"},
      {R"("top_logprobs":2)", "top_logprobs", "needs logprobs: true"},
      {R"("logprobs":true,"top_logprobs":21)", "top_logprobs", "from 0 to 20"},
      {R"("max_completion_tokens":0)", "max_completion_tokens", "from 1 to"},
      {R"("max_tokens":-3)", "max_tokens", "from 1 to"},
      {R"("add_generation_prompt":"yes")", "add_generation_prompt", "true or false"},
      {R"("tools":[{"type":"function"}])", "tools", "not supported"},
      {R"("tool_choice":"auto")", "tool_choice", "not supported"},
      {R"("response_format":{"type":"json_object"})", "response_format", "not supported"},
      {R"("temperature":[1])", "temperature", "got an array"},
  };
  for (const auto& [fields, param, part] : cases) {
    const std::string body = std::string("{") + kUser + "," + fields + "}";
    testing::ExpectRefused(StartChatCompletions(body, Model()), body, param, part);
  }
  EXPECT_EQ(ErrorOf(StartChatCompletions(std::string(R"({"model":"x",)") + kUser + "}", Model())).status, 404);
}

TEST(OpenAiChat, NeedsATemplateAndATokenizer) {
  const std::string body = std::string("{") + kUser + "}";
  ApiError e = ErrorOf(StartChatCompletions(body, Model("")));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("model.chat_template"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("chatml, llama2, llama3, mistral, zephyr, gemma, phi3"), std::string::npos) << e.message;
  ServedModel model = Model();
  model.tokenizer = nullptr;
  e = ErrorOf(StartChatCompletions(body, model));
  EXPECT_NE(e.message.find("tokenizer"), std::string::npos) << e.message;
  const std::vector<proto::SubmitRequest> s = ChatSubmits(body, Model("llama3"));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].stop().stop_strings(0), "<|eot_id|>");
}

TEST(OpenAiChat, AnyJinjaTemplateIsRendered) {
  const std::string body = std::string("{") + kUser + "}";
  const std::vector<proto::SubmitRequest> s =
      ChatSubmits(body, Model("{% for m in messages %}{{ m.content }}{% endfor %}"));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].text(), "Hi");
  ASSERT_EQ(s[0].stop().stop_strings_size(), 1);
  EXPECT_EQ(s[0].stop().stop_strings(0), "</s>");  // no marker in the template: the EOS text
}

TEST(OpenAiChat, TheTemplatesRefusalReachesTheClient) {
  const std::string body =
      R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]})";
  const ApiError e = ErrorOf(StartChatCompletions(
      body, Model("{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
                  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
                  "{% endif %}{% endfor %}")));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "messages");
  EXPECT_NE(e.message.find("Conversation roles must alternate user/assistant/user/assistant/..."), std::string::npos)
      << e.message;
}

}  // namespace
}  // namespace flover::openai
