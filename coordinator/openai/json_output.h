// How the OpenAI layer writes JSON and server-sent events: always valid UTF-8 (bytes
// that are not become U+FFFD), keys in the order they were set (OpenAI's order), and
// fresh response ids.
//
// Thread-safety: pure functions, except NewResponseId, which uses a thread-local
// generator.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace flover::openai {

using Json = nlohmann::ordered_json;

// Compact JSON; invalid UTF-8 in strings is replaced, never thrown.
std::string DumpJson(const Json& value);

// One SSE event: "data: <json>\n\n".
std::string SseEvent(const Json& value);
// The stream's last event.
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// `prefix` ("cmpl-", "chatcmpl-") followed by 32 random hex digits.
std::string NewResponseId(std::string_view prefix);

// Seconds since the Unix epoch, now (a response's `created`).
int64_t UnixNow();

}  // namespace flover::openai
