#include "common/jinja/filters.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

#include "common/jinja/access.h"
#include "common/jinja/error.h"
#include "common/jinja/json.h"
#include "common/jinja/methods.h"
#include "common/jinja/predicates.h"
#include "common/jinja/text.h"

namespace flover::jinja {

namespace {

using Shape = Value::ListShape;

// str(v) within the output bound.
std::string BoundedStr(const Value& v, const Budget& budget) {
  std::string s = Str(v, budget.limits().max_output_bytes);
  budget.CheckString(s.size());
  return s;
}

Value Generator(std::vector<Value> items, Budget& budget) {
  budget.ChargeItems(items.size());
  return Value::List(std::move(items), Shape::kIterator);
}

// jinja2's make_attrgetter: "a.b.0" reads item a, then b, then index 0 (getitem, so a
// dict key before a method); with `fallback`, an undefined step becomes it.
class AttributeGetter {
 public:
  AttributeGetter(const Value& attribute, std::optional<Value> fallback) : fallback_(std::move(fallback)) {
    if (attribute.is_integral()) {
      parts_.push_back(attribute);
      return;
    }
    if (!attribute.is_string())
      Fail(ErrorKind::kRender, std::string("an attribute name must be a string, got ") + TypeName(attribute));
    for (std::string& part : Split(attribute.as_string(), std::string("."), -1)) {
      const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
      int64_t index = 0;
      if (digits && std::from_chars(part.data(), part.data() + part.size(), index).ec == std::errc()) {
        parts_.push_back(Value::Int(index));
      } else {
        parts_.push_back(Value::String(std::move(part)));
      }
    }
  }

  Value operator()(Value item) const {
    for (const Value& part : parts_) {
      item = GetItem(item, part);
      if (fallback_ && item.is_undefined()) item = *fallback_;
    }
    return item;
  }

 private:
  std::vector<Value> parts_;
  std::optional<Value> fallback_;
};

// ignore_case: strings lower-cased, for the case-insensitive sorts and comparisons.
Value CaseKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::String(Lower(v.as_string()));
  return v;
}

// Python float(text), or nullopt where Python raises ValueError.
std::optional<double> ParsePythonFloat(std::string_view text) {
  std::string s = Strip(text, std::nullopt);
  std::string lower = Lower(s);
  std::string_view body = lower;
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == "inf" || body == "infinity") return negative ? -INFINITY : INFINITY;
  if (body == "nan") return NAN;
  // digits with single underscores between them, an optional fraction and exponent
  std::string clean;
  bool digit_before = false, any_digit = false, seen_dot = false, seen_exp = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c >= '0' && c <= '9') {
      clean.push_back(c);
      digit_before = any_digit = true;
    } else if (c == '_') {
      if (!digit_before || i + 1 >= body.size() || body[i + 1] < '0' || body[i + 1] > '9') return std::nullopt;
    } else if (c == '.' && !seen_dot && !seen_exp) {
      clean.push_back(c);
      seen_dot = true;
      digit_before = false;
    } else if (c == 'e' && any_digit && !seen_exp) {
      clean.push_back(c);
      seen_exp = true;
      digit_before = any_digit = false;
      if (i + 1 < body.size() && (body[i + 1] == '+' || body[i + 1] == '-')) clean.push_back(body[++i]);
    } else {
      return std::nullopt;
    }
  }
  if (!any_digit) return std::nullopt;
  double value = 0;
  const std::from_chars_result r = std::from_chars(clean.data(), clean.data() + clean.size(), value);
  if (r.ptr != clean.data() + clean.size()) {
    if (r.ec == std::errc::result_out_of_range) return negative ? -INFINITY : INFINITY;  // Python overflows to inf
    return std::nullopt;
  }
  return negative ? -value : value;
}

