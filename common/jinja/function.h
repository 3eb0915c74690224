// Callables of the engine: built-in functions (range, namespace, ...), bound methods
// ("abc".upper), the filters' and tests' arguments, and macros. A call gets its
// arguments as Python does, positional then keyword; BoundArgs matches them to a
// parameter list and reads them with messages that name the function and parameter.
//
// Thread-safety: Function is immutable; BoundArgs belongs to one call.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/jinja/budget.h"
#include "common/jinja/value.h"

namespace flover::jinja {

struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

struct Function {
  std::string name;  // for messages: "range", "str.strip", "macro 'render'"
  std::function<Value(Args&, Budget&)> call;
};

// The arguments of one call, matched to `params` by position, then by keyword. Throws
// for more positional arguments than parameters, an unknown keyword, or a parameter
// given twice.
class BoundArgs {
 public:
  BoundArgs(std::string_view function, Args args, const std::vector<std::string_view>& params);

  // The argument of parameter i, or nullptr when it was not given.
  const Value* Get(size_t i) const { return slots_[i].has_value() ? &*slots_[i] : nullptr; }
  // The argument of parameter i; throws when it was not given.
  const Value& Required(size_t i) const;
  // Typed reads; nullopt when not given (or None, for Integer with none_ok); throw on another type.
  std::optional<std::string> String(size_t i) const;
  std::optional<int64_t> Integer(size_t i, bool none_ok = false) const;
  std::optional<bool> Boolean(size_t i) const;

 private:
  [[noreturn]] void WrongType(size_t i, const char* expected) const;

  std::string function_;
  std::vector<std::string> params_;
  std::vector<std::optional<Value>> slots_;  // [params_.size()]
};

}  // namespace flover::jinja
