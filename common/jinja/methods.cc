#include "common/jinja/methods.h"

#include <algorithm>
#include <string_view>

#include "common/jinja/access.h"
#include "common/jinja/error.h"
#include "common/jinja/function.h"
#include "common/jinja/text.h"

namespace flover::jinja {

namespace {

// Every method of Python's str, dict and list (what getattr finds on them).
constexpr std::string_view kStrMethods[] = {
    "capitalize", "casefold",   "center",    "count",       "encode",       "endswith",     "expandtabs",
    "find",       "format",     "format_map", "index",      "isalnum",      "isalpha",      "isascii",
    "isdecimal",  "isdigit",    "isidentifier", "islower",  "isnumeric",    "isprintable",  "isspace",
    "istitle",    "isupper",    "join",      "ljust",       "lower",        "lstrip",       "maketrans",
    "partition",  "removeprefix", "removesuffix", "replace", "rfind",       "rindex",       "rjust",
    "rpartition", "rsplit",     "rstrip",    "split",       "splitlines",   "startswith",   "strip",
    "swapcase",   "title",      "translate", "upper",       "zfill"};
constexpr std::string_view kDictMethods[] = {"copy", "fromkeys", "get", "items", "keys", "values"};
constexpr std::string_view kNumberAttributes[] = {"as_integer_ratio", "bit_count", "bit_length", "conjugate",
                                                  "denominator", "from_bytes", "fromhex", "hex", "imag",
                                                  "is_integer", "numerator", "real", "to_bytes"};
constexpr std::string_view kListMethods[] = {"copy", "count", "index"};
// What the immutable sandbox hides: methods that modify a list or dict.
constexpr std::string_view kDictModifiers[] = {"clear", "pop", "popitem", "setdefault", "update"};
constexpr std::string_view kListModifiers[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};

template <size_t N>
bool In(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

using Method = Value (*)(const Value& self, Args& args, Budget& budget);

Value Bind(const Value& self, std::string name, Method method) {
  return Value::Callable(
      Function{std::move(name), [self, method](Args& args, Budget& budget) {
                 budget.Charge(ScanCost(self));
                 return method(self, args, budget);
               }});
}

// A method Python has and the engine does not: calling it is an error.
Value Refused(std::string name) {
  return Value::Callable(Function{name, [name](Args&, Budget&) -> Value {
                                    Fail(ErrorKind::kUnsupported, "the method " + name + "() is not supported");
                                  }});
}

// jinja2's unsafe_undefined: an undefined that fails when used.
Value Unsafe(const Value& self, const std::string& name) {
  return Value::Undefined("access to attribute '" + name + "' of '" + TypeName(self) + "' object is unsafe.");
}

// `chars` of strip(): absent or none strips whitespace.
std::optional<std::string> StripChars(const BoundArgs& a) {
  const Value* chars = a.Get(0);
  if (!chars || chars->is_none()) return std::nullopt;
  return a.String(0);
}

// A prefix/suffix argument: a str or a tuple of str.
std::vector<std::string> Affixes(const BoundArgs& a, const char* method) {
  const Value& v = a.Required(0);
  if (v.is_string()) return {v.as_string()};
  if (v.is_tuple()) {
    std::vector<std::string> out;
    for (const Value& item : v.items()) {
      if (!item.is_string()) break;
      out.push_back(item.as_string());
    }
    if (out.size() == v.items().size()) return out;
  }
  Fail(ErrorKind::kRender, std::string(method) + " first arg must be str or a tuple of str, not " + TypeName(v));
}

void RefuseBounds(const BoundArgs& a, const char* method) {
  if (a.Get(1) || a.Get(2))
    Fail(ErrorKind::kUnsupported, std::string(method) + "() with start or end arguments is not supported");
}

Value StrStrip(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.strip", std::move(args), {"chars"});
  return Value::String(Strip(self.as_string(), StripChars(a)));
}
Value StrLStrip(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.lstrip", std::move(args), {"chars"});
  return Value::String(LStrip(self.as_string(), StripChars(a)));
}
Value StrRStrip(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.rstrip", std::move(args), {"chars"});
  return Value::String(RStrip(self.as_string(), StripChars(a)));
}

Value StrStartsWith(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.startswith", std::move(args), {"prefix", "start", "end"});
  RefuseBounds(a, "str.startswith");
  for (const std::string& p : Affixes(a, "startswith"))
    if (self.as_string().starts_with(p)) return Value::Bool(true);
  return Value::Bool(false);
}

Value StrEndsWith(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.endswith", std::move(args), {"suffix", "start", "end"});
  RefuseBounds(a, "str.endswith");
  for (const std::string& s : Affixes(a, "endswith"))
    if (self.as_string().ends_with(s)) return Value::Bool(true);
  return Value::Bool(false);
}

Value StrSplit(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("str.split", std::move(args), {"sep", "maxsplit"});
  std::optional<std::string> sep;
  if (const Value* s = a.Get(0); s && !s->is_none()) sep = a.String(0);
  if (sep && sep->empty()) Fail(ErrorKind::kRender, "str.split: empty separator");
  if (sep) budget.ChargeSearch(self.as_string().size(), sep->size());
  std::vector<Value> out;
  for (std::string& piece : Split(self.as_string(), sep, a.Integer(1).value_or(-1)))
    out.push_back(Value::String(std::move(piece)));
  budget.ChargeItems(out.size());
  return Value::List(std::move(out));
}

Value StrUpper(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.upper", std::move(args), {});
  return Value::String(Upper(self.as_string()));
}
Value StrLower(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.lower", std::move(args), {});
  return Value::String(Lower(self.as_string()));
}
Value StrTitle(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.title", std::move(args), {});
  return Value::String(TitleMethod(self.as_string()));
}
Value StrCapitalize(const Value& self, Args& args, Budget&) {
  const BoundArgs a("str.capitalize", std::move(args), {});
  return Value::String(Capitalize(self.as_string()));
}

Value StrReplace(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("str.replace", std::move(args), {"old", "new", "count"});
  (void)a.Required(0);
  (void)a.Required(1);
  const std::string old = *a.String(0);
  const std::string replacement = *a.String(1);
  return Value::String(ReplaceWithin(self.as_string(), old, replacement, a.Integer(2).value_or(-1), budget));
}

Value StrFind(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("str.find", std::move(args), {"sub", "start", "end"});
  RefuseBounds(a, "str.find");
  (void)a.Required(0);
  const std::string sub = *a.String(0);
  budget.ChargeSearch(self.as_string().size(), sub.size());
  const size_t at = self.as_string().find(sub);
  if (at == std::string::npos) return Value::Int(-1);
  return Value::Int(static_cast<int64_t>(CharCount(std::string_view(self.as_string()).substr(0, at))));
}

Value StrCount(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("str.count", std::move(args), {"sub", "start", "end"});
  RefuseBounds(a, "str.count");
  (void)a.Required(0);
  const std::string sub = *a.String(0);
  const std::string& s = self.as_string();
  budget.ChargeSearch(s.size(), sub.size());
  if (sub.empty()) return Value::Int(static_cast<int64_t>(CharCount(s)) + 1);
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return Value::Int(n);
}

Value StrJoin(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("str.join", std::move(args), {"iterable"});
  std::string out;
  size_t i = 0;
  for (const Value& item : Iterate(a.Required(0))) {
    if (!item.is_string())
      Fail(ErrorKind::kRender, "str.join: sequence item " + std::to_string(i) + ": expected str instance, " +
                                   TypeName(item) + " found");
    if (i++ > 0) out += self.as_string();
    out += item.as_string();
    budget.CheckString(out.size());
  }
  return Value::String(std::move(out));
}

Value DictGet(const Value& self, Args& args, Budget&) {
  const BoundArgs a("dict.get", std::move(args), {"key", "default"});
  const Value& key = a.Required(0);
  if (key.is_string()) {
    if (const Value* v = self.dict().Find(key.as_string())) return *v;
  }
  const Value* fallback = a.Get(1);
  return fallback ? *fallback : Value::None();
}

Value DictItems(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("dict.items", std::move(args), {});
  std::vector<Value> out;
  for (const auto& [key, value] : self.dict().entries())
    out.push_back(Value::List({Value::String(key), value}, Value::ListShape::kTuple));
  budget.ChargeItems(out.size());
  return Value::List(std::move(out), Value::ListShape::kView);
}

Value DictKeys(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("dict.keys", std::move(args), {});
  std::vector<Value> out;
  for (const auto& entry : self.dict().entries()) out.push_back(Value::String(entry.first));
  budget.ChargeItems(out.size());
  return Value::List(std::move(out), Value::ListShape::kView);
}

Value DictValues(const Value& self, Args& args, Budget& budget) {
  const BoundArgs a("dict.values", std::move(args), {});
  std::vector<Value> out;
  for (const auto& entry : self.dict().entries()) out.push_back(entry.second);
  budget.ChargeItems(out.size());
  return Value::List(std::move(out), Value::ListShape::kView);
}

struct NamedMethod {
  std::string_view name;
  Method method;
};

constexpr NamedMethod kStrImplemented[] = {
    {"strip", StrStrip},     {"lstrip", StrLStrip},   {"rstrip", StrRStrip},       {"startswith", StrStartsWith},
    {"endswith", StrEndsWith}, {"split", StrSplit},   {"upper", StrUpper},         {"lower", StrLower},
    {"title", StrTitle},     {"capitalize", StrCapitalize}, {"replace", StrReplace}, {"find", StrFind},
    {"count", StrCount},     {"join", StrJoin},
};
constexpr NamedMethod kDictImplemented[] = {
    {"get", DictGet}, {"items", DictItems}, {"keys", DictKeys}, {"values", DictValues}};

template <size_t N>
std::optional<Value> Lookup(const Value& self, const std::string& type, const NamedMethod (&methods)[N],
                            const std::string& name) {
  for (const NamedMethod& m : methods)
    if (m.name == name) return Bind(self, type + "." + name, m.method);
  return std::nullopt;
}

}  // namespace

std::string ReplaceWithin(std::string_view s, std::string_view old, std::string_view replacement, int64_t count,
                          Budget& budget) {
  budget.ChargeSearch(s.size(), old.size());
  // The size first: a replacement can multiply the length.
  size_t n = 0;
  const size_t limit = count < 0 ? SIZE_MAX : static_cast<size_t>(count);
  if (old.empty()) {
    n = std::min(limit, CharCount(s) + 1);
  } else {
    for (size_t at = s.find(old); at != std::string_view::npos && n < limit; at = s.find(old, at + old.size())) ++n;
  }
  if (replacement.size() > old.size()) {
    const size_t growth = replacement.size() - old.size();
    if (n > 0 && growth > (budget.limits().max_output_bytes + 1) / n) budget.CheckString(SIZE_MAX);
    budget.CheckString(s.size() + n * growth);
  }
  budget.Charge(static_cast<int64_t>(s.size() / 64 + n));
  return Replace(s, old, replacement, count);
}

std::optional<Value> FindMethod(const Value& self, const std::string& name) {
  switch (self.kind()) {
    case Value::Kind::kString:
      if (std::optional<Value> m = Lookup(self, "str", kStrImplemented, name)) return m;
      if (In(kStrMethods, name)) return Refused("str." + name);
      return std::nullopt;
    case Value::Kind::kDict:
      if (std::optional<Value> m = Lookup(self, "dict", kDictImplemented, name)) return m;
      if (In(kDictMethods, name)) return Refused("dict." + name);
      if (In(kDictModifiers, name)) return Unsafe(self, name);
      return std::nullopt;
    case Value::Kind::kList:
      if ((self.shape() == Value::ListShape::kList && In(kListMethods, name)) ||
          (self.shape() == Value::ListShape::kTuple && (name == "count" || name == "index")))
        return Refused(std::string(TypeName(self)) + "." + name);
      if (self.shape() == Value::ListShape::kList && In(kListModifiers, name)) return Unsafe(self, name);
      return std::nullopt;
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
      if (In(kNumberAttributes, name)) return Refused(std::string(TypeName(self)) + "." + name);
      return std::nullopt;
    default: return std::nullopt;
  }
}

}  // namespace flover::jinja
