// Typed reads of a request's JSON fields, each naming the field in its error: a field
// that is absent or null reads as "not given" (std::nullopt), as OpenAI's servers treat
// it; a field of the wrong type or out of range is a 400 invalid_request_error whose
// `param` is the field's path and whose message says what was expected and what came.
//
// A reader keeps the FIRST error; reads after an error return std::nullopt, so a parser
// reads every field it wants and checks error() once at the end.
//
// Thread-safety: none (a reader belongs to one parse).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "coordinator/openai/exchange.h"

namespace flover::openai {

// What a JSON value is, for messages: "a string", "an array", "null", ...
std::string JsonKind(const nlohmann::json& value);

class FieldReader {
 public:
  // REQUIRES: object.is_object(); `object` outlives the reader. `prefix` is prepended to
  // field names in errors ("stream_options." gives "stream_options.include_usage").
  explicit FieldReader(const nlohmann::json& object, std::string prefix = "");

  // The field's value, or nullptr when absent or null.
  const nlohmann::json* Find(const std::string& name) const;

  // A number in [min, max] (min excluded when min_exclusive).
  std::optional<double> Number(const std::string& name, double min, double max, bool min_exclusive = false);
  // An integer in [min, max]; a number with a fraction is an error (16.0 is 16).
  std::optional<int64_t> Integer(const std::string& name, int64_t min, int64_t max);
  // Any integer JSON can hold (signed or unsigned 64-bit), as its 64 bits.
  std::optional<uint64_t> Bits64(const std::string& name);
  std::optional<bool> Bool(const std::string& name);
  std::optional<std::string> String(const std::string& name);

  // Records an error for field `name` (the first one wins).
  void Fail(const std::string& name, const std::string& message);
  // The full path of field `name`, for errors of nested values.
  std::string Path(const std::string& name) const { return prefix_ + name; }

  const std::optional<ApiError>& error() const { return error_; }

 private:
  // Records "<path> must be <expected>, got <kind>" for a value of the wrong type.
  void WrongType(const std::string& name, const char* expected, const nlohmann::json& value);

  const nlohmann::json& object_;
  const std::string prefix_;
  std::optional<ApiError> error_;
};

}  // namespace flover::openai
