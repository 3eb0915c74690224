#include "common/jinja/predicates.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/jinja/access.h"
#include "common/jinja/error.h"
#include "common/jinja/text.h"

namespace flover::jinja {

namespace {

// A test without arguments.
bool NoArgs(std::string_view name, Args& args) {
  const BoundArgs a(std::string("test '") + std::string(name) + "'", std::move(args), {});
  return true;
}

// The one argument of a comparison test.
Value Other(std::string_view name, Args& args) {
  const BoundArgs a(std::string("test '") + std::string(name) + "'", std::move(args), {"other"});
  return a.Required(0);
}

bool IsDefined(const Value& v, Args& args) { return NoArgs("defined", args) && !v.is_undefined(); }
bool IsUndefined(const Value& v, Args& args) { return NoArgs("undefined", args) && v.is_undefined(); }
bool IsNone(const Value& v, Args& args) { return NoArgs("none", args) && v.is_none(); }
bool IsBoolean(const Value& v, Args& args) { return NoArgs("boolean", args) && v.kind() == Value::Kind::kBool; }
bool IsTrue(const Value& v, Args& args) { return NoArgs("true", args) && v.kind() == Value::Kind::kBool && v.as_bool(); }
bool IsFalse(const Value& v, Args& args) {
  return NoArgs("false", args) && v.kind() == Value::Kind::kBool && !v.as_bool();
}
bool IsInteger(const Value& v, Args& args) { return NoArgs("integer", args) && v.kind() == Value::Kind::kInt; }
bool IsFloat(const Value& v, Args& args) { return NoArgs("float", args) && v.kind() == Value::Kind::kFloat; }
bool IsNumber(const Value& v, Args& args) { return NoArgs("number", args) && v.is_number(); }
bool IsString(const Value& v, Args& args) { return NoArgs("string", args) && v.is_string(); }
bool IsMapping(const Value& v, Args& args) { return NoArgs("mapping", args) && v.is_dict(); }

bool IsIterable(const Value& v, Args& args) {
  NoArgs("iterable", args);
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}

// len() and [] both work (jinja2's test_sequence); so for an undefined.
bool IsSequence(const Value& v, Args& args) {
  NoArgs("sequence", args);
  return v.is_undefined() || v.is_string() || v.is_dict() ||
         (v.is_list() && v.shape() != Value::ListShape::kIterator && v.shape() != Value::ListShape::kView);
}

// str(v).islower(): some cased character and none upper case.
bool IsLowerCase(const Value& v, Args& args) {
  NoArgs("lower", args);
  const std::string s = Str(v);
  return Lower(s) == s && Upper(s) != s;
}

bool IsUpperCase(const Value& v, Args& args) {
  NoArgs("upper", args);
  const std::string s = Str(v);
  return Upper(s) == s && Lower(s) != s;
}

// value % divisor == 0, for ints and floats as Python computes it.
bool Divisible(const Value& v, const Value& divisor, const char* test) {
  if (!v.is_number() || !divisor.is_number())
    Fail(ErrorKind::kRender, std::string("test '") + test + "' needs numbers, got " + TypeName(v) + " and " +
                                 TypeName(divisor));
  if (v.is_integral() && divisor.is_integral()) {
    if (divisor.as_int() == 0) Fail(ErrorKind::kRender, "integer division or modulo by zero");
    if (divisor.as_int() == -1) return true;
    return v.as_int() % divisor.as_int() == 0;
  }
  if (divisor.as_double() == 0) Fail(ErrorKind::kRender, "float modulo by zero");
  return std::fmod(v.as_double(), divisor.as_double()) == 0;
}

// value % 2 as Python computes it (floored), for `even` and `odd`.
double ModTwo(const Value& v, const char* test) {
  if (!v.is_number()) Fail(ErrorKind::kRender, std::string("test '") + test + "' needs a number, got " + TypeName(v));
  if (v.is_integral()) return static_cast<double>(((v.as_int() % 2) + 2) % 2);
  const double m = std::fmod(v.as_double(), 2.0);
  return m < 0 ? m + 2.0 : m;
}

bool IsEven(const Value& v, Args& args) {
  NoArgs("even", args);
  return ModTwo(v, "even") == 0;
}

bool IsOdd(const Value& v, Args& args) {
  NoArgs("odd", args);
  return ModTwo(v, "odd") == 1;
}

bool IsDivisibleBy(const Value& v, Args& args) { return Divisible(v, Other("divisibleby", args), "divisibleby"); }

bool IsEq(const Value& v, Args& args) { return Equal(v, Other("eq", args)); }
bool IsNe(const Value& v, Args& args) { return !Equal(v, Other("ne", args)); }
bool IsLt(const Value& v, Args& args) { return Compare(v, Other("lt", args), "<") < 0; }
bool IsLe(const Value& v, Args& args) { return Compare(v, Other("le", args), "<=") <= 0; }
bool IsGt(const Value& v, Args& args) { return Compare(v, Other("gt", args), ">") > 0; }
bool IsGe(const Value& v, Args& args) { return Compare(v, Other("ge", args), ">=") >= 0; }
bool IsIn(const Value& v, Args& args) { return Contains(Other("in", args), v); }

bool IsSameAs(const Value& v, Args& args) {
  const Value other = Other("sameas", args);
  if (!other.is_none() && other.kind() != Value::Kind::kBool)
    Fail(ErrorKind::kUnsupported, "the test 'sameas' is supported against none, true and false only");
  return v.kind() == other.kind() && Equal(v, other);
}

struct NamedTest {
  std::string_view name;
  TestFunction test;
};

constexpr NamedTest kTests[] = {
    {"defined", IsDefined},   {"undefined", IsUndefined}, {"none", IsNone},         {"boolean", IsBoolean},
    {"true", IsTrue},         {"false", IsFalse},         {"integer", IsInteger},   {"float", IsFloat},
    {"number", IsNumber},     {"string", IsString},       {"mapping", IsMapping},   {"iterable", IsIterable},
    {"sequence", IsSequence}, {"lower", IsLowerCase},     {"upper", IsUpperCase},   {"even", IsEven},
    {"odd", IsOdd},           {"divisibleby", IsDivisibleBy}, {"eq", IsEq},         {"equalto", IsEq},
    {"==", IsEq},             {"ne", IsNe},               {"!=", IsNe},             {"lt", IsLt},
    {"lessthan", IsLt},       {"<", IsLt},                {"le", IsLe},             {"<=", IsLe},
    {"gt", IsGt},             {"greaterthan", IsGt},      {">", IsGt},              {"ge", IsGe},
    {">=", IsGe},             {"in", IsIn},               {"sameas", IsSameAs},
};

constexpr std::string_view kJinjaTests[] = {"callable", "escaped", "filter", "test"};

}  // namespace

TestFunction FindTest(std::string_view name) {
  for (const NamedTest& t : kTests)
    if (t.name == name) return t.test;
  return nullptr;
}

bool IsJinjaTestName(std::string_view name) {
  return FindTest(name) || std::find(std::begin(kJinjaTests), std::end(kJinjaTests), name) != std::end(kJinjaTests);
}

bool ApplyTest(std::string_view name, const Value& value, Args args) {
  const TestFunction test = FindTest(name);
  if (!test)
    Fail(ErrorKind::kUnsupported, IsJinjaTestName(name) ? "the test '" + std::string(name) + "' is not supported"
                                                        : "no test named '" + std::string(name) + "'");
  return test(value, args);
}

}  // namespace flover::jinja
