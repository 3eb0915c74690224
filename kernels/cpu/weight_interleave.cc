// The kInterleaved layout (weight_interleave.h): making it from GGUF's rows, and reading
// a row back.
#include "kernels/cpu/weight_interleave.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/weight_blocks.h"

namespace flover::cpu {
namespace {

constexpr int kGroup = kInterleaveRows;
static_assert(kGroup == 16, "the layout's field sizes assume 16 rows per group");
static_assert(internal::kQ8_0GroupBlockBytes == kGroup * kQ8_0Bytes &&
              internal::kQ4_0GroupBlockBytes == kGroup * kQ4_0Bytes &&
              internal::kQ4KGroupBlockBytes == internal::kQ4KGroupQs + kGroup * 128);

// Where the 4 bytes of chunk `c` of a row's quantized values go within its block
// (GGUF's) and within the group's block: c = l for Q8_0 and Q4_0, 8k + l for Q4_K.
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

// One row's GGUF block (at src) into lane `lane` of the group's block (at dst).
void ScatterBlock(WeightFormat format, const uint8_t* src, int lane, uint8_t* dst) {
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

// The inverse: lane `lane` of the group's block (at src) as a GGUF block (at dst).
void GatherBlock(WeightFormat format, const uint8_t* src, int lane, uint8_t* dst) {
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

void Fail(const char* what, const WeightView& w) {
  std::fprintf(stderr, "flover: InterleaveWeightRows: %s (%s matrix of %d x %d)\n", what, WeightFormatName(w.format),
               w.rows, w.cols);
  std::abort();
}

}  // namespace

bool HasInterleavedLayout(WeightFormat format) {
  return format == WeightFormat::kQ8_0 || format == WeightFormat::kQ4_0 || format == WeightFormat::kQ4_K;
}

int64_t InterleavedWeightBytes(WeightFormat format, int64_t rows, int64_t cols) {
  if (!HasInterleavedLayout(format) || rows < 0 || cols <= 0 || cols % WeightBlockValues(format) != 0) {
    std::fprintf(stderr, "flover: InterleavedWeightBytes: no interleaved %s matrix of %lld x %lld\n",
                 WeightFormatName(format), static_cast<long long>(rows), static_cast<long long>(cols));
    std::abort();
  }
  return (rows + kGroup - 1) / kGroup * (cols / WeightBlockValues(format)) * internal::GroupBlockBytes(format);
}

void InterleaveWeightRows(const WeightView& w, void* out) {
  if (!HasInterleavedLayout(w.format)) Fail("the format has no interleaved layout", w);
  if (w.layout != WeightLayout::kRows) Fail("the matrix is interleaved already", w);
  const int64_t n_bytes = InterleavedWeightBytes(w.format, w.rows, w.cols);
  const int n_blocks = w.cols / WeightBlockValues(w.format), n_groups = (w.rows + kGroup - 1) / kGroup;
  const int block_bytes = WeightBlockBytes(w.format), group_block_bytes = internal::GroupBlockBytes(w.format);
  const int64_t row_bytes = WeightRowBytes(w.format, w.cols);
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  uint8_t* dst = static_cast<uint8_t*>(out);
  std::memset(dst, 0, static_cast<size_t>(n_bytes));
#pragma omp parallel for schedule(static) if (n_bytes > (int64_t{1} << 20))
  for (int g = 0; g < n_groups; ++g) {
    for (int lane = 0; lane < kGroup && g * kGroup + lane < w.rows; ++lane) {
      const uint8_t* row = src + (static_cast<int64_t>(g) * kGroup + lane) * row_bytes;
      for (int b = 0; b < n_blocks; ++b) {
        ScatterBlock(w.format, row + b * block_bytes, lane,
                     dst + (static_cast<int64_t>(g) * n_blocks + b) * group_block_bytes);
      }
    }
  }
}

namespace internal {

int GroupBlockBytes(WeightFormat format) {
  switch (format) {
    case WeightFormat::kQ8_0: return kQ8_0GroupBlockBytes;
    case WeightFormat::kQ4_0: return kQ4_0GroupBlockBytes;
    case WeightFormat::kQ4_K: return kQ4KGroupBlockBytes;
    default:
      std::fprintf(stderr, "flover: %s has no interleaved layout\n", WeightFormatName(format));
      std::abort();
  }
}

void ExtractInterleavedRow(WeightFormat format, const uint8_t* base, int cols, int row, uint8_t* out) {
  const int n_blocks = cols / WeightBlockValues(format), block_bytes = WeightBlockBytes(format);
  const int group_block_bytes = GroupBlockBytes(format);
  for (int b = 0; b < n_blocks; ++b)
    GatherBlock(format, GroupBlock(base, group_block_bytes, n_blocks, row / kGroup, b), row % kGroup, out + b * block_bytes);
}

}  // namespace internal
}  // namespace flover::cpu
