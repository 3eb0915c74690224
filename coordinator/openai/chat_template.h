// Chat templates: how a conversation becomes one prompt text. No C++ Jinja engine is
// packaged for Debian, so Flover renders the common template FAMILIES natively, each
// exactly as its reference Jinja template renders it, except the leading BOS token
// (the coordinator adds BOS when it tokenizes the text).
//
// model.chat_template (or the model's own metadata) names a family ("chatml", ...) or
// holds a Jinja text, which is mapped to a family by its markers.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace flover::openai {

enum class ChatFamily { kChatml, kLlama2, kLlama3, kMistral, kZephyr, kGemma, kPhi3 };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// "chatml", "llama2", ...
const char* ChatFamilyName(ChatFamily family);
// Every family name, ", "-separated, for messages.
std::string KnownChatFamilies();

// The family `chat_template` names (a family name, any case) or whose markers its Jinja
// text holds (<|im_start|> chatml, <|start_header_id|> llama3, <start_of_turn> gemma,
// <|user|> with <|end|> phi3, <|user|> zephyr, [INST] with <<SYS>> llama2, [INST]
// mistral). Otherwise a message for the user: none configured, or not recognised,
// naming model.chat_template and the known families.
std::variant<ChatFamily, std::string> FindChatFamily(std::string_view chat_template);

// The prompt text of `messages` in `family`; with add_generation_prompt, followed by
// what opens the assistant's turn. Families without a system role (llama2, mistral,
// gemma) put system text at the start of the first user message.
std::string RenderChat(ChatFamily family, const std::vector<ChatMessage>& messages, bool add_generation_prompt);

// The text that ends a turn in `family` ("<|im_end|>", ...): a stop string of every
// chat request, so a model that writes it ends its answer there.
const char* EndOfTurn(ChatFamily family);

}  // namespace flover::openai
