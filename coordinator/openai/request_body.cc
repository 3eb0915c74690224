#include "coordinator/openai/request_body.h"

#include "coordinator/openai/api_error.h"
#include "coordinator/openai/json_fields.h"

namespace flover::openai {

std::variant<nlohmann::json, ApiError> ParseRequestBody(std::string_view body) {
  nlohmann::json parsed = nlohmann::json::parse(body, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return InvalidParam("", "the request body is not valid JSON (UTF-8 text holding one JSON object)");
  if (!parsed.is_object())
    return InvalidParam("", "the request body must be a JSON object, got " + JsonKind(parsed));
  return parsed;
}

std::variant<GenerationRequest, ApiError> ReadGenerationRequest(std::string_view body, const ServedModel& model) {
  std::variant<nlohmann::json, ApiError> parsed = ParseRequestBody(body);
  if (ApiError* error = std::get_if<ApiError>(&parsed)) return std::move(*error);
  GenerationRequest request{.body = std::move(std::get<nlohmann::json>(parsed)), .options = {}};
  FieldReader fields(request.body);
  if (std::optional<ApiError> error = ReadGenerationOptions(fields, model, &request.options)) return *error;
  return request;
}

}  // namespace flover::openai
