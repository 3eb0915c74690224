#include "client/chat_prompts.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace flover {

Result<ChatTemplate> ChatTemplateOfFlag(const std::string& flag) {
  if (BuiltinChatTemplate(flag)) return ChatTemplate::Parse(flag, ChatTokens{});
  std::error_code ec;
  const bool is_file = std::filesystem::is_regular_file(flag, ec);
  if (!is_file)
    return InvalidArgument("--chat-template '" + flag.substr(0, 64) + "' is neither a built-in chat template (" +
                           KnownChatTemplates() + ") nor a file");
  const std::uintmax_t size = std::filesystem::file_size(flag, ec);
  if (ec) return IoError("--chat-template " + flag + ": " + ec.message());
  if (size > kMaxChatTemplateFileBytes)
    return InvalidArgument("--chat-template " + flag + " has " + std::to_string(size) + " bytes; at most " +
                           std::to_string(kMaxChatTemplateFileBytes) + " are read");
  std::ifstream in(flag, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return IoError("--chat-template " + flag + ": cannot be read");
  Result<ChatTemplate> parsed = ChatTemplate::Parse(text.str(), ChatTokens{});
  if (!parsed.ok()) return parsed.status().WithContext("--chat-template " + flag);
  return parsed;
}

Result<ChatTemplate> ChatTemplateOfModel(const proto::ModelInfo& model) {
  if (model.chat_template().find_first_not_of(" \t\r\n") == std::string::npos)
    return InvalidArgument("the cluster's model file has no chat template (a cluster config's model.chat_template is "
                           "not sent to clients): pass --chat-template with one of " + KnownChatTemplates() +
                           " or a file holding a Jinja text");
  Result<ChatTemplate> parsed = ChatTemplate::Parse(model.chat_template(), ChatTokens{});
  if (!parsed.ok()) return parsed.status().WithContext("the model file's chat template cannot be used (pass --chat-template)");
  return parsed;
}

Result<std::vector<std::string>> RenderChatPrompts(const ChatTemplate& chat_template,
                                                   const std::vector<std::string>& prompts, const std::string& system) {
  std::vector<std::string> out;
  for (const std::string& prompt : prompts) {
    std::vector<ChatMessage> messages;
    if (!system.empty()) messages.push_back({"system", system});
    messages.push_back({"user", prompt});
    Result<std::string> text = chat_template.Render(messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return text.status();
    out.push_back(std::move(text).value());
  }
  return out;
}

}  // namespace flover
