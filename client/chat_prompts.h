// flover generate --chat: each prompt rendered as a chat conversation (one user
// message, after an optional system message) with a chat template, as
// /v1/chat/completions renders messages (common/chat_template.h).
//
// The template is --chat-template (a built-in name, or a file holding a Jinja text),
// else the model file's own, which the coordinator's status reply carries
// (ModelInfo.chat_template). The cluster config's model.chat_template is not sent to
// clients, so a cluster that relies on it (configs/local.yaml's chatml) needs
// --chat-template here too. The client has no tokenizer: bos_token and eos_token are
// "<s>" and "</s>", the texts of the llama2-style vocabularies Flover reads.
//
// Thread-safety: pure functions (ChatTemplateOfFlag reads a file).
#pragma once

#include <string>
#include <vector>

#include "common/chat_template.h"
#include "flover.pb.h"
#include "common/status.h"

namespace flover {

// The longest template file --chat-template reads.
inline constexpr size_t kMaxChatTemplateFileBytes = size_t{1} << 20;

// The template --chat-template `flag` names: a built-in template, else a file holding a
// Jinja text. InvalidArgument naming the flag when it is neither, or the text cannot be
// used.
Result<ChatTemplate> ChatTemplateOfFlag(const std::string& flag);

// The model file's own template (the status reply's ModelInfo). InvalidArgument when it
// has none (saying to pass --chat-template) or it cannot be used.
Result<ChatTemplate> ChatTemplateOfModel(const proto::ModelInfo& model);

// The prompt text of each of `prompts` as a conversation: a system message `system`
// (when not empty), then the prompt as the user's message, and the assistant's turn
// opened. The template's refusal (raise_exception) is InvalidArgument with its message.
Result<std::vector<std::string>> RenderChatPrompts(const ChatTemplate& chat_template,
                                                   const std::vector<std::string>& prompts, const std::string& system);

}  // namespace flover
