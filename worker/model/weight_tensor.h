// WeightTensor: one tensor of a model's weights in the format it is kept in
// (cpu::WeightFormat, kernels/cpu/weight_matmul.h): fp32 values, or the bytes of fp16,
// bf16, Q8_0, Q4_0 or Q4_K rows, byte for byte as GGUF stores them. The tensor does not
// know its shape: the tensor tables (model_weights.h) and the shard's sizes (shard.h)
// give rows and cols, and view()/ConvertTo() take them, checking that the bytes match.
//
// Invariant: fp32 keeps its values in f32(), every other format its bytes; the other
// container is empty. Both start on a cache line (CacheAlignedVector), so the kernels'
// 32- and 64-byte loads of a row never straddle two lines. An empty tensor (an absent
// tensor of the spec) is fp32 with no values.
//
// Value type, not thread-safe for writing.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/cache_aligned.h"
#include "common/status.h"
#include "kernels/cpu/weight_matmul.h"

namespace flover {

class WeightTensor {
 public:
  using F32Values = CacheAlignedVector<float>;
  using Bytes = CacheAlignedVector<uint8_t>;

  WeightTensor() = default;
  // fp32 values (a std::vector's are copied into aligned storage: vectors and small tensors).
  explicit WeightTensor(F32Values values) : f32_(std::move(values)) {}
  explicit WeightTensor(const std::vector<float>& values) : f32_(values.begin(), values.end()) {}
  // Rows of `format` as stored (fp32 too: the bytes of its floats).
  // REQUIRES: bytes.size() is a multiple of the format's block bytes.
  static WeightTensor FromBytes(cpu::WeightFormat format, Bytes bytes);
  static WeightTensor FromBytes(cpu::WeightFormat format, std::span<const uint8_t> bytes) {
    return FromBytes(format, Bytes(bytes.begin(), bytes.end()));
  }
  // n_bytes zero bytes of `format` (zero values in every format).
  static WeightTensor Zeros(cpu::WeightFormat format, int64_t n_bytes);

  // A [rows, cols] tensor in `format` made from fp32 rows that `read(row_begin, n_rows,
  // dst)` writes into dst[n_rows, cols], asked for about kChunkValues values at a time
  // (at least one row), so that besides the result at most one chunk is held in fp32.
  // fp32 rows are read straight into the result. Returns read's first error.
  // REQUIRES: cols % cpu::WeightBlockValues(format) == 0, rows >= 0, cols > 0.
  using RowReader = std::function<Status(int64_t row_begin, int64_t n_rows, float* dst)>;
  static constexpr int64_t kChunkValues = int64_t{1} << 20;
  static Result<WeightTensor> FromF32Rows(cpu::WeightFormat format, int64_t rows, int64_t cols,
                                          const RowReader& read);

  cpu::WeightFormat format() const { return format_; }
  // kRows unless Interleave() rearranged the bytes.
  cpu::WeightLayout layout() const { return layout_; }
  bool is_f32() const { return format_ == cpu::WeightFormat::kF32; }
  bool empty() const { return f32_.empty() && packed_.empty(); }

  // The values, row after row. REQUIRES (checked): format() == kF32, layout() == kRows.
  F32Values& f32();
  const F32Values& f32() const;

  // The stored bytes, whatever the format (fp32: its values' bytes).
  std::span<const uint8_t> bytes() const;
  std::span<uint8_t> mutable_bytes();
  int64_t n_bytes() const { return static_cast<int64_t>(bytes().size()); }

  // True when the bytes are exactly `rows` rows of `cols` values of format() in layout()
  // (cols a multiple of the format's block).
  bool Holds(int64_t rows, int64_t cols) const;
  // The tensor as a [rows, cols] matrix for the kernels. REQUIRES (checked): Holds(rows,
  // cols), both within int.
  cpu::WeightView view(int64_t rows, int64_t cols) const;

  // Rearranges a [rows, cols] matrix into the kInterleaved layout when that is the layout
  // this process's kernel reads its format fastest in (cpu::PreferredWeightLayout: Q8_0,
  // Q4_0 and Q4_K always, fp32 under the AVX2 kernel). The same size but for rows
  // padding the last group of 16, fp32 rows padded to a multiple of 16 values, and Q4_K's
  // 148 bytes per 256 values and row instead of 144. Nothing happens for other formats,
  // an empty tensor, or one interleaved already. REQUIRES (checked): Holds(rows, cols).
  void Interleave(int64_t rows, int64_t cols);

  // The same [rows, cols] matrix in `format`: a copy when the format is the same, else
  // every row widened to fp32 (exact for fp16/bf16, the block formats' dequantization)
  // and then converted (QuantizeWeightRows), a chunk of rows at a time.
  // REQUIRES (checked): Holds(rows, cols), cols % cpu::WeightBlockValues(format) == 0.
  WeightTensor ConvertTo(cpu::WeightFormat format, int64_t rows, int64_t cols) const;

  // Sets the bytes of rows [first_row, end) of a [*, cols] tensor to zero: zero values in
  // every format (padding rows are zero bytes whatever made them). REQUIRES: first_row
  // >= 0, cols a whole number of blocks, layout() kRows.
  void ZeroRowsFrom(int64_t first_row, int64_t cols);

  // Frees the storage; the tensor is then empty fp32.
  void Clear();

  // Same format, layout and bytes.
  bool operator==(const WeightTensor& other) const;

 private:
  cpu::WeightFormat format_ = cpu::WeightFormat::kF32;
  cpu::WeightLayout layout_ = cpu::WeightLayout::kRows;
  F32Values f32_;  // format_ == kF32
  Bytes packed_;   // any other format
};

// Whether `cols` values per row can be stored in `format` (a whole number of blocks).
bool FitsBlocks(cpu::WeightFormat format, int64_t cols);

// "1.2 GB", "340.5 MB", "12.0 kB", "512 B": byte counts in messages and logs.
std::string ByteString(int64_t bytes);

}  // namespace flover
