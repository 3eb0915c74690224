// The first step of every POST endpoint: the body as a JSON object and the fields both
// generation endpoints share, or the error to answer.
//
// Thread-safety: pure function.
#pragma once

#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "coordinator/openai/exchange.h"
#include "coordinator/openai/generation_options.h"

namespace flover::openai {

// The parsed body; 400 (param null) when it is not JSON, or not a JSON object.
std::variant<nlohmann::json, ApiError> ParseRequestBody(std::string_view body);

struct GenerationRequest {
  nlohmann::json body;  // a JSON object
  GenerationOptions options;
};
// ParseRequestBody, then ReadGenerationOptions.
std::variant<GenerationRequest, ApiError> ReadGenerationRequest(std::string_view body, const ServedModel& model);

}  // namespace flover::openai
