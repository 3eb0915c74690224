#include "coordinator/openai/chat_template.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace flover::openai {

namespace {

constexpr std::array<ChatFamily, 7> kFamilies = {ChatFamily::kChatml,  ChatFamily::kLlama2, ChatFamily::kLlama3,
                                                 ChatFamily::kMistral, ChatFamily::kZephyr, ChatFamily::kGemma,
                                                 ChatFamily::kPhi3};

bool Contains(std::string_view text, std::string_view marker) { return text.find(marker) != std::string_view::npos; }

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string Trim(const std::string& s) {
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  auto begin = std::find_if_not(s.begin(), s.end(), space);
  auto end = std::find_if_not(s.rbegin(), std::string::const_reverse_iterator(begin), space).base();
  return std::string(begin, end);
}

// The messages with system messages folded into the next user message (`separator`
// between them), for families without a system role.
std::vector<ChatMessage> FoldSystem(const std::vector<ChatMessage>& messages, const std::string& open,
                                    const std::string& close) {
  std::vector<ChatMessage> out;
  std::string pending;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      pending += open + m.content + close;
    } else if (m.role == "user" && !pending.empty()) {
      out.push_back({m.role, pending + m.content});
      pending.clear();
    } else {
      out.push_back(m);
    }
  }
  if (!pending.empty()) out.push_back({"user", pending});
  return out;
}

// <|role|>\ncontent<end>\n per message (zephyr, phi3).
std::string RenderTagged(const std::vector<ChatMessage>& messages, const std::string& end, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) out += "<|" + m.role + "|>\n" + m.content + end + "\n";
  if (add_generation_prompt) out += "<|assistant|>\n";
  return out;
}

}  // namespace

const char* ChatFamilyName(ChatFamily family) {
  switch (family) {
    case ChatFamily::kChatml: return "chatml";
    case ChatFamily::kLlama2: return "llama2";
    case ChatFamily::kLlama3: return "llama3";
    case ChatFamily::kMistral: return "mistral";
    case ChatFamily::kZephyr: return "zephyr";
    case ChatFamily::kGemma: return "gemma";
    case ChatFamily::kPhi3: return "phi3";
  }
  return "?";
}

std::string KnownChatFamilies() {
  std::string names;
  for (ChatFamily f : kFamilies) names += std::string(names.empty() ? "" : ", ") + ChatFamilyName(f);
  return names;
}

std::variant<ChatFamily, std::string> FindChatFamily(std::string_view chat_template) {
  const std::string advice = "set model.chat_template in the cluster config to one of " + KnownChatFamilies() +
                             " (or to a Jinja template of one of them)";
  if (Trim(std::string(chat_template)).empty())
    return "this model has no chat template (none in the cluster config, none in the model file); " + advice;
  const std::string name = Lower(Trim(std::string(chat_template)));
  for (ChatFamily f : kFamilies)
    if (name == ChatFamilyName(f)) return f;
  const std::string_view t = chat_template;
  if (Contains(t, "<|im_start|>")) return ChatFamily::kChatml;
  if (Contains(t, "<|start_header_id|>")) return ChatFamily::kLlama3;
  if (Contains(t, "<start_of_turn>")) return ChatFamily::kGemma;
  if (Contains(t, "<|user|>")) return Contains(t, "<|end|>") ? ChatFamily::kPhi3 : ChatFamily::kZephyr;
  if (Contains(t, "[INST]")) return Contains(t, "<<SYS>>") ? ChatFamily::kLlama2 : ChatFamily::kMistral;
  const bool jinja = Contains(t, "{%") || Contains(t, "{{");
  if (jinja) return "the model's chat template (a Jinja text) is not one of the families Flover renders; " + advice;
  return "model.chat_template '" + std::string(t.substr(0, 64)) + "' is not a known chat template family; " + advice;
}

std::string RenderChat(ChatFamily family, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  switch (family) {
    case ChatFamily::kChatml:
      for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case ChatFamily::kLlama3:
      for (const ChatMessage& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + Trim(m.content) + "<|eot_id|>";
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatFamily::kLlama2: {
      bool first = true;
      for (const ChatMessage& m : FoldSystem(messages, "<<SYS>>\n", "\n<</SYS>>\n\n")) {
        if (m.role == "user") {
          if (!first) out += "<s>";  // later turns' BOS as text; the coordinator adds the first
          out.append("[INST] ").append(Trim(m.content)).append(" [/INST]");
        } else {
          out.append(" ").append(Trim(m.content)).append(" </s>");
        }
        first = false;
      }
      return out;
    }
    case ChatFamily::kMistral:
      for (const ChatMessage& m : FoldSystem(messages, "", "\n\n"))
        out += m.role == "user" ? "[INST] " + m.content + " [/INST]" : m.content + "</s>";
      return out;
    case ChatFamily::kZephyr: return RenderTagged(messages, "</s>", add_generation_prompt);
    case ChatFamily::kPhi3: return RenderTagged(messages, "<|end|>", add_generation_prompt);
    case ChatFamily::kGemma:
      for (const ChatMessage& m : FoldSystem(messages, "", "\n\n"))
        out += "<start_of_turn>" + std::string(m.role == "assistant" ? "model" : m.role) + "\n" + Trim(m.content) +
               "<end_of_turn>\n";
      if (add_generation_prompt) out += "<start_of_turn>model\n";
      return out;
  }
  return out;
}

const char* EndOfTurn(ChatFamily family) {
  switch (family) {
    case ChatFamily::kChatml: return "<|im_end|>";
    case ChatFamily::kLlama3: return "<|eot_id|>";
    case ChatFamily::kGemma: return "<end_of_turn>";
    case ChatFamily::kPhi3: return "<|end|>";
    case ChatFamily::kLlama2:
    case ChatFamily::kMistral:
    case ChatFamily::kZephyr: return "</s>";
  }
  return "</s>";
}

}  // namespace flover::openai
