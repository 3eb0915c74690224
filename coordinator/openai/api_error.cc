#include "coordinator/openai/api_error.h"

#include <nlohmann/json.hpp>

#include "coordinator/openai/json_output.h"

namespace flover::openai {

namespace {

const char* TypeOfStatus(int status) {
  switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    case 504: return "timeout_error";
    default: return "server_error";
  }
}

nlohmann::ordered_json NullOr(const std::string& s) { return s.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(s); }

}  // namespace

std::string ErrorBody(const ApiError& error) {
  nlohmann::ordered_json body;
  body["error"] = {{"message", error.message},
                   {"type", error.type},
                   {"param", NullOr(error.param)},
                   {"code", NullOr(error.code)}};
  return DumpJson(body);
}

ApiError InvalidParam(std::string param, std::string message) {
  return ApiError{.status = 400, .type = "invalid_request_error", .message = std::move(message),
                  .param = std::move(param), .code = ""};
}

ApiError ModelNotFound(const std::string& requested, const std::string& served) {
  return ApiError{.status = 404,
                  .type = "invalid_request_error",
                  .message = "The model `" + requested + "` does not exist; this server serves `" + served + "`",
                  .param = "model",
                  .code = "model_not_found"};
}

int StatusOfCoreCode(const std::string& code) {
  if (code == "InvalidArgument") return 400;
  if (code == "PermissionDenied") return 403;
  if (code == "NotFound") return 404;
  if (code == "ResourceExhausted") return 429;
  if (code == "Unavailable") return 503;
  if (code == "DeadlineExceeded") return 504;
  return 500;
}

ApiError ErrorFromCore(const proto::Error& error) {
  const int status = StatusOfCoreCode(error.code());
  return ApiError{.status = status, .type = TypeOfStatus(status), .message = error.message(), .param = "",
                  .code = error.code()};
}

}  // namespace flover::openai
