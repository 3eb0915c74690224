#include "coordinator/openai/chat_template.h"

#include "common/check.h"
#include "coordinator/openai/api_error.h"

namespace flover::openai {

namespace {

std::string Advice() {
  return "set model.chat_template in the cluster config to one of " + KnownChatTemplates() + " or to a Jinja text";
}

bool IsBlank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

std::variant<ChatPrompt, ApiError> RenderChatPrompt(const ServedModel& model, const std::vector<ChatMessage>& messages,
                                                    bool add_generation_prompt) {
  FLOVER_CHECK(model.tokenizer != nullptr) << "RenderChatPrompt needs the cluster's tokenizer";
  if (IsBlank(model.chat_template))
    return InvalidParam("messages", "this model has no chat template (none in the cluster config, none in the model "
                                    "file); " + Advice());
  Result<ChatTemplate> parsed = ChatTemplate::Parse(model.chat_template, ChatTokensOf(*model.tokenizer));
  if (!parsed.ok())
    return InvalidParam("messages", "the model's chat template cannot be used: " + parsed.status().message() + "; " +
                                        Advice());
  Result<std::string> text = parsed->Render(messages, add_generation_prompt);
  if (!text.ok()) return InvalidParam("messages", text.status().message());
  return ChatPrompt{std::move(text).value(), parsed->end_of_turn()};
}

}  // namespace flover::openai
