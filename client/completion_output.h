// The JSON shape of one completed prompt, shared by `flover run` and `flover generate`:
// {"prompt", "text", "tokens", "finish_reason", "prompt_tokens", "completion_tokens"},
// and the lines of `flover generate --stream --json` (NDJSON: one object per line).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace flover {

nlohmann::json CompletionObject(const std::string& prompt, const std::string& text, const std::vector<int>& tokens,
                                const std::string& finish_reason, size_t prompt_tokens);

// CompletionObject on one line. Text that is not valid UTF-8 is written with U+FFFD.
std::string CompletionJson(const std::string& prompt, const std::string& text, const std::vector<int>& tokens,
                           const std::string& finish_reason, size_t prompt_tokens);

// `object` on one line, as CompletionJson writes it.
std::string JsonLine(const nlohmann::json& object);

// Parses "1,301,295" into ids; false on anything that is not a comma-separated int list.
bool ParseTokenIds(const std::string& text, std::vector<int>* ids);

}  // namespace flover
