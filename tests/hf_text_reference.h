// What Hugging Face tokenizers and transformers computed from text on the qwen2 fixture
// (tests/fixtures/models/qwen2/text_reference.json, made by
// scripts/reference/qwen2_text_fixtures.py; tests/fixtures/models/README.md): text
// prompts, their ids, and the 16 greedy tokens after each with their text.
#pragma once

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/test_paths.h"

namespace flover::testing {

struct TextPrompt {
  std::string kind;  // "ascii", "unicode", "digits", "whitespace", "chat"
  std::string text;
  std::vector<int> ids;     // tokenizers' encode(text): no BOS, no EOS
  std::vector<int> greedy;  // transformers' 16 greedy tokens after `ids`
  std::string greedy_text;  // tokenizers' decode(greedy, skip_special_tokens=False)
};

// Reads tests/fixtures/models/<name>/text_reference.json; throws (failing the test)
// when the file is missing or malformed.
inline std::vector<TextPrompt> LoadTextReference(const std::string& name) {
  const std::string path = FixturePath("models/" + name + "/text_reference.json");
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  const nlohmann::json j = nlohmann::json::parse(in);
  std::vector<TextPrompt> prompts;
  for (const auto& p : j.at("prompts"))
    prompts.push_back({p.at("kind"), p.at("text"), p.at("ids"), p.at("greedy"), p.at("greedy_text")});
  if (prompts.empty()) throw std::runtime_error(path + " has no prompts");
  return prompts;
}

}  // namespace flover::testing