// Python int(text, base), or nullopt where Python raises ValueError.
std::optional<int64_t> ParsePythonInt(std::string_view text, int base) {
  std::string s = Strip(text, std::nullopt);
  std::string_view body = s;
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body.size() >= 2 && body[0] == '0') {
    const char p = static_cast<char>(body[1] | 0x20);
    if ((base == 16 && p == 'x') || (base == 8 && p == 'o') || (base == 2 && p == 'b')) {
      body.remove_prefix(2);
      if (!body.empty() && body[0] == '_') body.remove_prefix(1);
    }
  }
  std::string digits;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '_') {
      if (i == 0 || i + 1 >= body.size() || body[i + 1] == '_') return std::nullopt;
      continue;
    }
    digits.push_back(body[i]);
  }
  if (digits.empty()) return std::nullopt;
  uint64_t magnitude = 0;
  const std::from_chars_result r = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (r.ec == std::errc::result_out_of_range) Fail(ErrorKind::kUnsupported, "the integer '" + s + "' is too large");
  if (r.ptr != digits.data() + digits.size()) return std::nullopt;
  const uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
  if (magnitude > max) Fail(ErrorKind::kUnsupported, "the integer '" + s + "' is too large");
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

// int(value) of a float: truncated; NaN is Python's ValueError (nullopt), inf and
// out-of-range values are errors.
std::optional<int64_t> FloatToInt(double d) {
  if (std::isnan(d)) return std::nullopt;
  if (std::isinf(d)) Fail(ErrorKind::kRender, "cannot convert float infinity to integer");
  const double t = std::trunc(d);
  if (t < -9.2233720368547758e18 || t >= 9.2233720368547758e18)
    Fail(ErrorKind::kUnsupported, "the integer " + FloatRepr(t) + " is too large");
  return static_cast<int64_t>(t);
}

// ---------------------------------------------------------------- the filters

Value AbsFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'abs'", std::move(args), {});
  if (input.is_integral()) {
    if (input.as_int() == std::numeric_limits<int64_t>::min()) Fail(ErrorKind::kUnsupported, "abs() overflows int64");
    return Value::Int(std::llabs(input.as_int()));
  }
  if (input.kind() == Value::Kind::kFloat) return Value::Float(std::fabs(input.as_double()));
  Fail(ErrorKind::kRender, std::string("bad operand type for abs(): '") + TypeName(input) + "'");
}

Value AttrFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'attr'", std::move(args), {"name"});
  (void)a.Required(0);
  const std::string name = *a.String(0);
  if (input.is_undefined()) FailUndefined(input);
  if (std::optional<Value> method = FindMethod(input, name)) return *method;
  if (input.kind() == Value::Kind::kNamespace) {
    if (const Value* v = input.ns().attributes.Find(name)) return *v;
  }
  return Value::Undefined("'" + std::string(TypeName(input)) + " object' has no attribute '" + name + "'");
}

Value CapitalizeFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'capitalize'", std::move(args), {});
  return Value::String(Capitalize(BoundedStr(input, budget)));
}

Value LowerFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'lower'", std::move(args), {});
  return Value::String(Lower(BoundedStr(input, budget)));
}

Value UpperFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'upper'", std::move(args), {});
  return Value::String(Upper(BoundedStr(input, budget)));
}

Value TitleCaseFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'title'", std::move(args), {});
  return Value::String(TitleFilter(BoundedStr(input, budget)));
}

Value TrimFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'trim'", std::move(args), {"chars"});
  std::optional<std::string> chars;
  if (const Value* c = a.Get(0); c && !c->is_none()) chars = a.String(0);
  return Value::String(Strip(BoundedStr(input, budget), chars));
}

Value StringFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'string'", std::move(args), {});
  return Value::String(BoundedStr(input, budget));
}

Value CountFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'length'", std::move(args), {});
  return Value::Int(Length(input));
}

Value DefaultFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'default'", std::move(args), {"default_value", "boolean"});
  const bool boolean = a.Boolean(1).value_or(false);
  if (input.is_undefined() || (boolean && !Truthy(input))) {
    const Value* fallback = a.Get(0);
    return fallback ? *fallback : Value::String("");
  }
  return input;
}

