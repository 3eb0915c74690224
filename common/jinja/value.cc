#include "common/jinja/value.h"

#include <algorithm>

#include "common/jinja/error.h"
#include "common/jinja/function.h"
#include "common/jinja/text.h"

namespace flover::jinja {

namespace {

// The three-way comparison of two numbers (bools count as ints).
int CompareNumbers(const Value& v, const Value& w) {
  if (v.is_integral() && w.is_integral()) return v.as_int() < w.as_int() ? -1 : (v.as_int() > w.as_int() ? 1 : 0);
  const double a = v.as_double(), b = w.as_double();
  return a < b ? -1 : (a > b ? 1 : 0);
}

// Containers nest this deep at most when printed (a namespace can hold itself).
constexpr int kMaxReprDepth = 200;

std::string ReprAt(const Value& v, int depth, size_t max_bytes);

void CheckLength(const std::string& text, size_t max_bytes) {
  if (text.size() > max_bytes)
    Fail(ErrorKind::kLimit, "printing a value takes more than " + std::to_string(max_bytes) + " bytes");
}

std::string ReprItems(const std::vector<Value>& items, int depth, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    out += (i ? ", " : "") + ReprAt(items[i], depth, max_bytes);
    CheckLength(out, max_bytes);
  }
  return out;
}

std::string ReprObject(const Object& object, int depth, size_t max_bytes) {
  std::string out = "{";
  for (size_t i = 0; i < object.entries().size(); ++i) {
    out += (i ? ", " : "") + StringRepr(object.entries()[i].first) + ": " +
           ReprAt(object.entries()[i].second, depth, max_bytes);
    CheckLength(out, max_bytes);
  }
  return out + "}";
}

std::string ReprAt(const Value& v, int depth, size_t max_bytes) {
  if (depth > kMaxReprDepth) Fail(ErrorKind::kLimit, "a value nested too deeply to print");
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "Undefined";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.as_bool() ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v.as_int());
    case Value::Kind::kFloat: return FloatRepr(v.as_double());
    case Value::Kind::kString: return StringRepr(v.as_string());
    case Value::Kind::kList:
      switch (v.shape()) {
        case Value::ListShape::kList: return "[" + ReprItems(v.items(), depth + 1, max_bytes) + "]";
        case Value::ListShape::kTuple:
          return "(" + ReprItems(v.items(), depth + 1, max_bytes) + (v.items().size() == 1 ? ",)" : ")");
        case Value::ListShape::kView:
          Fail(ErrorKind::kUnsupported, "printing a dict view or range is not supported (use |list)");
        case Value::ListShape::kIterator:
          Fail(ErrorKind::kUnsupported, "printing a generator (what map, select, ... return) is not supported (use |list)");
      }
      break;
    case Value::Kind::kDict: return ReprObject(v.dict(), depth + 1, max_bytes);
    case Value::Kind::kNamespace: return "<Namespace " + ReprObject(v.ns().attributes, depth + 1, max_bytes) + ">";
    case Value::Kind::kFunction:
      Fail(ErrorKind::kUnsupported, "printing " + v.function().name + " (a function) is not supported");
  }
  return "?";
}

}  // namespace

std::optional<size_t> Object::IndexOf(std::string_view key) const {
  if (!index_.empty()) {
    const auto it = index_.find(std::string(key));
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }
  for (size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].first == key) return i;
  return std::nullopt;
}

const Value* Object::Find(std::string_view key) const {
  const std::optional<size_t> i = IndexOf(key);
  return i ? &entries_[*i].second : nullptr;
}

void Object::Set(std::string key, Value value) {
  if (const std::optional<size_t> i = IndexOf(key)) {
    entries_[*i].second = std::move(value);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(value));
  if (!index_.empty()) {
    index_.emplace(entries_.back().first, entries_.size() - 1);
  } else if (entries_.size() >= kIndexFrom) {
    for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  }
}

void Object::Clear() {
  entries_.clear();
  index_.clear();
}

Value::Value() = default;

Value Value::Undefined(std::string why) {
  return Make<kUndefinedIndex>(std::make_shared<const std::string>(std::move(why)));
}
Value Value::None() { return Make<1>(std::monostate{}); }
Value Value::Bool(bool b) { return Make<2>(b); }
Value Value::Int(int64_t i) { return Make<3>(i); }
Value Value::Float(double d) { return Make<4>(d); }
Value Value::String(std::string s) { return Make<kStringIndex>(std::make_shared<const std::string>(std::move(s))); }
Value Value::List(std::vector<Value> items, ListShape shape) {
  return Make<kListIndex>(std::make_shared<const ListData>(ListData{std::move(items), shape}));
}
Value Value::Dict(Object object) { return Make<kDictIndex>(std::make_shared<const Object>(std::move(object))); }
Value Value::NewNamespace(Object attributes) {
  return Make<kNamespaceIndex>(std::make_shared<Namespace>(Namespace{std::move(attributes)}));
}
Value Value::Callable(Function function) {
  return Make<kFunctionIndex>(std::make_shared<const Function>(std::move(function)));
}

