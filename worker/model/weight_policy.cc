#include "worker/model/weight_policy.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "worker/model/shard.h"
#include "worker/model/weight_tensor.h"

namespace flover {
namespace {

using cpu::WeightFormat;

bool IsColumnSplit(TensorSplit split) { return split == TensorSplit::kQCols || split == TensorSplit::kHiddenCols; }

// Tensor-parallel sizes up to 16 that the model allows and that give every rank whole
// blocks of `format` in both column-split matrices (wo's q_dim, w2's hidden_dim).
std::string WorkingWorlds(const ModelSpec& spec, WeightFormat format) {
  std::string out;
  for (int w = 1; w <= 16; ++w) {
    if (!CheckTensorParallel(spec, w).ok()) continue;
    if (!FitsBlocks(format, spec.q_dim() / w) || !FitsBlocks(format, spec.hidden_dim / w)) continue;
    out += (out.empty() ? "" : ", ") + std::to_string(w);
  }
  return out;
}

// The dtypes whose blocks divide `local_cols`.
std::string WorkingDTypes(int64_t local_cols) {
  std::string out;
  for (WeightFormat f : {WeightFormat::kQ4_K, WeightFormat::kQ8_0, WeightFormat::kQ4_0, WeightFormat::kF16,
                         WeightFormat::kBF16, WeightFormat::kF32})
    if (FitsBlocks(f, local_cols)) out += (out.empty() ? "" : ", ") + std::string(cpu::WeightFormatName(f));
  return out;
}

}  // namespace

std::string WeightPolicy::ToString() const { return format ? cpu::WeightFormatName(*format) : "auto"; }

cpu::WeightFormat WeightFormatOf(WeightDType dtype) {
  switch (dtype) {
    case WeightDType::kF32: return WeightFormat::kF32;
    case WeightDType::kF16: return WeightFormat::kF16;
    case WeightDType::kBF16: return WeightFormat::kBF16;
    case WeightDType::kQ8_0: return WeightFormat::kQ8_0;
    case WeightDType::kQ4_0: return WeightFormat::kQ4_0;
    case WeightDType::kQ4_K: return WeightFormat::kQ4_K;
  }
  FLOVER_CHECK(false) << "weight dtype " << static_cast<int>(dtype);
  return WeightFormat::kF32;
}

WeightPolicy WeightPolicyFor(const std::optional<WeightDType>& dtype) {
  return dtype ? WeightPolicy::Exactly(WeightFormatOf(*dtype)) : WeightPolicy::Auto();
}

Result<MatrixFormat> ChooseMatrixFormat(const WeightPolicy& policy, const WeightSource& source,
                                        const std::string& name, int64_t cols, TensorSplit split,
                                        const ModelSpec& spec, int world) {
  FLOVER_CHECK(cols > 0) << name;
  MatrixFormat out;
  if (!policy.format) {
    if (source.native) {
      out.format = *source.native;
    } else {
      out.format = WeightFormat::kQ8_0;
      out.note = source.name + " -> q8_0 (auto: no CPU kernel for " + source.name + ")";
    }
  } else {
    out.format = *policy.format;
    if (!FitsBlocks(out.format, cols)) {
      const WeightFormat fallback = FitsBlocks(WeightFormat::kQ8_0, cols) ? WeightFormat::kQ8_0 : WeightFormat::kF16;
      out.note = std::string(cpu::WeightFormatName(fallback)) + " instead of " + cpu::WeightFormatName(out.format) +
                 " (rows of " + std::to_string(cols) + " values are not whole blocks of " +
                 std::to_string(cpu::WeightBlockValues(out.format)) + ")";
      out.format = fallback;
    }
  }
  if (world > 1 && IsColumnSplit(split)) {
    const int64_t local_cols = cols / world;
    if (!FitsBlocks(out.format, local_cols)) {
      const int block = cpu::WeightBlockValues(out.format);
      const std::string worlds = WorkingWorlds(spec, out.format);
      return InvalidArgument(
          "tensor " + name + " is " + cpu::WeightFormatName(out.format) + " in blocks of " + std::to_string(block) +
          " values, but tensor parallel size " + std::to_string(world) + " leaves each rank " +
          std::to_string(local_cols) + " of its " + std::to_string(cols) +
          " columns, not whole blocks; use " +
          (worlds.empty() ? std::string() : "a tensor parallel size of " + worlds + ", or ") + "model.dtype " +
          WorkingDTypes(local_cols));
    }
  }
  return out;
}

void FormatNotes::Log(const std::string& where) const {
  for (const auto& [note, count] : counts_)
    spdlog::info("{}: {} tensor{}: {}", where, count, count == 1 ? "" : "s", note);
}

}  // namespace flover
