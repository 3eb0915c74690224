// The HTTP server's routes: which paths exist, with which method, and who may call them.
// Pure decisions on a request's method, target and Authorization header (no I/O), so the
// fuzz harness and the tests drive them directly.
//
//   POST /v1/completions, POST /v1/chat/completions, GET /v1/models   need a key when
//                                                                     api_keys is set
//   GET /health, GET /metrics                                         always open
//
// An unknown path is 404, a known path with another method 405 (with the Allow header's
// value), a /v1 route without `Authorization: Bearer <one of api_keys>` 401. Keys are
// compared in constant time (the time does not tell how much of a key matched).
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/openai/exchange.h"

namespace flover::http {

enum class Route { kCompletions, kChatCompletions, kModels, kHealth, kMetrics };

// What a request head asks for: `route`, or `error` (and for 405 `allow`) to answer.
struct Resolution {
  std::optional<Route> route;
  openai::ApiError error;
  std::string allow;  // 405: the methods the path takes ("POST")
};

// `target`: the request target as sent ("/v1/models?x=1": the query is ignored).
// `authorization`: the Authorization header's value ("" when absent).
Resolution Resolve(std::string_view method, std::string_view target, std::string_view authorization,
                   const std::vector<std::string>& api_keys);

// True when `presented` equals one of `keys`. Constant time in the content of the keys:
// every key is compared over its whole length, whatever matched first.
bool KeyMatches(std::string_view presented, const std::vector<std::string>& keys);

}  // namespace flover::http
