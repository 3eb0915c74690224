#include "client/completion_output.h"

#include <sstream>

namespace flover {

nlohmann::json CompletionObject(const std::string& prompt, const std::string& text, const std::vector<int>& tokens,
                                const std::string& finish_reason, size_t prompt_tokens) {
  nlohmann::json j;
  j["prompt"] = prompt;
  j["text"] = text;
  j["tokens"] = tokens;
  j["finish_reason"] = finish_reason;
  j["prompt_tokens"] = prompt_tokens;
  j["completion_tokens"] = tokens.size();
  return j;
}

std::string JsonLine(const nlohmann::json& object) {
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string CompletionJson(const std::string& prompt, const std::string& text, const std::vector<int>& tokens,
                           const std::string& finish_reason, size_t prompt_tokens) {
  return JsonLine(CompletionObject(prompt, text, tokens, finish_reason, prompt_tokens));
}

bool ParseTokenIds(const std::string& text, std::vector<int>* ids) {
  ids->clear();
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      const int id = std::stoi(item, &used);
      if (item.find_first_not_of(' ', used) != std::string::npos) return false;
      ids->push_back(id);
    } catch (const std::exception&) {
      return false;
    }
  }
  return !ids->empty();
}

}  // namespace flover