Value DictSortFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'dictsort'", std::move(args), {"case_sensitive", "by", "reverse"});
  const bool case_sensitive = a.Boolean(0).value_or(false);
  const std::string by = a.String(1).value_or("key");
  const bool reverse = a.Boolean(2).value_or(false);
  if (by != "key" && by != "value") Fail(ErrorKind::kRender, "filter 'dictsort': 'by' must be 'key' or 'value'");
  if (!input.is_dict()) Fail(ErrorKind::kRender, std::string("filter 'dictsort' needs a dict, got ") + TypeName(input));
  std::vector<Value> pairs;
  for (const auto& [key, value] : input.dict().entries())
    pairs.push_back(Value::List({Value::String(key), value}, Shape::kTuple));
  const size_t pos = by == "key" ? 0 : 1;
  std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
    const Value kx = CaseKey(x.items()[pos], case_sensitive), ky = CaseKey(y.items()[pos], case_sensitive);
    return reverse ? Compare(ky, kx, "<") < 0 : Compare(kx, ky, "<") < 0;
  });
  budget.ChargeItems(pairs.size());
  return Value::List(std::move(pairs));
}

Value FirstFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'first'", std::move(args), {});
  if (std::optional<Value> first = FirstItem(input)) return *first;
  return Value::Undefined("No first item, sequence was empty.");
}

Value LastFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'last'", std::move(args), {});
  if (input.is_list() && input.shape() == Shape::kIterator)
    Fail(ErrorKind::kRender, "filter 'last': argument to reversed() must be a sequence, not a generator");
  const std::vector<Value> items = input.is_list() ? input.items() : Iterate(input);
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

Value FloatFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'float'", std::move(args), {"default"});
  const Value fallback = a.Get(0) ? *a.Get(0) : Value::Float(0.0);
  if (input.is_undefined()) FailUndefined(input);
  if (input.is_number()) return Value::Float(input.as_double());
  if (input.is_string()) {
    if (std::optional<double> d = ParsePythonFloat(input.as_string())) return Value::Float(*d);
  }
  return fallback;
}

Value IntFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'int'", std::move(args), {"default", "base"});
  const Value fallback = a.Get(0) ? *a.Get(0) : Value::Int(0);
  const int64_t base = a.Integer(1).value_or(10);
  if (base != 2 && base != 8 && base != 10 && base != 16)
    Fail(ErrorKind::kUnsupported, "filter 'int': base " + std::to_string(base) + " is not supported (2, 8, 10, 16)");
  if (input.is_undefined()) FailUndefined(input);
  if (input.is_integral()) return Value::Int(input.as_int());
  if (input.kind() == Value::Kind::kFloat) {
    if (std::optional<int64_t> i = FloatToInt(input.as_double())) return Value::Int(*i);
    return fallback;
  }
  if (input.is_string()) {
    if (std::optional<int64_t> i = ParsePythonInt(input.as_string(), static_cast<int>(base))) return Value::Int(*i);
    if (std::optional<double> d = ParsePythonFloat(input.as_string())) {  // "42.23" | int is 42
      if (std::optional<int64_t> i = FloatToInt(*d)) return Value::Int(*i);
    }
  }
  return fallback;
}

Value ItemsFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'items'", std::move(args), {});
  if (input.is_undefined()) return Generator({}, budget);
  if (!input.is_dict()) Fail(ErrorKind::kRender, "filter 'items': can only get item pairs from a mapping");
  std::vector<Value> pairs;
  for (const auto& [key, value] : input.dict().entries())
    pairs.push_back(Value::List({Value::String(key), value}, Shape::kTuple));
  return Generator(std::move(pairs), budget);
}

Value JoinFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'join'", std::move(args), {"d", "attribute"});
  const std::string separator = a.Get(0) ? BoundedStr(*a.Get(0), budget) : "";
  std::optional<AttributeGetter> getter;
  if (const Value* attribute = a.Get(1); attribute && !attribute->is_none()) getter.emplace(*attribute, std::nullopt);
  std::string out;
  bool first = true;
  for (const Value& item : Iterate(input)) {
    if (!first) out += separator;
    first = false;
    out += Str(getter ? (*getter)(item) : item, budget.limits().max_output_bytes);
    budget.CheckString(out.size());
  }
  budget.Charge(static_cast<int64_t>(out.size() / 64));
  return Value::String(std::move(out));
}

