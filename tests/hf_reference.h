// What Hugging Face transformers computed on a tiny checkpoint of tests/fixtures/models
// (reference.json; the layout is in tests/fixtures/models/README.md), for tests that
// compare Flover's loaders and decoders with it.
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>
#include <type_traits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/test_paths.h"

namespace flover::testing {

struct HfReference {
  std::string folder;                          // the checkpoint folder
  std::vector<std::vector<int>> prompts;       // prompts, then long_prompts (if any)
  std::vector<std::vector<int>> greedy;        // 16 greedy tokens after each prompt
  std::vector<std::vector<float>> logits;      // [vocab] at each prompt's last position
  std::vector<std::vector<float>> step_logits; // prompt 0: the prefill, then decode steps
};

// The fixture architectures, in tests/fixtures/models/<name>.
inline const std::vector<std::string>& HfFixtureNames() {
  static const std::vector<std::string> kNames = {"llama2", "tinyllama", "llama3", "mistral", "qwen2", "gptj"};
  return kNames;
}

// Reads tests/fixtures/models/<name>/reference.json; throws (failing the test) when
// the file is missing or malformed.
inline HfReference LoadHfReference(const std::string& name) {
  HfReference ref;
  ref.folder = FixturePath("models/" + name);
  std::ifstream in(ref.folder + "/reference.json");
  if (!in) throw std::runtime_error("cannot open " + ref.folder + "/reference.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  auto append = [&j](const char* key, auto& out) {
    if (!j.contains(key)) return;
    for (const auto& row : j.at(key)) out.push_back(row.get<typename std::decay_t<decltype(out)>::value_type>());
  };
  append("prompts", ref.prompts);
  append("long_prompts", ref.prompts);
  append("greedy", ref.greedy);
  append("long_greedy", ref.greedy);
  append("logits", ref.logits);
  append("long_logits", ref.logits);
  append("step_logits", ref.step_logits);
  return ref;
}

// max |got - want| / max |want| over a row: the "relative" error the fixtures are
// compared with (elementwise relative error is meaningless for logits near zero).
inline double RowRelativeError(const float* got, const std::vector<float>& want) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - want[i])));
    max_ref = std::max(max_ref, static_cast<double>(std::abs(want[i])));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

}  // namespace flover::testing
