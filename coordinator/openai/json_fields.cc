#include "coordinator/openai/json_fields.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "coordinator/openai/api_error.h"

namespace flover::openai {

std::string JsonKind(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return value.get<bool>() ? "true" : "false";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float: return value.dump();
    default: return "an unsupported value";
  }
}

FieldReader::FieldReader(const nlohmann::json& object, std::string prefix)
    : object_(object), prefix_(std::move(prefix)) {}

const nlohmann::json* FieldReader::Find(const std::string& name) const {
  const auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void FieldReader::Fail(const std::string& name, const std::string& message) {
  if (!error_) error_ = InvalidParam(Path(name), message);
}

void FieldReader::WrongType(const std::string& name, const char* expected, const nlohmann::json& value) {
  Fail(name, fmt::format("{} must be {}, got {}", Path(name), expected, JsonKind(value)));
}

std::optional<double> FieldReader::Number(const std::string& name, double min, double max, bool min_exclusive) {
  const nlohmann::json* value = Find(name);
  if (error_ || !value) return std::nullopt;
  if (!value->is_number()) {
    WrongType(name, "a number", *value);
    return std::nullopt;
  }
  const double x = value->get<double>();
  const bool below = min_exclusive ? !(x > min) : !(x >= min);
  if (!std::isfinite(x) || below || x > max) {
    const std::string upper = max == std::numeric_limits<double>::max() ? "" : fmt::format(" and at most {:g}", max);
    Fail(name, fmt::format("{} must be a number {} {:g}{}, got {}", Path(name),
                           min_exclusive ? "greater than" : "of at least", min, upper, value->dump()));
    return std::nullopt;
  }
  return x;
}

std::optional<int64_t> FieldReader::Integer(const std::string& name, int64_t min, int64_t max) {
  const nlohmann::json* value = Find(name);
  if (error_ || !value) return std::nullopt;
  bool integral = value->is_number_integer();
  if (value->is_number_float()) {
    const double x = value->get<double>();
    integral = std::isfinite(x) && std::trunc(x) == x && std::abs(x) < 9.0e15;
  }
  if (!integral) {
    WrongType(name, "an integer", *value);
    return std::nullopt;
  }
  bool in_range;
  int64_t x = 0;
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(max) && max >= 0 && static_cast<int64_t>(u) >= min;
    x = static_cast<int64_t>(u);
  } else {
    x = value->is_number_float() ? static_cast<int64_t>(value->get<double>()) : value->get<int64_t>();
    in_range = x >= min && x <= max;
  }
  if (!in_range) {
    Fail(name, fmt::format("{} must be an integer from {} to {}, got {}", Path(name), min, max, value->dump()));
    return std::nullopt;
  }
  return x;
}

std::optional<uint64_t> FieldReader::Bits64(const std::string& name) {
  const nlohmann::json* value = Find(name);
  if (error_ || !value) return std::nullopt;
  if (value->is_number_unsigned()) return value->get<uint64_t>();
  if (value->is_number_integer()) return static_cast<uint64_t>(value->get<int64_t>());
  if (const std::optional<int64_t> x = Integer(name, std::numeric_limits<int64_t>::min(),
                                               std::numeric_limits<int64_t>::max()))
    return static_cast<uint64_t>(*x);
  return std::nullopt;
}

std::optional<bool> FieldReader::Bool(const std::string& name) {
  const nlohmann::json* value = Find(name);
  if (error_ || !value) return std::nullopt;
  if (!value->is_boolean()) {
    WrongType(name, "true or false", *value);
    return std::nullopt;
  }
  return value->get<bool>();
}

std::optional<std::string> FieldReader::String(const std::string& name) {
  const nlohmann::json* value = Find(name);
  if (error_ || !value) return std::nullopt;
  if (!value->is_string()) {
    WrongType(name, "a string", *value);
    return std::nullopt;
  }
  return value->get<std::string>();
}

}  // namespace flover::openai
