#include "common/dtype.h"

#include <string>

namespace flover {

Result<DType> ParseDType(std::string_view name) {
  if (name == "fp32" || name == "float32") return DType::kF32;
  if (name == "fp16" || name == "float16") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  return InvalidArgument("unknown dtype '" + std::string(name) + "' (expected fp32, fp16 or bf16)");
}

}  // namespace flover
