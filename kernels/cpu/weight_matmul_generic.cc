// The portable variants of MatmulWeights: float formats widened into a buffer for a
// Matmul kernel, and the int8 formats' canonical arithmetic (weight_matmul_internal.h)
// written out as it is specified, one output element at a time.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_interleave.h"
#include "kernels/cpu/weight_matmul_internal.h"

namespace flover::cpu::internal {
namespace {

// W rows widened per call of the Matmul kernel: a multiple of every kernel's tile width.
constexpr int kWidenRows = 12;

void Store(const WeightMatmulArgs& a, int r, int o, float sum) {
  float& dst = a.y[static_cast<long>(r) * a.rows + o];
  dst = a.accumulate ? dst + sum : sum;
}

// The integer values of a Q8_0 or Q4_0 block into w[0, 32); returns its scale.
float UnpackQ8_0(const uint8_t* b, int8_t* w) {
  std::memcpy(w, b + 2, 32);
  return LoadHalfAt(b);
}

float UnpackQ4_0(const uint8_t* b, int8_t* w) {
  for (int j = 0; j < 16; ++j) {
    w[j] = static_cast<int8_t>((b[2 + j] & 0x0F) - 8);
    w[j + 16] = static_cast<int8_t>((b[2 + j] >> 4) - 8);
  }
  return LoadHalfAt(b);
}

// Step 2 for blocks of kBytes bytes that Unpack turns into 32 integers and a scale.
template <WeightFormat kFormat, int kBytes, float (*Unpack)(const uint8_t*, int8_t*)>
void RangeBlocks32(const WeightMatmulArgs& a, int o_begin, int o_end) {
  const int n_blocks = a.cols / 32;
  thread_local std::vector<uint8_t> gguf_row;
  thread_local std::vector<int8_t> w;
  thread_local std::vector<float> dw;
  gguf_row.resize(a.w_row_bytes);
  w.resize(a.cols);
  dw.resize(n_blocks);
  for (int o = o_begin; o < o_end; ++o) {
    const uint8_t* row = a.w + o * a.w_row_bytes;
    if (a.layout == WeightLayout::kInterleaved) {
      ExtractInterleavedRow(kFormat, a.w, a.cols, o, gguf_row.data());
      row = gguf_row.data();
    }
    for (int b = 0; b < n_blocks; ++b) dw[b] = Unpack(row + b * kBytes, w.data() + 32 * b);
    for (int r = 0; r < a.n; ++r) {
      const int8_t* q = a.qx.q + r * a.qx.stride;
      const float* d = a.qx.d + static_cast<long>(r) * n_blocks;
      float acc = 0.0f;
      for (int b = 0; b < n_blocks; ++b) {
        int p = 0;
        for (int j = 0; j < 32; ++j) p += w[32 * b + j] * q[32 * b + j];
        acc = std::fma(static_cast<float>(p), dw[b] * d[b], acc);
      }
      Store(a, r, o, acc);
    }
  }
}

}  // namespace

void WeightRangeWidened(const WeightMatmulArgs& a, int o_begin, int o_end) {
  thread_local std::vector<float> buffer;
  thread_local std::vector<uint8_t> row_bytes;  // an interleaved row put back together
  buffer.resize(static_cast<size_t>(kWidenRows) * a.cols);
  if (a.layout == WeightLayout::kInterleaved) row_bytes.resize(static_cast<size_t>(a.w_row_bytes));
  for (int o = o_begin; o < o_end; o += kWidenRows) {
    const int count = o_end - o < kWidenRows ? o_end - o : kWidenRows;
    for (int i = 0; i < count; ++i) {
      const uint8_t* row = a.w + (o + i) * a.w_row_bytes;
      if (a.layout == WeightLayout::kInterleaved) {
        ExtractInterleavedRow(a.format, a.w, a.cols, o + i, row_bytes.data());
        row = row_bytes.data();
      }
      DequantizeWeightRow(a.format, row, a.cols, buffer.data() + static_cast<long>(i) * a.cols);
    }
    // Rows [0, count) of the buffer are rows [o, o + count) of W, written from y + o on.
    a.widened(a.x, a.x_stride, buffer.data(), a.y + o, a.n, a.cols, a.rows, 0, count, a.accumulate);
  }
}

void WeightRangeF32InPlace(const WeightMatmulArgs& a, int o_begin, int o_end) {
  if (a.layout == WeightLayout::kInterleaved && a.widened == MatmulRangeAvx2) {
    MatmulRangeAvx2Interleaved(a.x, a.x_stride, a.w, a.y, a.n, a.cols, a.rows, o_begin, o_end, a.accumulate);
    return;
  }
  if (a.layout == WeightLayout::kInterleaved || reinterpret_cast<uintptr_t>(a.w) % alignof(float) != 0) {
    WeightRangeWidened(a, o_begin, o_end);  // a copy of the rows, for kernels that read them
    return;
  }
  a.widened(a.x, a.x_stride, reinterpret_cast<const float*>(a.w), a.y, a.n, a.cols, a.rows, o_begin, o_end,
            a.accumulate);
}

void WeightRangeQ8_0Generic(const WeightMatmulArgs& a, int o_begin, int o_end) {
  RangeBlocks32<WeightFormat::kQ8_0, kQ8_0Bytes, UnpackQ8_0>(a, o_begin, o_end);
}

void WeightRangeQ4_0Generic(const WeightMatmulArgs& a, int o_begin, int o_end) {
  RangeBlocks32<WeightFormat::kQ4_0, kQ4_0Bytes, UnpackQ4_0>(a, o_begin, o_end);
}

void WeightRangeQ4_KGeneric(const WeightMatmulArgs& a, int o_begin, int o_end) {
  const int n_blocks = a.cols / 256;
  // One W row: its GGUF bytes (put back from the interleaved layout when it is that),
  // then unpacked: 4-bit values, and per block d, dmin, 8 scales and 8 mins.
  thread_local std::vector<uint8_t> gguf_row, w;
  thread_local std::vector<float> d, dmin;
  thread_local std::vector<int> scales, mins;
  gguf_row.resize(a.w_row_bytes);
  w.resize(a.cols);
  d.resize(n_blocks);
  dmin.resize(n_blocks);
  scales.resize(8 * n_blocks);
  mins.resize(8 * n_blocks);
  for (int o = o_begin; o < o_end; ++o) {
    const uint8_t* row = a.w + o * a.w_row_bytes;
    if (a.layout == WeightLayout::kInterleaved) {
      ExtractInterleavedRow(WeightFormat::kQ4_K, a.w, a.cols, o, gguf_row.data());
      row = gguf_row.data();
    }
    for (int b = 0; b < n_blocks; ++b) {
      const uint8_t* block = row + b * kQ4_KBytes;
      d[b] = LoadHalfAt(block);
      dmin[b] = LoadHalfAt(block + 2);
      for (int s = 0; s < 8; ++s) {
        UnpackQ4KScaleMin(block + kQ4_KScalesOffset, s, &scales[8 * b + s], &mins[8 * b + s]);
        const uint8_t* qs = block + kQ4_KQsOffset + 32 * (s / 2);
        for (int i = 0; i < 32; ++i) w[256 * b + 32 * s + i] = (qs[i] >> (4 * (s % 2))) & 0x0F;
      }
    }
    for (int r = 0; r < a.n; ++r) {
      const int8_t* q = a.qx.q + r * a.qx.stride;
      const float* dx = a.qx.d + static_cast<long>(r) * n_blocks;
      const int16_t* t = a.qx.sums + static_cast<long>(r) * 8 * n_blocks;
      float acc = 0.0f;
      for (int b = 0; b < n_blocks; ++b) {
        int p = 0, m = 0;
        for (int s = 0; s < 8; ++s) {
          int dot = 0;
          for (int i = 0; i < 32; ++i) dot += w[256 * b + 32 * s + i] * q[256 * b + 32 * s + i];
          p += scales[8 * b + s] * dot;
          m += mins[8 * b + s] * t[8 * b + s];
        }
        const float s = d[b] * dx[b];
        const float sm = -(dmin[b] * dx[b]);
        acc = std::fma(static_cast<float>(p), s, acc);
        acc = std::fma(static_cast<float>(m), sm, acc);
      }
      Store(a, r, o, acc);
    }
  }
}

}  // namespace flover::cpu::internal
