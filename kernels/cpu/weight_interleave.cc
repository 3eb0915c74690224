// The kInterleaved layout (weight_interleave.h): making it from GGUF's rows, and reading
// a row back.
#include "kernels/cpu/weight_interleave.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_matmul_internal.h"

namespace flover::cpu {
namespace {

constexpr int kGroup = kInterleaveRows;
static_assert(kGroup == 16, "the layout's field sizes assume 16 rows per group");
static_assert(internal::kQ8_0GroupBlockBytes == kGroup * kQ8_0Bytes &&
              internal::kQ4_0GroupBlockBytes == kGroup * kQ4_0Bytes &&
              internal::kQ4KGroupBlockBytes == internal::kQ4KGroupQs + kGroup * 128);

// Where the 4 bytes of chunk `c` of a row's block go within the block (GGUF's) and
// within the group's block: c = l for Q8_0 and Q4_0, 8k + l for Q4_K.
struct Chunks {
  int count;      // 8, 4 or 32
  int gguf_qs;    // offset of the values in a GGUF block
  int group_qs;   // offset of the values in a (group, block)
};

Chunks ChunksOf(WeightFormat format) {
  switch (format) {
    case WeightFormat::kQ8_0: return {8, 2, internal::kQ8_0GroupQs};
    case WeightFormat::kQ4_0: return {4, 2, internal::kQ4_0GroupQs};
    default: return {32, kQ4_KQsOffset, internal::kQ4KGroupQs};
  }
}

// One row's block (at src) into lane `lane` of the group's block (at dst). `values`:
// the block's values in the row (a float format's last block may be short: the rest
// stays 0).
void ScatterBlock(WeightFormat format, const uint8_t* src, int values, int lane, uint8_t* dst) {
  if (!internal::IsIntFormat(format)) {
    const int size = WeightBlockBytes(format);
    for (int i = 0; i < values; ++i) std::memcpy(dst + size * (kGroup * i + lane), src + size * i, size);
    return;
  }
  std::memcpy(dst + internal::kGroupD + 2 * lane, src, 2);
  if (format == WeightFormat::kQ4_K) {
    std::memcpy(dst + internal::kQ4KGroupDmin + 2 * lane, src + 2, 2);
    for (int s = 0; s < 8; ++s) {
      int scale, min;
      UnpackQ4KScaleMin(src + kQ4_KScalesOffset, s, &scale, &min);
      dst[internal::kQ4KGroupScales + kGroup * s + lane] = static_cast<uint8_t>(scale);
      dst[internal::kQ4KGroupMins + 2 * kGroup * (s / 2) + 2 * lane + s % 2] = static_cast<uint8_t>(min);
    }
  }
  const Chunks c = ChunksOf(format);
  for (int i = 0; i < c.count; ++i) std::memcpy(dst + c.group_qs + 4 * (kGroup * i + lane), src + c.gguf_qs + 4 * i, 4);
}

// The inverse: lane `lane` of the group's block (at src) as the row's block (at dst).
void GatherBlock(WeightFormat format, const uint8_t* src, int values, int lane, uint8_t* dst) {
  if (!internal::IsIntFormat(format)) {
    const int size = WeightBlockBytes(format);
    for (int i = 0; i < values; ++i) std::memcpy(dst + size * i, src + size * (kGroup * i + lane), size);
    return;
  }
  std::memcpy(dst, src + internal::kGroupD + 2 * lane, 2);
  if (format == WeightFormat::kQ4_K) {
    std::memcpy(dst + 2, src + internal::kQ4KGroupDmin + 2 * lane, 2);
    int scale[8], min[8];
    for (int s = 0; s < 8; ++s) {
      scale[s] = src[internal::kQ4KGroupScales + kGroup * s + lane];
      min[s] = src[internal::kQ4KGroupMins + 2 * kGroup * (s / 2) + 2 * lane + s % 2];
    }
    PackQ4KScaleMin(scale, min, dst + kQ4_KScalesOffset);
  }
  const Chunks c = ChunksOf(format);
  for (int i = 0; i < c.count; ++i) std::memcpy(dst + c.gguf_qs + 4 * i, src + c.group_qs + 4 * (kGroup * i + lane), 4);
}

// The values of block b of a row of `cols` values (all but a float format's last are whole).
int BlockValues(WeightFormat format, int cols, int b) {
  const int per_block = internal::GroupBlockValues(format);
  return cols - b * per_block < per_block ? cols - b * per_block : per_block;
}

void Fail(const char* what, const WeightView& w) {
  std::fprintf(stderr, "flover: InterleaveWeightRows: %s (%s matrix of %d x %d)\n", what, WeightFormatName(w.format),
               w.rows, w.cols);
  std::abort();
}

}  // namespace

bool HasInterleavedLayout(WeightFormat format) {
  return static_cast<unsigned>(format) <= static_cast<unsigned>(WeightFormat::kQ4_K);  // every format
}

int64_t InterleavedWeightBytes(WeightFormat format, int64_t rows, int64_t cols) {
  if (!HasInterleavedLayout(format) || rows < 0 || cols <= 0 || cols % WeightBlockValues(format) != 0) {
    std::fprintf(stderr, "flover: InterleavedWeightBytes: no interleaved %s matrix of %lld x %lld\n",
                 WeightFormatName(format), static_cast<long long>(rows), static_cast<long long>(cols));
    std::abort();
  }
  return (rows + kGroup - 1) / kGroup * internal::GroupBlocks(format, cols) * internal::GroupBlockBytes(format);
}

void InterleaveWeightRows(const WeightView& w, void* out) {
  if (!HasInterleavedLayout(w.format)) Fail("the format has no interleaved layout", w);
  if (w.layout != WeightLayout::kRows) Fail("the matrix is interleaved already", w);
  const int64_t n_bytes = InterleavedWeightBytes(w.format, w.rows, w.cols);
  const int n_blocks = internal::GroupBlocks(w.format, w.cols), n_groups = (w.rows + kGroup - 1) / kGroup;
  const int64_t block_bytes = WeightRowBytes(w.format, internal::GroupBlockValues(w.format));
  const int group_block_bytes = internal::GroupBlockBytes(w.format);
  const int64_t row_bytes = WeightRowBytes(w.format, w.cols);
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  uint8_t* dst = static_cast<uint8_t*>(out);
  std::memset(dst, 0, static_cast<size_t>(n_bytes));
#pragma omp parallel for schedule(static) if (n_bytes > (int64_t{1} << 20))
  for (int g = 0; g < n_groups; ++g) {
    for (int lane = 0; lane < kGroup && g * kGroup + lane < w.rows; ++lane) {
      const uint8_t* row = src + (static_cast<int64_t>(g) * kGroup + lane) * row_bytes;
      for (int b = 0; b < n_blocks; ++b) {
        ScatterBlock(w.format, row + b * block_bytes, BlockValues(w.format, w.cols, b), lane,
                     dst + (static_cast<int64_t>(g) * n_blocks + b) * group_block_bytes);
      }
    }
  }
}

namespace internal {

int GroupBlockValues(WeightFormat format) {
  return !IsIntFormat(format) ? kFloatGroupValues : WeightBlockValues(format);
}

int GroupBlocks(WeightFormat format, int64_t cols) {
  const int per_block = GroupBlockValues(format);
  return static_cast<int>((cols + per_block - 1) / per_block);
}

int GroupBlockBytes(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32: return kFloatGroupValues * kGroup * 4;
    case WeightFormat::kF16:
    case WeightFormat::kBF16: return kFloatGroupValues * kGroup * 2;
    case WeightFormat::kQ8_0: return kQ8_0GroupBlockBytes;
    case WeightFormat::kQ4_0: return kQ4_0GroupBlockBytes;
    case WeightFormat::kQ4_K: return kQ4KGroupBlockBytes;
    default:
      std::fprintf(stderr, "flover: %s has no interleaved layout\n", WeightFormatName(format));
      std::abort();
  }
}

void ExtractInterleavedRow(WeightFormat format, const uint8_t* base, int cols, int row, uint8_t* out) {
  const int n_blocks = GroupBlocks(format, cols), group_block_bytes = GroupBlockBytes(format);
  const int64_t block_bytes = WeightRowBytes(format, GroupBlockValues(format));
  for (int b = 0; b < n_blocks; ++b)
    GatherBlock(format, GroupBlock(base, group_block_bytes, n_blocks, row / kGroup, b), BlockValues(format, cols, b),
                row % kGroup, out + b * block_bytes);
}

}  // namespace internal
}  // namespace flover::cpu
