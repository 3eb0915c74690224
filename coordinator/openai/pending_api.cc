// TEMPORARY, until the OpenAI API layer (coordinator/openai/*.cc) is merged: the
// functions of exchange.h that the HTTP server links against. The API routes answer
// 501 "not built"; ErrorBody writes OpenAI's error shape. Delete this file at the merge.
#include <nlohmann/json.hpp>

#include "coordinator/openai/exchange.h"

namespace flover::openai {
namespace {

ApiError NotBuilt() {
  return ApiError{.status = 501,
                  .type = "server_error",
                  .message = "the OpenAI API layer is not built into this coordinator",
                  .param = {},
                  .code = "not_built"};
}

nlohmann::json NullIfEmpty(const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); }

}  // namespace

std::string ErrorBody(const ApiError& error) {
  const nlohmann::json body = {{"error",
                                {{"message", error.message},
                                 {"type", error.type},
                                 {"param", NullIfEmpty(error.param)},
                                 {"code", NullIfEmpty(error.code)}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Started StartCompletions(std::string_view, const ServedModel&) { return NotBuilt(); }
Started StartChatCompletions(std::string_view, const ServedModel&) { return NotBuilt(); }

std::string ModelsBody(const ServedModel& model, int64_t created_unix) {
  const nlohmann::json body = {
      {"object", "list"},
      {"data", {{{"id", model.id}, {"object", "model"}, {"created", created_unix}, {"owned_by", "flover"}}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace flover::openai
