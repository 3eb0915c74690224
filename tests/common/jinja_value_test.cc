// Values with Python's semantics (common/jinja/value.h) and JSON in and out
// (common/jinja/json.h).
#include "common/jinja/value.h"

#include <gtest/gtest.h>

#include "common/jinja/error.h"
#include "common/jinja/json.h"

namespace flover::jinja {
namespace {

Value Strings(std::initializer_list<const char*> items, Value::ListShape shape = Value::ListShape::kList) {
  std::vector<Value> values;
  for (const char* s : items) values.push_back(Value::String(s));
  return Value::List(std::move(values), shape);
}

TEST(JinjaValue, TruthinessIsPythons) {
  for (const Value& v : {Value(), Value::None(), Value::Bool(false), Value::Int(0), Value::Float(0.0),
                         Value::String(""), Strings({}), Value::Dict({})})
    EXPECT_FALSE(Truthy(v)) << Repr(v);
  for (const Value& v : {Value::Bool(true), Value::Int(-1), Value::Float(0.5), Value::String(" "), Strings({"a"}),
                         Value::NewNamespace({})})
    EXPECT_TRUE(Truthy(v)) << Repr(v);
  // A generator is true even when empty, as in Python.
  EXPECT_TRUE(Truthy(Value::List({}, Value::ListShape::kIterator)));
}

TEST(JinjaValue, EqualityIsPythons) {
  EXPECT_TRUE(Equal(Value::Int(1), Value::Float(1.0)));
  EXPECT_TRUE(Equal(Value::Bool(true), Value::Int(1)));
  EXPECT_FALSE(Equal(Value::String("1"), Value::Int(1)));
  EXPECT_TRUE(Equal(Value(), Value::Undefined("x")));
  EXPECT_FALSE(Equal(Value(), Value::None()));
  EXPECT_TRUE(Equal(Strings({"a", "b"}), Strings({"a", "b"})));
  EXPECT_FALSE(Equal(Strings({"a"}), Strings({"a"}, Value::ListShape::kTuple)));
  Object a, b;
  a.Set("x", Value::Int(1));
  a.Set("y", Value::Int(2));
  b.Set("y", Value::Int(2));
  b.Set("x", Value::Int(1));
  EXPECT_TRUE(Equal(Value::Dict(a), Value::Dict(b)));  // order does not matter
  const Value ns = Value::NewNamespace({});
  EXPECT_TRUE(Equal(ns, ns));
  EXPECT_FALSE(Equal(ns, Value::NewNamespace({})));
}

TEST(JinjaValue, OrderingIsPythons) {
  EXPECT_LT(Compare(Value::Int(1), Value::Float(1.5), "<"), 0);
  EXPECT_LT(Compare(Value::String("B"), Value::String("a"), "<"), 0);
  EXPECT_GT(Compare(Value::String("é"), Value::String("z"), ">"), 0);
  EXPECT_LT(Compare(Strings({"a", "b"}), Strings({"a", "c"}), "<"), 0);
  EXPECT_LT(Compare(Strings({"a"}), Strings({"a", "b"}), "<"), 0);
  try {
    (void)Compare(Value::None(), Value::Int(1), "<");
    ADD_FAILURE() << "None < 1 compared";
  } catch (const Error& e) {
    EXPECT_EQ(e.message, "'<' is not supported between NoneType and int");
  }
  EXPECT_THROW((void)Compare(Value::Undefined("'x' is undefined"), Value::Int(1), "<"), Error);
}

TEST(JinjaValue, PrintingIsPythonsStrAndRepr) {
  EXPECT_EQ(Str(Value()), "");
  EXPECT_EQ(Str(Value::None()), "None");
  EXPECT_EQ(Str(Value::Bool(true)), "True");
  EXPECT_EQ(Str(Value::Float(2.0)), "2.0");
  EXPECT_EQ(Str(Value::String("it's")), "it's");
  Object o;
  o.Set("k", Strings({"it's", "b"}, Value::ListShape::kTuple));
  o.Set("n", Value::None());
  EXPECT_EQ(Str(Value::Dict(o)), "{'k': (\"it's\", 'b'), 'n': None}");
  EXPECT_EQ(Repr(Strings({"x"}, Value::ListShape::kTuple)), "('x',)");
  // What jinja2 would print as an object's address is refused.
  EXPECT_THROW((void)Str(Strings({"a"}, Value::ListShape::kIterator)), Error);
  EXPECT_THROW((void)Str(Strings({"a"}, Value::ListShape::kView)), Error);
  // A printed value is bounded.
  EXPECT_THROW((void)Str(Strings({"aaaa", "bbbb", "cccc"}), 10), Error);
}

TEST(JinjaValue, NamespacesAreShared) {
  const Value ns = Value::NewNamespace({});
  const Value copy = ns;
  copy.ns().attributes.Set("a", Value::Int(1));
  EXPECT_EQ(Str(ns), "<Namespace {'a': 1}>");
  ns.ns().attributes.Set("self", ns);  // a cycle: printing stops at a depth bound
  try {
    (void)Str(ns);
    ADD_FAILURE() << "a self-holding namespace printed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind, ErrorKind::kLimit);
  }
  ns.ns().attributes.Clear();  // break the cycle
}

TEST(JinjaJson, FromJsonKeepsOrderAndTypes) {
  const auto json = nlohmann::ordered_json::parse(R"({"b": 1, "a": [true, null, 2.5, "s"], "c": {}})");
  const Value v = FromJson(json);
  ASSERT_TRUE(v.is_dict());
  EXPECT_EQ(v.dict().entries()[0].first, "b");
  EXPECT_EQ(Str(v), "{'b': 1, 'a': [True, None, 2.5, 's'], 'c': {}}");
  EXPECT_THROW((void)FromJson(nlohmann::ordered_json::parse("18446744073709551615")), Error);
  std::string deep(300, '[');
  deep += std::string(300, ']');
  EXPECT_THROW((void)FromJson(nlohmann::ordered_json::parse(deep)), Error);
}

TEST(JinjaJson, ToJsonIsPythonsJsonDumps) {
  const Value v = FromJson(nlohmann::ordered_json::parse(R"({"b": [1, 2.0, "é"], "a": {"x": null}, "e": []})"));
  EXPECT_EQ(ToJson(v, {}), R"({"b": [1, 2.0, "é"], "a": {"x": null}, "e": []})");
  JsonFormat indented;
  indented.indent = "  ";
  indented.item_separator = ",";
  EXPECT_EQ(ToJson(v, indented), "{\n  \"b\": [\n    1,\n    2.0,\n    \"é\"\n  ],\n  \"a\": {\n    \"x\": null\n  },\n  \"e\": []\n}");
  JsonFormat sorted;
  sorted.sort_keys = true;
  sorted.ensure_ascii = true;
  EXPECT_EQ(ToJson(v, sorted), R"({"a": {"x": null}, "b": [1, 2.0, "\u00e9"], "e": []})");
  EXPECT_THROW((void)ToJson(Value(), {}), Error);
  EXPECT_THROW((void)ToJson(Value::NewNamespace({}), {}), Error);
  JsonFormat small;
  small.max_bytes = 8;
  EXPECT_THROW((void)ToJson(v, small), Error);
}

}  // namespace
}  // namespace flover::jinja
