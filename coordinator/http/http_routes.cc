#include "coordinator/http/http_routes.h"

#include <algorithm>
#include <array>

#include "common/utf8.h"

namespace flover::http {
namespace {

struct RouteEntry {
  std::string_view path;
  std::string_view method;
  Route route;
  bool needs_key;
};

constexpr std::array<RouteEntry, 5> kRoutes = {{
    {"/v1/completions", "POST", Route::kCompletions, true},
    {"/v1/chat/completions", "POST", Route::kChatCompletions, true},
    {"/v1/models", "GET", Route::kModels, true},
    {"/health", "GET", Route::kHealth, false},
    {"/metrics", "GET", Route::kMetrics, false},
}};

openai::ApiError Error(int status, std::string type, std::string message, std::string code = {}) {
  return openai::ApiError{
      .status = status, .type = std::move(type), .message = std::move(message), .param = {}, .code = std::move(code)};
}

}  // namespace

bool KeyMatches(std::string_view presented, const std::vector<std::string>& keys) {
  bool any = false;
  for (const std::string& key : keys) {
    // Every byte of the key is looked at, matching or not; a length difference is one
    // more difference, not an early exit.
    unsigned diff = presented.size() == key.size() ? 0u : 1u;
    for (size_t i = 0; i < key.size(); ++i) {
      const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
      diff |= p ^ static_cast<unsigned char>(key[i]);
    }
    any |= diff == 0;
  }
  return any;
}

Resolution Resolve(std::string_view method, std::string_view target, std::string_view authorization,
                   const std::vector<std::string>& api_keys) {
  const std::string_view path = target.substr(0, std::min(target.find('?'), target.size()));
  // How messages name the path: valid UTF-8 (JSON needs it), at most kShownPathBytes.
  constexpr size_t kShownPathBytes = 200;
  const std::string shown = ToValidUtf8(path.substr(0, kShownPathBytes)) + (path.size() > kShownPathBytes ? "..." : "");
  const std::string shown_method = ToValidUtf8(method.substr(0, 32));
  Resolution r;
  const auto same_path = [&](const RouteEntry& e) { return e.path == path; };
  const auto it = std::find_if(kRoutes.begin(), kRoutes.end(), same_path);
  if (it == kRoutes.end()) {
    r.error = Error(404, "invalid_request_error", "no route " + shown +
                                                      " (routes: POST /v1/completions, POST /v1/chat/completions, "
                                                      "GET /v1/models, GET /health, GET /metrics)",
                    "not_found");
    return r;
  }
  if (it->method != method) {
    r.allow = std::string(it->method);
    r.error = Error(405, "invalid_request_error",
                    shown + " takes " + r.allow + ", not " + shown_method, "method_not_allowed");
    return r;
  }
  if (it->needs_key && !api_keys.empty()) {
    static constexpr std::string_view kBearer = "Bearer ";
    const bool bearer = authorization.size() > kBearer.size() && authorization.substr(0, kBearer.size()) == kBearer;
    if (!bearer || !KeyMatches(authorization.substr(kBearer.size()), api_keys)) {
      r.error = Error(401, "invalid_request_error",
                      bearer ? "incorrect API key provided"
                             : "no API key provided: send the header 'Authorization: Bearer <key>' (http.api_keys)",
                      "invalid_api_key");
      return r;
    }
  }
  r.route = it->route;
  return r;
}

}  // namespace flover::http
