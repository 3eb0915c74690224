// JSON in and out of the engine: template variables from nlohmann::ordered_json (the
// order of keys is kept, as Python dicts keep it), and values written as Python's
// json.dumps writes them, which is what transformers' `tojson` filter calls:
// ", " and ": " between items without indent, "," and ": " with it, floats as repr(),
// non-ASCII kept unless ensure_ascii.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/jinja/value.h"

namespace flover::jinja {

struct JsonFormat {
  std::optional<std::string> indent;  // nullopt: one line; else this text per level, items on their own lines
  // json.dumps's defaults are ", " without indent and "," with it; ": " between key and value.
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
  size_t max_bytes = SIZE_MAX;  // a longer text throws a Limit error
};

// A value of `json`. Throws for integers outside int64 and for nesting deeper than 256.
Value FromJson(const nlohmann::ordered_json& json);

// json.dumps(value, ...). Throws for what JSON cannot hold (undefined, a namespace, a
// function, NaN is written as NaN as Python does) and for nesting deeper than 256.
std::string ToJson(const Value& value, const JsonFormat& format);

}  // namespace flover::jinja
