#include "worker/model/gguf_architecture.h"

namespace flover {
namespace {

constexpr GgufArchitecture kArchitectures[] = {
    {"llama", "llama", /*qkv_bias=*/false, /*rotates_halves=*/false},
    {"qwen2", "qwen2", /*qkv_bias=*/true, /*rotates_halves=*/true},
};

}  // namespace

const GgufArchitecture* FindGgufArchitecture(std::string_view name) {
  for (const GgufArchitecture& a : kArchitectures)
    if (name == a.name) return &a;
  return nullptr;
}

std::string SupportedGgufArchitectures() {
  std::string s;
  for (const GgufArchitecture& a : kArchitectures) s += (s.empty() ? "\"" : ", \"") + std::string(a.name) + "\"";
  return s;
}

}  // namespace flover
