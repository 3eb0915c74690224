// The served model's chat template for /v1/chat/completions: model.chat_template (a
// built-in name or a Jinja text), else the template of the model file, rendered by the
// Jinja engine as transformers renders it (common/chat_template.h), with bos_token and
// eos_token the texts of the cluster tokenizer's BOS and EOS pieces.
//
// Every failure is a 400 invalid_request_error on `messages` whose message says what to
// do: no template (set model.chat_template), a template the engine cannot use (its line,
// column and construct), or a conversation the template refuses (its raise_exception
// message, e.g. "Conversation roles must alternate user/assistant/...").
//
// Thread-safety: pure function.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "common/chat_template.h"
#include "coordinator/openai/exchange.h"

namespace flover::openai {

using flover::ChatMessage;

struct ChatPrompt {
  std::string text;                       // without a leading BOS: the cluster adds it
  std::vector<std::string> end_of_turn;   // stop strings: the texts that end the assistant's turn
};

// REQUIRES: model.tokenizer is set.
std::variant<ChatPrompt, ApiError> RenderChatPrompt(const ServedModel& model, const std::vector<ChatMessage>& messages,
                                                    bool add_generation_prompt);

}  // namespace flover::openai
