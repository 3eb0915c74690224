// DequantizeWeightRows (weight_matmul.h): the formats' values as fp32 (an interleaved
// row is first put back into its GGUF bytes). The arithmetic
// is fp32, unfused (the library is built with -ffp-contract=off) and in gguf-py's order,
// so the values equal gguf-py's numpy dequantization bit for bit.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/float16.h"
#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_interleave.h"
#include "kernels/cpu/weight_matmul.h"
#include "kernels/cpu/weight_matmul_internal.h"

namespace flover::cpu {
namespace {

void DequantizeQ8_0(const uint8_t* b, float* y) {
  const float d = LoadHalfAt(b);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
}

void DequantizeQ4_0(const uint8_t* b, float* y) {
  const float d = LoadHalfAt(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void DequantizeQ4_K(const uint8_t* b, float* y) {
  const float d = LoadHalfAt(b), dmin = LoadHalfAt(b + 2);
  for (int s = 0; s < 8; ++s) {
    int scale, min;
    UnpackQ4KScaleMin(b + kQ4_KScalesOffset, s, &scale, &min);
    const float ds = d * static_cast<float>(scale);
    const float dm = dmin * static_cast<float>(min);
    const uint8_t* q = b + kQ4_KQsOffset + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) y[32 * s + l] = ds * static_cast<float>((q[l] >> shift) & 0x0F) - dm;
  }
}

}  // namespace

namespace internal {

void DequantizeWeightRow(WeightFormat format, const uint8_t* row, int cols, float* y) {
  switch (format) {
    case WeightFormat::kF32: std::memcpy(y, row, sizeof(float) * cols); return;
    case WeightFormat::kF16: ConvertHalfToFloatSerial(row, y, cols); return;
    case WeightFormat::kBF16:
      for (int j = 0; j < cols; ++j) {
        uint16_t b;
        std::memcpy(&b, row + 2 * j, 2);
        y[j] = Bf16ToFloat(b);
      }
      return;
    case WeightFormat::kQ8_0:
      for (int b = 0; b < cols / 32; ++b) DequantizeQ8_0(row + b * kQ8_0Bytes, y + 32 * b);
      return;
    case WeightFormat::kQ4_0:
      for (int b = 0; b < cols / 32; ++b) DequantizeQ4_0(row + b * kQ4_0Bytes, y + 32 * b);
      return;
    case WeightFormat::kQ4_K:
      for (int b = 0; b < cols / 256; ++b) DequantizeQ4_K(row + b * kQ4_KBytes, y + 256 * b);
      return;
  }
}

}  // namespace internal

void DequantizeWeightRows(const WeightView& w, int row_begin, int n_rows, float* out) {
  if (w.rows < 0 || w.cols <= 0 || row_begin < 0 || n_rows < 0 || row_begin > w.rows - n_rows ||
      w.cols % WeightBlockValues(w.format) != 0) {
    std::fprintf(stderr, "flover: DequantizeWeightRows: rows [%d, %d + %d) of a %s matrix of %d x %d\n", row_begin,
                 row_begin, n_rows, WeightFormatName(w.format), w.rows, w.cols);
    std::abort();
  }
  const int64_t row_bytes = WeightRowBytes(w.format, w.cols);
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  if (w.layout == WeightLayout::kInterleaved) {
    if (!HasInterleavedLayout(w.format)) {
      std::fprintf(stderr, "flover: DequantizeWeightRows: %s has no interleaved layout\n", WeightFormatName(w.format));
      std::abort();
    }
#pragma omp parallel if (static_cast<int64_t>(n_rows) * w.cols > (int64_t{1} << 18))
    {
      thread_local std::vector<uint8_t> row;
      row.resize(static_cast<size_t>(row_bytes));
#pragma omp for schedule(static)
      for (int r = 0; r < n_rows; ++r) {
        internal::ExtractInterleavedRow(w.format, data, w.cols, row_begin + r, row.data());
        internal::DequantizeWeightRow(w.format, row.data(), w.cols, out + static_cast<int64_t>(r) * w.cols);
      }
    }
    return;
  }
  const uint8_t* base = data + row_begin * row_bytes;
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(n_rows) * w.cols > (int64_t{1} << 18))
  for (int r = 0; r < n_rows; ++r)
    internal::DequantizeWeightRow(w.format, base + r * row_bytes, w.cols, out + static_cast<int64_t>(r) * w.cols);
}

}  // namespace flover::cpu
