// The served model's chat template for /v1/chat/completions
// (coordinator/openai/chat_template.h): built-in names and Jinja texts rendered, and
// every failure a 400 on `messages` that says what to do. The templates themselves are
// tested in tests/common (chat_template_test.cc, jinja_golden_test.cc).
#include "coordinator/openai/chat_template.h"

#include <gtest/gtest.h>

#include "tests/coordinator/openai_test_util.h"

namespace flover::openai {
namespace {

using testing::Model;

const std::vector<ChatMessage> kChatConversation = {
    {"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};

ChatPrompt PromptOf(std::variant<ChatPrompt, ApiError> rendered) {
  if (const ApiError* e = std::get_if<ApiError>(&rendered)) {
    ADD_FAILURE() << e->status << " " << e->param << ": " << e->message;
    return {};
  }
  return std::get<ChatPrompt>(std::move(rendered));
}

ApiError RenderErrorOf(std::variant<ChatPrompt, ApiError> rendered) {
  if (ApiError* e = std::get_if<ApiError>(&rendered)) return std::move(*e);
  ADD_FAILURE() << "rendered: " << std::get<ChatPrompt>(rendered).text;
  return {};
}

TEST(OpenAiChatTemplate, BuiltinNamesAndTheirStopStrings) {
  ChatPrompt p = PromptOf(RenderChatPrompt(Model(" Llama2 "), kChatConversation, true));
  // The leading BOS is the cluster's to add; the later one is text, as in the family's template.
  EXPECT_EQ(p.text, "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]");
  EXPECT_EQ(p.end_of_turn, std::vector<std::string>{"</s>"});
  p = PromptOf(RenderChatPrompt(Model("gemma"), kChatConversation, false));
  EXPECT_EQ(p.text,
            "<start_of_turn>user\nS\n\nU1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n<start_of_turn>user\n"
            "U2<end_of_turn>\n");
  EXPECT_EQ(p.end_of_turn, std::vector<std::string>{"<end_of_turn>"});
}

TEST(OpenAiChatTemplate, AModelsOwnJinjaTextIsRenderedAsIs) {
  // Not a family: rendered all the same, with the tokenizer's BOS and EOS texts.
  const ChatPrompt p = PromptOf(RenderChatPrompt(
      Model("{{ bos_token }}{% for m in messages %}{{ m.role | upper }}: {{ m.content }}{{ eos_token }}\n{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}"),
      {{"user", "Hi"}, {"assistant", "Hello"}}, true));
  EXPECT_EQ(p.text, "USER: Hi</s>\nASSISTANT: Hello</s>\nASSISTANT:");
  EXPECT_EQ(p.end_of_turn, std::vector<std::string>{"</s>"});
}

TEST(OpenAiChatTemplate, FailuresAre400sOnMessages) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "this model has no chat template (none in the cluster config, none in the model file); set "
           "model.chat_template in the cluster config to one of chatml, llama2, llama3, mistral, zephyr, gemma, "
           "phi3 or to a Jinja text"},
      {"vicuna", "'vicuna' is neither a built-in chat template"},
      {"{% for m in messages %}{{ m.content | wordwrap(5) }}{% endfor %}",
       "the model's chat template cannot be used: chat template: line 1, column 39: the filter 'wordwrap' is not "
       "supported; set model.chat_template"},
      {"{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
       "chat template: line 1, column 41: System role not supported"},
      {"{{ messages[0].name.first }}", "chat template: line 1, column 20: 'dict object' has no attribute 'name'"},
  };
  for (const auto& [source, message] : cases) {
    const ApiError e = RenderErrorOf(RenderChatPrompt(Model(source), kChatConversation, true));
    EXPECT_EQ(e.status, 400) << source;
    EXPECT_EQ(e.type, "invalid_request_error") << source;
    EXPECT_EQ(e.param, "messages") << source;
    EXPECT_NE(e.message.find(message), std::string::npos) << source << " -> " << e.message;
  }
}

}  // namespace
}  // namespace flover::openai
