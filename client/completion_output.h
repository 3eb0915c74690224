// The JSON shape of one completed prompt, shared by `flover run` and `flover generate`:
// {"prompt", "text", "tokens", "finish_reason", "prompt_tokens", "completion_tokens"}.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace flover {

inline std::string CompletionJson(const std::string& prompt, const std::string& text, const std::vector<int>& tokens,
                                  const std::string& finish_reason, size_t prompt_tokens) {
  nlohmann::json j;
  j["prompt"] = prompt;
  j["text"] = text;
  j["tokens"] = tokens;
  j["finish_reason"] = finish_reason;
  j["prompt_tokens"] = prompt_tokens;
  j["completion_tokens"] = tokens.size();
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Parses "1,301,295" into ids; false on anything that is not a comma-separated int list.
bool ParseTokenIds(const std::string& text, std::vector<int>* ids);

}  // namespace flover
