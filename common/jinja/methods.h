// The Python methods templates call on strings and dicts ("x".strip(), d.get("k"),
// d.items(), ...), bound to their object. Supported: str.strip, lstrip, rstrip,
// startswith, endswith, split, upper, lower, title, capitalize, replace, find, count,
// join; dict.get, items, keys, values. Other methods and attributes Python has on str,
// dict, list and numbers are found too, as functions that throw Unsupported when called
// or printed, so that a template never silently takes them for undefined; those that
// modify a list or dict are undefined, as jinja2's immutable sandbox hides them.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/jinja/budget.h"
#include "common/jinja/value.h"

namespace flover::jinja {

// The method `name` of `self` bound to it, or nullopt when Python's type has none.
std::optional<Value> FindMethod(const Value& self, const std::string& name);

// str.replace (and the replace filter) within the budget: throws a Limit error before
// building a string longer than max_output_bytes.
std::string ReplaceWithin(std::string_view s, std::string_view old, std::string_view replacement, int64_t count,
                          Budget& budget);

}  // namespace flover::jinja
