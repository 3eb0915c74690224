// Template (common/jinja/template.h): parsing and rendering through the public API,
// the errors a user sees (with line and column), and the bounds that keep a hostile
// template from hanging, exhausting memory or overflowing the stack. How values,
// filters and statements behave is pinned down against jinja2 in jinja_golden_test.cc.
#include "common/jinja/template.h"

#include <gtest/gtest.h>

#include "tests/common/jinja_test_util.h"

namespace flover::jinja {
namespace {

using testing::Render;
using testing::RenderWith;

Status ParseStatus(std::string_view source) {
  Result<Template> t = Template::Parse(source);
  return t.ok() ? Status::Ok() : t.status();
}

TEST(JinjaTemplate, ParsesOnceRendersMany) {
  Result<Template> t = Template::Parse("{% for m in messages %}[{{ m }}]{% endfor %}");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  for (int n = 0; n < 3; ++n) {
    std::vector<Value> items;
    for (int i = 0; i < n; ++i) items.push_back(Value::Int(i));
    Object vars;
    vars.Set("messages", Value::List(std::move(items)));
    Result<std::string> out = t->Render(vars);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(*out, n == 0 ? "" : (n == 1 ? "[0]" : "[0][1]"));
  }
}

TEST(JinjaTemplate, OperatorPrecedenceIsJinjas) {
  EXPECT_EQ(Render("{{ 1 + 2 * 3 }}|{{ 2 ** 3 ** 2 }}|{{ -2 ** 2 }}|{{ not 1 == 2 }}|{{ 1 ~ 2 * 3 }}"),
            "7|64|4|True|16");
  EXPECT_EQ(Render("{{ -1 | abs }}|{{ 'a' ~ 'b' | upper }}|{{ 1 if 0 else 2 if 0 else 3 }}"), "1|aB|3");
  EXPECT_EQ(Render("{{ x is defined and x }}|{{ not x is defined }}", {{"x", 0}}), "0|False");
}

TEST(JinjaTemplate, ParseErrorsNameLineColumnAndConstruct) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{% for x in y %}", "line 1, column 17: the 'for' at line 1 is not closed (expected 'endfor' or 'else')"},
      {"a\n{% if x %}{% endfor %}", "line 2, column 14: unexpected 'endfor': the 'if' at line 2 is still open"},
      {"{% endif %}", "line 1, column 4: unexpected 'endif': no block is open"},
      {"{{ }}", "line 1, column 4: expected an expression, got '}}'"},
      {"{{ a b }}", "line 1, column 6: expected '}}', got 'b'"},
      {"{% nosuchtag %}", "line 1, column 4: unknown tag 'nosuchtag'"},
      {"\n\n  {% include 'x' %}", "line 3, column 6: the 'include' tag is not supported"},
      {"{% for x in y recursive %}{% endfor %}", "recursive for loops are not supported"},
      {"{% break %}", "line 1, column 4: 'break' outside of a for loop"},
      {"{{ x | wordwrap }}", "line 1, column 8: the filter 'wordwrap' is not supported"},
      {"{{ x | nosuch }}", "line 1, column 8: no filter named 'nosuch'"},
      {"{{ x is escaped }}", "line 1, column 9: the test 'escaped' is not supported"},
      {"{{ x is nosuch }}", "no test named 'nosuch'"},
      {"{{ f(*a) }}", "*args and **kwargs in calls are not supported"},
      {"{{ f(a=1, 2) }}", "a positional argument follows a keyword argument"},
      {"{% macro m(a=1, b) %}{% endmacro %}", "parameter 'b' without a default follows one with a default"},
      {"{% set true = 1 %}", "cannot assign to 'true'"},
      {"{% set x | upper %}a{% endset %}", "filters on a set block are not supported"},
      {"{{ x is defined is defined }}", "tests cannot be chained with 'is'"},
  };
  for (const auto& [source, message] : cases) {
    const Status s = ParseStatus(source);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << source;
    EXPECT_NE(s.message().find(message), std::string::npos) << source << " -> " << s.message();
  }
}

