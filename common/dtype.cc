#include "common/dtype.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace flover {

Result<DType> ParseDType(std::string_view name) {
  if (name == "fp32" || name == "float32") return DType::kF32;
  if (name == "fp16" || name == "float16") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  return InvalidArgument("unknown dtype '" + std::string(name) + "' (expected fp32, fp16 or bf16)");
}

const char* WeightDTypeName(WeightDType t) {
  switch (t) {
    case WeightDType::kF32: return "fp32";
    case WeightDType::kF16: return "fp16";
    case WeightDType::kBF16: return "bf16";
    case WeightDType::kQ8_0: return "q8_0";
    case WeightDType::kQ4_0: return "q4_0";
    case WeightDType::kQ4_K: return "q4_k";
  }
  return "?";
}

bool IsWeightDType(WeightDType t) { return std::string_view(WeightDTypeName(t)) != "?"; }

Result<WeightDType> ParseWeightDType(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (Result<DType> storage = ParseDType(lower); storage.ok()) {
    switch (*storage) {
      case DType::kF32: return WeightDType::kF32;
      case DType::kF16: return WeightDType::kF16;
      case DType::kBF16: return WeightDType::kBF16;
    }
  }
  for (WeightDType t : {WeightDType::kQ8_0, WeightDType::kQ4_0, WeightDType::kQ4_K})
    if (lower == WeightDTypeName(t)) return t;
  return InvalidArgument("unknown dtype '" + std::string(name) + "' (expected fp32, fp16, bf16, q8_0, q4_0 or q4_k)");
}

std::optional<DType> StorageDType(WeightDType t) {
  switch (t) {
    case WeightDType::kF32: return DType::kF32;
    case WeightDType::kF16: return DType::kF16;
    case WeightDType::kBF16: return DType::kBF16;
    case WeightDType::kQ8_0:
    case WeightDType::kQ4_0:
    case WeightDType::kQ4_K: break;
  }
  return std::nullopt;
}

}  // namespace flover