Value ListFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'list'", std::move(args), {});
  std::vector<Value> items = Iterate(input);
  budget.ChargeItems(items.size());
  return Value::List(std::move(items));
}

// map(filter, *args) or map(attribute=..., default=...).
Value MapFilter(const Value& input, Args& args, Budget& budget) {
  std::vector<Value> out;
  if (args.positional.empty()) {
    const BoundArgs a("filter 'map'", std::move(args), {"attribute", "default"});
    const AttributeGetter getter(a.Required(0), a.Get(1) ? std::optional<Value>(*a.Get(1)) : std::nullopt);
    if (Truthy(input))
      for (const Value& item : Iterate(input)) out.push_back(getter(item));
    return Generator(std::move(out), budget);
  }
  const Value name = args.positional.front();
  if (!name.is_string()) Fail(ErrorKind::kRender, "filter 'map': the filter name must be a string");
  args.positional.erase(args.positional.begin());
  if (!FindFilter(name.as_string()))
    Fail(ErrorKind::kUnsupported, "filter 'map': no supported filter named '" + name.as_string() + "'");
  if (Truthy(input))
    for (const Value& item : Iterate(input)) out.push_back(ApplyFilter(name.as_string(), item, args, budget));
  return Generator(std::move(out), budget);
}

// select / reject (by_attribute: selectattr / rejectattr): the items whose test passes
// (keep == true) or fails.
Value SelectOrReject(const char* filter, const Value& input, Args& args, Budget& budget, bool by_attribute, bool keep) {
  if (!args.keyword.empty() && args.positional.size() < (by_attribute ? 2u : 1u))
    Fail(ErrorKind::kUnsupported, std::string("filter '") + filter + "': keyword arguments are not supported");
  std::optional<AttributeGetter> getter;
  size_t next = 0;
  if (by_attribute) {
    if (args.positional.empty()) Fail(ErrorKind::kRender, std::string("filter '") + filter + "': missing the attribute name");
    getter.emplace(args.positional[0], std::nullopt);
    next = 1;
  }
  std::optional<std::string> test;
  Args test_args;
  if (args.positional.size() > next) {
    if (!args.positional[next].is_string())
      Fail(ErrorKind::kRender, std::string("filter '") + filter + "': the test name must be a string");
    test = args.positional[next].as_string();
    if (!FindTest(*test))
      Fail(ErrorKind::kUnsupported, std::string("filter '") + filter + "': no supported test named '" + *test + "'");
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next + 1), args.positional.end());
    test_args.keyword = args.keyword;
  }
  std::vector<Value> out;
  if (Truthy(input)) {
    for (const Value& item : Iterate(input)) {
      const Value subject = getter ? (*getter)(item) : item;
      const bool passed = test ? ApplyTest(*test, subject, test_args) : Truthy(subject);
      if (passed == keep) out.push_back(item);
      budget.Charge(1);
    }
  }
  return Generator(std::move(out), budget);
}

Value SelectFilter(const Value& input, Args& args, Budget& budget) { return SelectOrReject("select", input, args, budget, false, true); }
Value RejectFilter(const Value& input, Args& args, Budget& budget) { return SelectOrReject("reject", input, args, budget, false, false); }
Value SelectAttrFilter(const Value& input, Args& args, Budget& budget) {
  return SelectOrReject("selectattr", input, args, budget, true, true);
}
Value RejectAttrFilter(const Value& input, Args& args, Budget& budget) {
  return SelectOrReject("rejectattr", input, args, budget, true, false);
}

Value ReplaceFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'replace'", std::move(args), {"old", "new", "count"});
  const std::string old = BoundedStr(a.Required(0), budget);
  const std::string replacement = BoundedStr(a.Required(1), budget);
  return Value::String(ReplaceWithin(BoundedStr(input, budget), old, replacement, a.Integer(2, true).value_or(-1), budget));
}

Value ReverseFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'reverse'", std::move(args), {});
  if (input.is_string()) {
    std::u32string text = Decode(input.as_string());
    std::reverse(text.begin(), text.end());
    return Value::String(Encode(text));
  }
  const bool generator = input.is_list() && input.shape() == Shape::kIterator;
  std::vector<Value> items = Iterate(input);
  std::reverse(items.begin(), items.end());
  if (generator) {  // reversed() refuses a generator; jinja2 then reverses list(value)
    budget.ChargeItems(items.size());
    return Value::List(std::move(items));
  }
  return Generator(std::move(items), budget);
}

