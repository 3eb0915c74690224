// Jinja's filters, the `value | name(args)` of templates, with jinja2's semantics (and
// transformers' `tojson`, which is json.dumps with ensure_ascii=False and the indent,
// separators and sort_keys options). Supported: abs, attr, capitalize, count, d,
// default, dictsort, first, float, int, items, join, last, length, list, lower, map,
// max, min, reject, rejectattr, replace, reverse, select, selectattr, sort, string,
// sum, title, tojson, trim, unique, upper. Filters that return generators in jinja2
// (map, select, reject, selectattr, rejectattr, items, unique, reverse of a list)
// return iterator values here, with a generator's behaviour (value.h).
//
// Thread-safety: pure functions, except that consuming a generator marks it used.
#pragma once

#include <string_view>

#include "common/jinja/budget.h"
#include "common/jinja/function.h"
#include "common/jinja/value.h"

namespace flover::jinja {

using FilterFunction = Value (*)(const Value& input, Args& args, Budget& budget);

// The filter named `name`, or nullptr when the engine has none.
FilterFunction FindFilter(std::string_view name);
// Whether jinja2 has a built-in filter of that name (for messages: unsupported vs unknown).
bool IsJinjaFilterName(std::string_view name);

// `input | name(args)`. Throws for an unknown name.
Value ApplyFilter(std::string_view name, const Value& input, Args args, Budget& budget);

}  // namespace flover::jinja
