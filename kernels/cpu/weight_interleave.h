// The kInterleaved layout of fp32, fp16, bf16, Q8_0, Q4_0 and Q4_K matrices
// (weight_matmul.h): rows in groups of kInterleaveRows = 16, each group's blocks one after
// another, and in each (group, block) the fields of the 16 rows' blocks side by side,
// unpacked, so that one 64-byte load gives the same 4 bytes of all 16 rows, one row per
// 32-bit lane (fp16/bf16: the same value of all 16 rows in 32 bytes). Offsets within a
// (group, block), "row" running over the group's 16 rows:
//
//   fp32, fp16, bf16 (1024 or 512 bytes; a block is 16 values, the last one of a row
//   zero-padded)
//        0   1024  [l = 0..15][row]: value l of the row's block, as stored (4 or 2 bytes)
//
//   Q8_0 (544 bytes = 16 x 34)
//        0     32  d of rows 0-15, fp16
//       32    512  q: [l = 0..7][row][4 B]: values 4l + [0, 4) of the row's block
//   Q4_0 (288 bytes = 16 x 18)
//        0     32  d, fp16
//       32    256  q: [l = 0..3][row][4 B]: bytes 4l + [0, 4) of the row's 16 bytes of
//                  nibbles (low: values 4l + [0, 4), high: values 16 + 4l + [0, 4))
//   Q4_K (2368 bytes = 16 x 148; the GGUF block has 144: scales and mins unpacked)
//        0     32  d of rows 0-15, fp16
//       32     32  dmin, fp16
//       64    128  scales: [sub-block s = 0..7][row] u8 (6-bit)
//      192    128  mins: [pair i = 0..3][row][2] u8: m_{2i}, m_{2i+1} (6-bit)
//      320   2048  q: [k = 0..3][l = 0..7][row][4 B]: bytes 32k + 4l + [0, 4) of the
//                  row's 128 bytes of nibbles (low: values 64k + 4l + [0, 4) of
//                  sub-block 2k, high: values 64k + 32 + 4l + [0, 4) of 2k + 1)
//
// Group g, block b sits at (g * n_blocks + b) * GroupBlockBytes for n_blocks =
// GroupBlocks(format, cols). Rows past the matrix's end in the last group, and fp32
// values past the end of a row, are zero bytes.
//
// For the float formats this is the operand the AVX2 outer-product kernel reads
// (matmul_avx2_panels.h):
// block b of group g holds, for each lane l of the canonical arithmetic's chunk b, the
// group's 16 weights that lane multiplies.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>

#include "kernels/cpu/weight_matmul.h"

namespace flover::cpu::internal {

inline constexpr int kQ8_0GroupBlockBytes = 544;
inline constexpr int kQ4_0GroupBlockBytes = 288;
inline constexpr int kQ4KGroupBlockBytes = 2368;
inline constexpr int kGroupD = 0;  // every block format: the 16 fp16 d first
inline constexpr int kQ8_0GroupQs = 32;
inline constexpr int kQ4_0GroupQs = 32;
inline constexpr int kQ4KGroupDmin = 32;
inline constexpr int kQ4KGroupScales = 64;
inline constexpr int kQ4KGroupMins = 192;
inline constexpr int kQ4KGroupQs = 320;
inline constexpr int kFloatGroupValues = 16;  // values of a row per fp32, fp16 or bf16 block

// Values of a row per block: WeightBlockValues(format), 16 for the float formats.
int GroupBlockValues(WeightFormat format);
// Blocks per row of `cols` values (a float format's last one may be short).
int GroupBlocks(WeightFormat format, int64_t cols);
// Bytes of one (group, block): 1024 (fp32), 512 (fp16, bf16), 544, 288 or 2368.
// REQUIRES: HasInterleavedLayout(format).
int GroupBlockBytes(WeightFormat format);

// The bytes of group g, block b of an interleaved matrix at base.
inline const uint8_t* GroupBlock(const uint8_t* base, int group_block_bytes, int n_blocks, int g, int b) {
  return base + (static_cast<int64_t>(g) * n_blocks + b) * group_block_bytes;
}

// Row `row` of an interleaved matrix of `cols` values per row, written as the row's GGUF
// bytes (WeightRowBytes(format, cols) at out): exactly the bytes it was made from.
void ExtractInterleavedRow(WeightFormat format, const uint8_t* base, int cols, int row, uint8_t* out);

}  // namespace flover::cpu::internal