// The key of sort, unique, min and max: the attribute's value, strings lower-cased
// unless case_sensitive.
struct SortKey {
  bool case_sensitive = false;
  std::optional<AttributeGetter> getter;
  Value operator()(const Value& item) const { return CaseKey(getter ? (*getter)(item) : item, case_sensitive); }
};

SortKey ReadSortKey(const BoundArgs& a, size_t case_index, size_t attribute_index) {
  SortKey key;
  key.case_sensitive = a.Boolean(case_index).value_or(false);
  if (const Value* attribute = a.Get(attribute_index); attribute && !attribute->is_none()) {
    if (attribute->is_string() && attribute->as_string().find(',') != std::string::npos)
      Fail(ErrorKind::kUnsupported, "sorting by several attributes is not supported");
    key.getter.emplace(*attribute, std::nullopt);
  }
  return key;
}

Value SortFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'sort'", std::move(args), {"reverse", "case_sensitive", "attribute"});
  const bool reverse = a.Boolean(0).value_or(false);
  const SortKey key = ReadSortKey(a, 1, 2);
  std::vector<Value> items = Iterate(input);
  budget.ChargeItems(items.size());
  std::vector<std::pair<Value, Value>> keyed;  // (key, item)
  for (Value& item : items) keyed.emplace_back(key(item), std::move(item));
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? Compare(y.first, x.first, "<") < 0 : Compare(x.first, y.first, "<") < 0;
  });
  std::vector<Value> out;
  for (auto& [k, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

Value UniqueFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'unique'", std::move(args), {"case_sensitive", "attribute"});
  const SortKey key = ReadSortKey(a, 0, 1);
  std::vector<Value> seen, out;
  for (const Value& item : Iterate(input)) {
    const Value k = key(item);
    if (k.is_list() || k.is_dict()) Fail(ErrorKind::kRender, std::string("unhashable type: '") + TypeName(k) + "'");
    budget.Charge(static_cast<int64_t>(seen.size()));
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, k); })) continue;
    seen.push_back(k);
    out.push_back(item);
  }
  return Generator(std::move(out), budget);
}

Value MinOrMax(const char* filter, const Value& input, Args& args, bool max) {
  const BoundArgs a(filter, std::move(args), {"case_sensitive", "attribute"});
  const SortKey key = ReadSortKey(a, 0, 1);
  std::optional<Value> best, best_key;
  for (const Value& item : Iterate(input)) {
    Value k = key(item);
    if (!best || (max ? Compare(k, *best_key, ">") > 0 : Compare(k, *best_key, "<") < 0)) {
      best = item;
      best_key = std::move(k);
    }
  }
  if (!best) return Value::Undefined("No aggregated item, sequence was empty.");
  return *best;
}

Value MinFilter(const Value& input, Args& args, Budget&) { return MinOrMax("filter 'min'", input, args, false); }
Value MaxFilter(const Value& input, Args& args, Budget&) { return MinOrMax("filter 'max'", input, args, true); }

Value SumFilter(const Value& input, Args& args, Budget&) {
  const BoundArgs a("filter 'sum'", std::move(args), {"attribute", "start"});
  std::optional<AttributeGetter> getter;
  if (const Value* attribute = a.Get(0); attribute && !attribute->is_none()) getter.emplace(*attribute, std::nullopt);
  Value total = a.Get(1) ? *a.Get(1) : Value::Int(0);
  for (const Value& raw : Iterate(input)) {
    const Value item = getter ? (*getter)(raw) : raw;
    if (!total.is_number() || !item.is_number())
      Fail(ErrorKind::kRender, std::string("filter 'sum': unsupported operand types for +: '") + TypeName(total) +
                                   "' and '" + TypeName(item) + "'");
    if (total.is_integral() && item.is_integral()) {
      int64_t s;
      if (__builtin_add_overflow(total.as_int(), item.as_int(), &s)) Fail(ErrorKind::kUnsupported, "integer overflow in sum");
      total = Value::Int(s);
    } else {
      total = Value::Float(total.as_double() + item.as_double());
    }
  }
  return total;
}

// transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value ToJsonFilter(const Value& input, Args& args, Budget& budget) {
  const BoundArgs a("filter 'tojson'", std::move(args), {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonFormat format;
  format.ensure_ascii = a.Boolean(0).value_or(false);
  format.sort_keys = a.Boolean(3).value_or(false);
  format.max_bytes = budget.limits().max_output_bytes;
  if (const Value* indent = a.Get(1); indent && !indent->is_none()) {
    if (indent->is_string()) {
      format.indent = indent->as_string();
    } else if (indent->is_integral()) {
      format.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(indent->as_int(), 0, 64)), ' ');
    } else {
      Fail(ErrorKind::kRender, std::string("filter 'tojson': indent must be an integer or a string, got ") + TypeName(*indent));
    }
  }
  if (format.indent) format.item_separator = ",";
  if (const Value* separators = a.Get(2); separators && !separators->is_none()) {
    if (!separators->is_list() || separators->items().size() != 2 || !separators->items()[0].is_string() ||
        !separators->items()[1].is_string())
      Fail(ErrorKind::kRender, "filter 'tojson': separators must be a pair of strings");
    format.item_separator = separators->items()[0].as_string();
    format.key_separator = separators->items()[1].as_string();
  }
  std::string out = ToJson(input, format);
  budget.Charge(static_cast<int64_t>(out.size() / 64));
  return Value::String(std::move(out));
}

struct NamedFilter {
  std::string_view name;
  FilterFunction filter;
};

constexpr NamedFilter kFilters[] = {
    {"abs", AbsFilter},         {"attr", AttrFilter},         {"capitalize", CapitalizeFilter}, {"count", CountFilter},
    {"d", DefaultFilter},       {"default", DefaultFilter},   {"dictsort", DictSortFilter},     {"first", FirstFilter},
    {"float", FloatFilter},     {"int", IntFilter},           {"items", ItemsFilter},           {"join", JoinFilter},
    {"last", LastFilter},       {"length", CountFilter},      {"list", ListFilter},             {"lower", LowerFilter},
    {"map", MapFilter},         {"max", MaxFilter},           {"min", MinFilter},               {"reject", RejectFilter},
    {"rejectattr", RejectAttrFilter}, {"replace", ReplaceFilter}, {"reverse", ReverseFilter}, {"select", SelectFilter},
    {"selectattr", SelectAttrFilter}, {"sort", SortFilter},   {"string", StringFilter},         {"sum", SumFilter},
    {"title", TitleCaseFilter},     {"tojson", ToJsonFilter}, {"trim", TrimFilter},           {"unique", UniqueFilter},
    {"upper", UpperFilter},
};

// jinja2's other built-in filters.
constexpr std::string_view kJinjaFilters[] = {
    "batch",  "center",   "e",       "escape", "filesizeformat", "forceescape", "format",   "groupby",
    "indent", "pprint",   "random",  "round",  "safe",           "slice",       "striptags", "truncate",
    "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"};

}  // namespace

FilterFunction FindFilter(std::string_view name) {
  for (const NamedFilter& f : kFilters)
    if (f.name == name) return f.filter;
  return nullptr;
}

bool IsJinjaFilterName(std::string_view name) {
  return FindFilter(name) ||
         std::find(std::begin(kJinjaFilters), std::end(kJinjaFilters), name) != std::end(kJinjaFilters);
}

Value ApplyFilter(std::string_view name, const Value& input, Args args, Budget& budget) {
  const FilterFunction filter = FindFilter(name);
  if (!filter)
    Fail(ErrorKind::kUnsupported, IsJinjaFilterName(name) ? "the filter '" + std::string(name) + "' is not supported"
                                                          : "no filter named '" + std::string(name) + "'");
  budget.Charge(ScanCost(input));
  Value out = filter(input, args, budget);
  if (out.is_string()) budget.CheckString(out.as_string().size());
  return out;
}

}  // namespace flover::jinja
