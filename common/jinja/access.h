// How templates reach into values, as jinja2's sandboxed environment does:
//   - `obj.name`: a method of obj (str and dict methods) first, else the dict key,
//     namespace attribute, or an undefined value;
//   - `obj[key]`: the dict key, list/str index (negative from the end), else a method
//     of that name, else undefined; a slice `obj[a:b:c]` of a str, list or tuple;
//   - iteration (for loops, filters), len() and `in`.
// Using an undefined value as an object throws jinja2's UndefinedError; what jinja2
// refuses (len() of a number, iterating None, ...) throws too.
//
// Thread-safety: pure functions, except that iterating a generator marks it used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/jinja/budget.h"
#include "common/jinja/value.h"

namespace flover::jinja {

Value GetAttribute(const Value& object, const std::string& name);
Value GetItem(const Value& object, const Value& key);
// object[start:stop:step]; a bound that is undefined or none is absent.
Value GetSlice(const Value& object, const Value& start, const Value& stop, const Value& step, Budget& budget);

// The items a for loop over `v` sees: list items, dict keys, the characters of a str,
// nothing for undefined. A generator can be iterated once (again: no items, as in
// Python); one that was partly used throws Unsupported.
std::vector<Value> Iterate(const Value& v);
// The first item of `v` as next(iter(v)) gives it, or nullopt when there is none;
// a generator is then partly used.
std::optional<Value> FirstItem(const Value& v);

// len(v): characters of a str, items of a list or dict; 0 for undefined.
int64_t Length(const Value& v);

// `item in container`.
bool Contains(const Value& container, const Value& item);

// The work of reading all of `v`, in budget steps: bytes/64 of a str, the items of a
// list or dict, 1 otherwise. Operations that scan a value charge it (budget.h).
int64_t ScanCost(const Value& v);

}  // namespace flover::jinja
