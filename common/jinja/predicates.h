// Jinja's tests, the `x is name` and `x is not name(args)` of templates, with jinja2's
// semantics: defined, undefined, none, boolean, true, false, integer, float, number,
// string, mapping, iterable, sequence, lower, upper, even, odd, divisibleby, eq /
// equalto / ==, ne / !=, lt / lessthan / <, le / <=, gt / greaterthan / >, ge / >=,
// in, sameas (against none, true or false).
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>

#include "common/jinja/function.h"
#include "common/jinja/value.h"

namespace flover::jinja {

using TestFunction = bool (*)(const Value& value, Args& args);

// The test named `name`, or nullptr when the engine has none.
TestFunction FindTest(std::string_view name);
// Whether jinja2 has a built-in test of that name (for messages: unsupported vs unknown).
bool IsJinjaTestName(std::string_view name);

// `value is name(args)`. Throws for an unknown name.
bool ApplyTest(std::string_view name, const Value& value, Args args);

}  // namespace flover::jinja
