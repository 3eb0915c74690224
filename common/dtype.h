// DType: the element type of stored tensors (weights, KV cache) on a backend. The CPU
// backend stores fp32; the CUDA backend fp32, fp16 or bf16, always accumulating in fp32.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"

namespace flover {

enum class DType { kF32, kF16, kBF16 };

constexpr size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }

constexpr const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "fp32";
    case DType::kF16: return "fp16";
    case DType::kBF16: return "bf16";
  }
  return "?";
}

// "fp32"/"float32", "fp16"/"float16", "bf16"/"bfloat16"; InvalidArgument otherwise.
Result<DType> ParseDType(std::string_view name);

}  // namespace flover