int64_t Value::as_int() const { return kind() == Kind::kBool ? (as_bool() ? 1 : 0) : std::get<int64_t>(v_); }

double Value::as_double() const {
  return kind() == Kind::kFloat ? std::get<double>(v_) : static_cast<double>(as_int());
}

const std::string& Value::undefined_reason() const {
  static const std::string kUnnamed = "a value is undefined";
  const auto& why = std::get<kUndefinedIndex>(v_);
  return why ? *why : kUnnamed;
}

const char* TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "Undefined";
    case Value::Kind::kNone: return "NoneType";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kInt: return "int";
    case Value::Kind::kFloat: return "float";
    case Value::Kind::kString: return "str";
    case Value::Kind::kList:
      switch (v.shape()) {
        case Value::ListShape::kList: return "list";
        case Value::ListShape::kTuple: return "tuple";
        case Value::ListShape::kView: return "view";
        case Value::ListShape::kIterator: return "generator";
      }
      break;
    case Value::Kind::kDict: return "dict";
    case Value::Kind::kNamespace: return "Namespace";
    case Value::Kind::kFunction: return "function";
  }
  return "?";
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.as_bool();
    case Value::Kind::kInt: return v.as_int() != 0;
    case Value::Kind::kFloat: return v.as_double() != 0.0;
    case Value::Kind::kString: return !v.as_string().empty();
    case Value::Kind::kList: return v.shape() == Value::ListShape::kIterator || !v.items().empty();
    case Value::Kind::kDict: return !v.dict().entries().empty();
    case Value::Kind::kNamespace:
    case Value::Kind::kFunction: return true;
  }
  return true;
}

bool Equal(const Value& v, const Value& w) {
  if (v.is_number() && w.is_number()) return CompareNumbers(v, w) == 0;
  if (v.kind() != w.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return v.as_string() == w.as_string();
    case Value::Kind::kList:
      if (v.shape() == Value::ListShape::kView || v.shape() == Value::ListShape::kIterator ||
          w.shape() == Value::ListShape::kView || w.shape() == Value::ListShape::kIterator)
        return &v.items() == &w.items();
      return v.shape() == w.shape() &&
             std::equal(v.items().begin(), v.items().end(), w.items().begin(), w.items().end(), Equal);
    case Value::Kind::kDict: {
      const Object& a = v.dict();
      const Object& b = w.dict();
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [key, value] : a.entries()) {
        const Value* other = b.Find(key);
        if (!other || !Equal(value, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace: return &v.ns() == &w.ns();
    case Value::Kind::kFunction: return &v.function() == &w.function();
    default: return false;  // numbers were compared above
  }
}

int Compare(const Value& v, const Value& w, std::string_view op) {
  if (v.is_number() && w.is_number()) return CompareNumbers(v, w);
  if (v.is_undefined()) FailUndefined(v);
  if (w.is_undefined()) FailUndefined(w);
  if (v.is_string() && w.is_string()) {
    // UTF-8 byte order is code point order.
    const int c = v.as_string().compare(w.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  const auto comparable = [](const Value& x) {
    return x.shape() == Value::ListShape::kList || x.shape() == Value::ListShape::kTuple;
  };
  if (v.is_list() && w.is_list() && v.shape() == w.shape() && comparable(v)) {
    const std::vector<Value>& a = v.items();
    const std::vector<Value>& b = w.items();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
      if (!Equal(a[i], b[i])) return Compare(a[i], b[i], op);
    return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
  }
  Fail(ErrorKind::kRender, "'" + std::string(op) + "' is not supported between " + TypeName(v) + " and " +
                               TypeName(w));
}

std::string Str(const Value& v, size_t max_bytes) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kString: return v.as_string();
    default: return Repr(v, max_bytes);
  }
}

std::string Repr(const Value& v, size_t max_bytes) {
  std::string out = ReprAt(v, 0, max_bytes);
  CheckLength(out, max_bytes);
  return out;
}

void FailUndefined(const Value& v) { Fail(ErrorKind::kRender, v.undefined_reason()); }

}  // namespace flover::jinja
