// The first step of every POST endpoint: the body as a JSON object, or the 400 to answer.
//
// Thread-safety: pure function.
#pragma once

#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "coordinator/openai/exchange.h"

namespace flover::openai {

// The parsed body; 400 (param null) when it is not JSON, or not a JSON object.
std::variant<nlohmann::json, ApiError> ParseRequestBody(std::string_view body);

}  // namespace flover::openai
