// WeightPolicy: the format a loader keeps each weight matrix of a model in (a CPU
// worker's model.dtype), and the rule that picks it per matrix. Vectors (norms,
// biases) are always fp32.
//
//   auto      keep each matrix in its file's format where the CPU computes it natively
//             (fp32, fp16, bf16, Q8_0, Q4_0, Q4_K); GGUF's other types (Q4_1, Q5_0,
//             Q5_1, Q5_K, Q6_K: a Q4_K_M file holds Q6_K tensors) become Q8_0, tensor by
//             tensor; fp32 files stay fp32.
//   a format  every matrix converted to it (quantized from fp32/fp16/bf16, or
//             dequantized and requantized from another block format), one tensor at a
//             time. A matrix whose rows are not whole blocks of the format (qwen2-0.5b's
//             896 columns in Q4_K's blocks of 256, stories260K's 172-wide w2 in blocks
//             of 32) falls back to the nearest format that fits it: q8_0 (blocks of 32),
//             else fp16; the loader logs it.
// A column split (tensor parallelism cuts wo and w2 by columns, shard.h) of a block
// format must fall on block boundaries; otherwise ChooseMatrixFormat fails naming the
// tensor, the block and the per-rank width, with tensor-parallel sizes and dtypes that
// work.
//
// Thread-safety: value types and pure functions; FormatNotes is not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/cpu/weight_matmul.h"
#include "worker/model/model_weights.h"

namespace flover {

struct WeightPolicy {
  // nullopt: auto.
  std::optional<cpu::WeightFormat> format = cpu::WeightFormat::kF32;

  static WeightPolicy Auto() { return WeightPolicy{std::nullopt}; }
  static WeightPolicy Exactly(cpu::WeightFormat f) { return WeightPolicy{f}; }
  // "auto", "fp32", "q4_k", ...
  std::string ToString() const;
};

// model.dtype as a policy: nullopt is auto.
WeightPolicy WeightPolicyFor(const std::optional<WeightDType>& dtype);
cpu::WeightFormat WeightFormatOf(WeightDType dtype);

// How a matrix is stored in its file: `native` when it is a format the CPU computes
// (then read as stored), else nullopt (a GGUF type converted at load); `name` is the
// file's name of its type ("Q6_K", "F16", "fp32"), for logs.
struct WeightSource {
  std::optional<cpu::WeightFormat> native;
  std::string name;
};

// The format a matrix is kept in on this rank, and why when that is not plainly what
// was asked ("Q6_K -> q8_0 (auto: no CPU kernel for Q6_K)"; empty otherwise).
struct MatrixFormat {
  cpu::WeightFormat format = cpu::WeightFormat::kF32;
  std::string note;
};

// The rule above for matrix `name` (for messages: "layers.3.w2") of full width `cols`
// split by `split` over `world` ranks of a model of `spec`. InvalidArgument when this
// rank's columns of a column split are not whole blocks of the chosen format.
// REQUIRES: cols > 0; CheckTensorParallel(spec, world) is OK.
Result<MatrixFormat> ChooseMatrixFormat(const WeightPolicy& policy, const WeightSource& source,
                                        const std::string& name, int64_t cols, TensorSplit split,
                                        const ModelSpec& spec, int world);

// The notes of a load's format choices, counted, for one log line each at the end:
// "24 tensors: Q6_K -> q8_0 (auto: no CPU kernel for Q6_K)".
class FormatNotes {
 public:
  void Add(const std::string& note) {
    if (!note.empty()) ++counts_[note];
  }
  // Logs each note (spdlog info), prefixed with `where` (the model's path).
  void Log(const std::string& where) const;

 private:
  std::map<std::string, int> counts_;
};

}  // namespace flover
