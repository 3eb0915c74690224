// DType: the element type of stored tensors (weights, KV cache) on a CUDA backend: fp32,
// fp16 or bf16, always accumulating in fp32.
// WeightDType: the precision model.dtype asks the weight matrices to be kept in. CPU
// workers keep any of them (worker/model/weight_policy.h): fp32, fp16, bf16, or ggml's
// block formats Q8_0, Q4_0 and Q4_K; CUDA workers store the first three (StorageDType).
#pragma once

#include <cstddef>
#include <optional>
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

enum class WeightDType { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K };

// "fp32", "fp16", "bf16", "q8_0", "q4_0", "q4_k"; "?" for a value outside the enum.
const char* WeightDTypeName(WeightDType t);
// ParseDType's spellings and "q8_0", "q4_0", "q4_k" (any case: "Q4_K" too);
// InvalidArgument naming the accepted spellings otherwise.
Result<WeightDType> ParseWeightDType(std::string_view name);
// The CUDA storage type of fp32, fp16 and bf16; nullopt for the block formats.
std::optional<DType> StorageDType(WeightDType t);
// True for a value of the enum (configs built in code may hold any integer).
bool IsWeightDType(WeightDType t);

}  // namespace flover
