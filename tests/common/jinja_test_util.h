// Helpers of the Jinja engine's tests: fixture files, and rendering a template with
// variables given as JSON (plus transformers' raise_exception and strftime_now).
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/chat_template.h"
#include "common/jinja/json.h"
#include "common/jinja/template.h"

namespace flover::jinja::testing {

// A file under tests/fixtures, whole; fails the test when it cannot be read.
inline std::string ReadFixture(const std::string& relative) {
  const std::string path = std::string(FLOVER_FIXTURES_DIR) + "/" + relative;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline nlohmann::ordered_json ReadJsonFixture(const std::string& relative) {
  return nlohmann::ordered_json::parse(ReadFixture(relative));
}

// `source` rendered with `variables` (a JSON object) and transformers' functions.
inline Result<std::string> RenderWith(std::string_view source, const nlohmann::ordered_json& variables,
                                      const RenderLimits& limits = {}) {
  Result<Template> t = Template::Parse(source);
  if (!t.ok()) return t.status();
  Object vars = variables.is_object() ? FromJson(variables).dict() : Object{};
  AddTransformersFunctions(&vars);
  return t->Render(vars, limits);
}

// `source` rendered without variables; the error's message when it fails.
inline std::string Render(std::string_view source, const nlohmann::ordered_json& variables = {}) {
  Result<std::string> out = RenderWith(source, variables);
  return out.ok() ? *out : "ERROR: " + out.status().message();
}

}  // namespace flover::jinja::testing
