// Golden tests of the Jinja engine: the cases of tests/fixtures/jinja/expected.json
// (small templates that pin down its semantics) and
// tests/fixtures/chat_templates/expected.json (published and built-in chat templates,
// several conversations each), whose expected outputs Python's jinja2 rendered the way
// transformers renders chat templates (scripts/reference/chat_template_fixtures.py).
// Each case must render the same text here, or fail where jinja2 failed; cases marked
// "unsupported" are jinja2 features the engine refuses, and must fail with a message
// that says so.
#include <gtest/gtest.h>

#include <map>

#include "tests/common/jinja_test_util.h"

namespace flover::jinja {
namespace {

using testing::ReadFixture;
using testing::ReadJsonFixture;
using testing::RenderWith;

// Checks one case whose template text is `source`; returns whether it passed.
bool CheckCase(const nlohmann::ordered_json& c, std::string_view source) {
  const std::string name = c.at("name").get<std::string>();
  const Result<std::string> out = RenderWith(source, c.at("variables"));
  if (c.contains("flover")) {  // jinja2 renders it; the engine refuses it
    EXPECT_FALSE(out.ok()) << name << ": rendered " << (out.ok() ? *out : "") << "\n" << source;
    if (!out.ok()) {
      EXPECT_NE(out.status().message().find("not supported"), std::string::npos)
          << name << ": " << out.status().ToString();
    }
    return !out.ok();
  }
  if (c.contains("error")) {
    const std::string error = c.at("error").get<std::string>();
    EXPECT_FALSE(out.ok()) << name << ": jinja2 failed (" << error << ") but the engine rendered:\n" << *out
                           << "\ntemplate:\n" << source;
    if (out.ok()) return false;
    // raise_exception's message reaches the user.
    if (error.starts_with("TemplateError: ")) {
      const std::string message = error.substr(std::string("TemplateError: ").size());
      EXPECT_NE(out.status().message().find(message), std::string::npos) << name << ": " << out.status().ToString();
    }
    return true;
  }
  const std::string expected = c.at("output").get<std::string>();
  EXPECT_TRUE(out.ok()) << name << ": " << out.status().ToString() << "\ntemplate:\n" << source;
  if (!out.ok()) return false;
  EXPECT_EQ(*out, expected) << name << "\ntemplate:\n" << source;
  return *out == expected;
}

TEST(JinjaGolden, SnippetsRenderAsJinja2) {
  const nlohmann::ordered_json cases = ReadJsonFixture("jinja/expected.json").at("cases");
  ASSERT_GT(cases.size(), 100u);
  size_t passed = 0;
  for (const auto& c : cases) passed += CheckCase(c, c.at("template").get<std::string>());
  EXPECT_EQ(passed, cases.size());
}

TEST(JinjaGolden, ChatTemplatesRenderAsTransformers) {
  const nlohmann::ordered_json cases = ReadJsonFixture("chat_templates/expected.json").at("cases");
  ASSERT_GT(cases.size(), 300u);
  std::map<std::string, std::string> sources;  // path -> text
  size_t passed = 0;
  for (const auto& c : cases) {
    const std::string path = c.at("template").get<std::string>();
    auto it = sources.find(path);
    if (it == sources.end()) {
      // Paths are relative to the source tree: tests/fixtures/... or common/chat_templates/...
      const std::string relative = path.starts_with("tests/fixtures/") ? path.substr(15) : "../../" + path;
      it = sources.emplace(path, ReadFixture(relative)).first;
    }
    passed += CheckCase(c, it->second);
  }
  EXPECT_EQ(passed, cases.size());
}

// The built-in templates are the texts the golden cases rendered.
TEST(JinjaGolden, BuiltinTemplatesAreTheFilesRendered) {
  for (const std::string name : {"chatml", "llama2", "llama3", "mistral", "zephyr", "gemma", "phi3"}) {
    const std::string* text = BuiltinChatTemplate(name);
    ASSERT_NE(text, nullptr) << name;
    EXPECT_EQ(*text, ReadFixture("../../common/chat_templates/" + name + ".jinja")) << name;
  }
}

}  // namespace
}  // namespace flover::jinja