TEST(JinjaTemplate, RenderErrorsNameLineColumn) {
  EXPECT_EQ(Render("a\n{{ x.y }}"), "ERROR: line 2, column 5: 'x' is undefined");
  EXPECT_EQ(Render("{{ raise_exception('roles must alternate') }}"), "ERROR: line 1, column 4: roles must alternate");
  EXPECT_EQ(Render("{{ 'a' + 1 }}"), "ERROR: line 1, column 8: unsupported operand types for +: 'str' and 'int'");
  EXPECT_EQ(Render("{{ 'abc'.center(9) }}"), "ERROR: line 1, column 9: the method str.center() is not supported");
  EXPECT_EQ(Render("{{ [].append(1) }}"),
            "ERROR: line 1, column 6: access to attribute 'append' of 'list' object is unsafe.");
  EXPECT_EQ(Render("{{ 2 ** 63 }}"), "ERROR: line 1, column 6: integer overflow (int64)");
  EXPECT_EQ(Render("{{ 'x' | upper(1) }}"), "ERROR: line 1, column 10: filter 'upper' takes at most 0 arguments, got 1");
}

TEST(JinjaTemplate, TransformersFunctions) {
  // strftime_now is local time; its shape is all a test can check.
  const std::string year = Render("{{ strftime_now('%Y') }}");
  ASSERT_EQ(year.size(), 4u) << year;
  EXPECT_TRUE(year >= "2024") << year;
  EXPECT_NE(Render("{{ strftime_now('%' * 300) }}").find("ERROR"), std::string::npos);
}

Status RenderStatus(std::string_view source, const RenderLimits& limits = {}) {
  Result<std::string> out = RenderWith(source, nlohmann::ordered_json::object(), limits);
  return out.ok() ? Status::Ok() : out.status();
}

TEST(JinjaTemplate, HostileTemplatesEndWithAnError) {
  RenderLimits small;
  small.max_steps = 100000;
  small.max_output_bytes = 1 << 16;
  small.max_items = 5000;
  const std::vector<std::pair<std::string, std::string>> cases = {
      // Endless work: nested loops.
      {"{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}", "more work than allowed"},
      // Output and strings.
      {"{% for i in range(2000) %}{{ 'x' * 100 }}{% endfor %}", "rendered text is longer"},
      {"{{ 'x' * 100000000000 }}", "bytes allowed"},
      {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
       "bytes allowed"},
      {"{{ ('x' * 1000) | replace('x', 'y' * 1000) }}", "bytes allowed"},
      {"{{ [1] * 100000000 }}", "items"},
      {"{{ range(1000000) | list }}", "range() of 1000000 items"},
      // Recursion.
      {"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nests deeper"},
  };
  for (const auto& [source, message] : cases) {
    const Status s = RenderStatus(source, small);
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << source << " -> " << s.ToString();
    EXPECT_NE(s.message().find(message), std::string::npos) << source << " -> " << s.message();
  }
}

TEST(JinjaTemplate, HostileSourcesAreRefusedWhenParsed) {
  for (const std::string& source : {"{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}",
                                    "{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}",
                                    "{{ 1" + [] {
                                      std::string s;
                                      for (int i = 0; i < 5000; ++i) s += " + 1";
                                      return s;
                                    }() + " }}",
                                    "{{ x" + [] {
                                      std::string s;
                                      for (int i = 0; i < 5000; ++i) s += "|trim";
                                      return s;
                                    }() + " }}",
                                    [] {
                                      std::string s;
                                      for (int i = 0; i < 5000; ++i) s += "{% if x %}";
                                      return s;
                                    }(),
                                    "{{ " + std::string(5000, '-') + "1 }}",
                                    "{{ " + [] {
                                      std::string s;
                                      for (int i = 0; i < 5000; ++i) s += "not ";
                                      return s;
                                    }() + "x }}"}) {
    const Status s = ParseStatus(source);
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << source.substr(0, 40) << " -> " << s.ToString();
    EXPECT_NE(s.message().find("deeper than 100 levels"), std::string::npos) << s.message();
  }
  TemplateOptions tiny;
  tiny.max_source_bytes = 10;
  EXPECT_EQ(Template::Parse("{{ 'long template' }}", tiny).status().code(), StatusCode::kResourceExhausted);
}

TEST(JinjaTemplate, UnclosedConstructsAtTheEndAreErrors) {
  for (const char* source : {"{{", "{{ x", "{%", "{% if", "{#", "{{ 'a", "{{ (", "{% for x in", "{{ x.", "{{ x |"}) {
    const Status s = ParseStatus(source);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << source;
    EXPECT_NE(s.message().find("line 1"), std::string::npos) << source << " -> " << s.message();
  }
}

}  // namespace
}  // namespace flover::jinja
