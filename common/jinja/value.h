// Value: what a Jinja expression evaluates to, with Python's semantics (the semantics
// jinja2 templates are written against): undefined, none, bool, int, float, str,
// list/tuple, dict (string keys, insertion order), namespace, and callables.
//
// Values are immutable and cheap to copy (containers and strings are shared), as in
// jinja2's ImmutableSandboxedEnvironment, with one exception: a namespace() is a
// mutable object shared by every copy, which is what `{% set ns.attr = ... %}` needs.
//
// Integers are int64 (arithmetic that overflows is an error, not a wrap-around).
// An undefined value remembers why it is undefined ("'x' is undefined"), for the
// error raised when a template uses it in a way jinja2's default Undefined refuses.
//
// Thread-safety: a Value may be read from several threads, except a namespace or a
// generator, which its readers change; those are made by one render and stay in it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace flover::jinja {

class Value;
struct Function;
class Object;
struct Namespace;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kFunction };

  // What a kList value is in Python, beyond its items.
  enum class ListShape {
    kList,      // a list
    kTuple,     // a tuple: printed with (), never equal to a list
    kView,      // a dict view (keys(), values(), items()) or a range: printing and subscripts refused
    kIterator,  // a generator (map, select, the items filter, ...): always true, no len(), iterable once
  };
  // How far a kIterator has been consumed (it is shared by every copy, like a Python
  // generator object).
  enum class IteratorState { kFresh, kPartlyUsed, kUsedUp };

  Value();  // undefined
  static Value Undefined(std::string why);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);
  static Value List(std::vector<Value> items, ListShape shape = ListShape::kList);
  static Value Dict(Object object);
  static Value NewNamespace(Object attributes);
  static Value Callable(Function function);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  // bool, int or float (Python's bool is an int).
  bool is_number() const { return kind() == Kind::kBool || kind() == Kind::kInt || kind() == Kind::kFloat; }
  // bool or int.
  bool is_integral() const { return kind() == Kind::kBool || kind() == Kind::kInt; }

  // REQUIRES: the matching kind (as_int: is_integral(); as_double: is_number()).
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const;
  double as_double() const;
  const std::string& as_string() const { return *std::get<kStringIndex>(v_); }
  const std::vector<Value>& items() const { return std::get<kListIndex>(v_)->items; }
  ListShape shape() const { return std::get<kListIndex>(v_)->shape; }
  bool is_tuple() const { return is_list() && shape() == ListShape::kTuple; }
  // REQUIRES: a kIterator.
  IteratorState iterator_state() const { return std::get<kListIndex>(v_)->state; }
  void set_iterator_state(IteratorState state) const { std::get<kListIndex>(v_)->state = state; }
  const Object& dict() const { return *std::get<kDictIndex>(v_); }
  Namespace& ns() const { return *std::get<kNamespaceIndex>(v_); }
  const Function& function() const { return *std::get<kFunctionIndex>(v_); }
  // REQUIRES: is_undefined(). Why it is undefined, as jinja2 words it.
  const std::string& undefined_reason() const;

 private:
  struct ListData {
    std::vector<Value> items;
    ListShape shape = ListShape::kList;
    mutable IteratorState state = IteratorState::kFresh;  // kIterator only
  };
  static constexpr size_t kUndefinedIndex = 0;
  static constexpr size_t kStringIndex = 5;
  static constexpr size_t kListIndex = 6;
  static constexpr size_t kDictIndex = 7;
  static constexpr size_t kNamespaceIndex = 8;
  static constexpr size_t kFunctionIndex = 9;
  // In Kind's order.
  using Storage = std::variant<std::shared_ptr<const std::string>, std::monostate, bool, int64_t, double,
                               std::shared_ptr<const std::string>, std::shared_ptr<const ListData>,
                               std::shared_ptr<const Object>, std::shared_ptr<Namespace>,
                               std::shared_ptr<const Function>>;
  template <size_t I, typename T>
  static Value Make(T&& x) {
    Value v;
    v.v_.template emplace<I>(std::forward<T>(x));
    return v;
  }
  Storage v_;
};

// A Python dict with string keys, in insertion order. Lookups are linear while it is
// small and go through a hash index once it grows (a template or its variables can
// hold large dicts).
class Object {
 public:
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
  const Value* Find(std::string_view key) const;
  // Sets `key`, keeping its place when it exists.
  void Set(std::string key, Value value);
  void Clear();

 private:
  static constexpr size_t kIndexFrom = 16;  // entries from which index_ is kept

  std::optional<size_t> IndexOf(std::string_view key) const;

  std::vector<std::pair<std::string, Value>> entries_;
  std::unordered_map<std::string, size_t> index_;  // key -> position in entries_; empty while small
};

// jinja2's namespace(): attributes a template may assign.
struct Namespace {
  Object attributes;
};

// Python's type name of `v` ("str", "int", "NoneType", "list", "dict", ...), for messages.
const char* TypeName(const Value& v);

// bool(v): false for undefined, none, false, 0, 0.0, "" and empty containers.
bool Truthy(const Value& v);
// v == w. Numbers compare by value (True == 1 == 1.0); lists, tuples and dicts
// element-wise; an undefined equals only an undefined; a namespace, view or iterator
// only itself.
bool Equal(const Value& v, const Value& w);
// <0, 0, >0 for v < w, v == w, v > w: numbers, strings (by character), lists
// (lexicographically). Other pairs throw, naming `op`, as Python's TypeError does.
int Compare(const Value& v, const Value& w, std::string_view op);

// str(v), as {{ v }} prints it: "" for undefined, "None", "True", "1.0", a string as
// is, lists, tuples and dicts as their repr. Callables, views and iterators throw
// Unsupported (jinja2 would print an object's address or type).
// Throws a Limit error when the text would be longer than `max_bytes`.
std::string Str(const Value& v, size_t max_bytes = SIZE_MAX);
// repr(v): as Str but strings quoted.
std::string Repr(const Value& v, size_t max_bytes = SIZE_MAX);

// Throws the UndefinedError jinja2 raises when an undefined value is used.
[[noreturn]] void FailUndefined(const Value& v);

}  // namespace flover::jinja
