// Where tests find the real model files: $FLOVER_MODELS_DIR, else the CMake variable
// FLOVER_MODELS_DIR (default ../shared/models next to the source tree). Tests that need
// a model FAIL with this path in the message when it is missing: never skip silently.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace flover::testing {

inline std::string ModelsDir() {
  if (const char* env = std::getenv("FLOVER_MODELS_DIR"); env && *env) return env;
  return FLOVER_MODELS_DIR;
}

inline std::string ModelPath(const std::string& relative) { return ModelsDir() + "/" + relative; }

inline std::string Stories260kBin() { return ModelPath("stories260K/stories260K.bin"); }
inline std::string Stories260kGguf() { return ModelPath("stories260K/stories260K.gguf"); }
inline std::string Tok512Bin() { return ModelPath("stories260K/tok512.bin"); }

// The small committed fixtures (tests/fixtures: tiny Hugging Face checkpoints with
// transformers' outputs, tokenizers, chat templates): $FLOVER_FIXTURES_DIR (test
// binaries copied to another machine, scripts/gpu-check.sh), else the source tree's.
inline std::string FixturesDir() {
  if (const char* env = std::getenv("FLOVER_FIXTURES_DIR"); env && *env) return env;
  return FLOVER_FIXTURES_DIR;
}

inline std::string FixturePath(const std::string& relative) { return FixturesDir() + "/" + relative; }

}  // namespace flover::testing
