// Private to MatmulWeights (weight_matmul.h): the canonical arithmetic of each weight
// format, which every instruction-set variant of the format follows exactly, and the
// variants MatmulWeights dispatches to.
//
// FLOAT FORMATS (fp32, fp16, bf16). Each weight is widened exactly to fp32 (float16.h),
// then each y element follows the canonical arithmetic of Matmul (matmul_internal.h).
// The "avx512" and "avx2" variants widen in registers inside Matmul's own register tiles
// (matmul_avx512_tiles.h, matmul_avx2_tiles.h) and give Matmul's SIMD bits; the
// "widen+K" variants widen a few rows at a time into a buffer and run Matmul kernel K on
// it, so they give K's bits ("widen+generic" the portable kernel's, which round
// differently from the SIMD ones, as for Matmul).
//
// INT8 FORMATS (Q8_0, Q4_0, Q4_K). With u = 2^-96 and all arithmetic in fp32 unless it
// says int (exact: every int sum below is far inside int32 and below 2^24, so its
// conversion to fp32 is exact too):
//
// 1. Activations. Each row of x is cut into blocks of B values (B = 32 for Q8_0 and Q4_0
//    weights, B = 256 for Q4_K: ggml's Q8_0 and Q8_K) and each block quantized alone:
//      a = max_j |x_j|, compared as the bit patterns of |x_j| (unsigned), so that a
//          NaN beats inf and inf beats every finite value;
//      if a < u (all zeros included):  d = 0,          q_j = 0;
//      if u <= a <= FLT_MAX:           d = a / 127,    q_j = rne(x_j * (127 / a));
//      if a is inf or NaN:             d = a / 127,    q_j = 0.
//    rne rounds to nearest, ties to even. |q_j| <= 127, never -128: x_j * (127 / a) <=
//    127 (1 + 2^-24)^2 < 127.5 after its two roundings. u keeps 127 / a finite and d
//    normal. A row with an inf or NaN gives NaN outputs (through d). For B = 256 also
//    the sums of each 32 q's, t_s = sum_{i<32} q_{32s+i} (|t_s| <= 4064).
//
// 2. Q8_0 and Q4_0 weights: blocks of 32 with an fp16 scale dw_b and integers w_j (Q8_0:
//    q_j in [-128, 127]; Q4_0: q_j - 8 in [-8, 7]). The y element of x row r and W row
//    o, from the row's activation blocks (d_b, q):
//      acc[0..15] = +0.0f
//      for each block b = 0, 1, ... in order:
//        s = dw_b * d_b
//        for l = 0..7:
//          p = sum_{i<4} w_{32b+4l+i} * q_{32b+4l+i}                 (int, |p| <= 65024)
//          acc[8 (b mod 2) + l] = fma(float(p), s, acc[8 (b mod 2) + l])
//      then Matmul's lane tree: e[i] = acc[i] + acc[i+8], f[i] = e[i] + e[i+4],
//      g[i] = f[i] + f[i+2], sum = g[0] + g[1]; y = sum, or y = y + sum (accumulate).
//    A lane holds the 4-value dot products that vpdpbusd (AVX-512 VNNI, two blocks per
//    zmm) and vpmaddubsw + vpmaddwd (AVX2, one block per ymm) produce in place.
//
// 3. Q4_K weights: blocks of 256 with fp16 d and dmin, eight sub-blocks s of 32 with
//    6-bit scale sc_s and min m_s, 4-bit q_j (weight_blocks.h). With the row's Q8_K
//    blocks (d_b, q, t):
//      acc[0..15] = +0.0f
//      for each block b in order:
//        for h = 0, 1 and l = 0..7 (sub-block 2k + h holds values 64k + 32h + [0, 32)):
//          P[8h + l] = sum_{k<4} sc_{2k+h} * sum_{i<4} q_{64k+32h+4l+i} * x_{same}
//                                                        (int, |P| <= 1920240 < 2^24)
//        for i = 0..3:
//          M[i] = m_{2i} * t_{2i} + m_{2i+1} * t_{2i+1}  (int, |M| <= 512064)
//        s = d * d_b;  sm = -(dmin * d_b)
//        acc[j] = fma(float(P[j]), s, acc[j])            for j = 0..15
//        acc[i] = fma(float(M[i]), sm, acc[i])           for i = 0..3, after the above
//      then the lane tree and the store of 2.
//    A zmm holds sub-blocks 2k and 2k + 1, the low and high nibbles of the same 32 bytes;
//    M is vpmaddwd of the 8 mins with the 8 sums.
//
// The int sums may be computed in any way that gives these integers (they are exact);
// the fp32 operations, their operands and their order are the contract. Only the tiling
// and the thread split differ with n and the thread count, so every variant of a format
// gives the same bits, and each is batch-invariant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_matmul.h"

namespace flover::cpu::internal {

// The rows of x quantized per step 1 above (one call's worth; not owning).
struct QuantizedRows {
  int block = 0;                  // B: 32 or 256
  long stride = 0;                // bytes between the rows of q (>= cols, a multiple of 64)
  const int8_t* q = nullptr;      // [n, stride]: the quantized values of row r at q + r * stride
  const float* d = nullptr;       // [n, cols / block]: the blocks' scales
  const int16_t* sums = nullptr;  // [n, cols / 32]: t_s (B = 256 only, else nullptr)
};

// Quantizes rows [0, n) of x ([n, cols], rows `cols` apart) into `storage` (resized as
// needed) per step 1. REQUIRES: cols % block == 0, block is 32 or 256.
QuantizedRows QuantizeActivationRows(const float* x, int n, int cols, int block, std::vector<uint8_t>& storage);

// Everything a variant needs for one call.
struct WeightMatmulArgs {
  WeightFormat format = WeightFormat::kF32;
  const float* x = nullptr;  // float formats: [n, cols], rows x_stride floats apart
  int x_stride = 0;
  QuantizedRows qx;             // int8 formats: x quantized
  const uint8_t* w = nullptr;   // W's bytes, rows w_row_bytes apart, any alignment
  int64_t w_row_bytes = 0;
  float* y = nullptr;  // [n, rows]
  int n = 0, cols = 0, rows = 0;
  bool accumulate = false;
  MatmulRangeFn widened = nullptr;  // "widen+K" variants: K's range function
};

// Computes y[r, o] for every row r < n and W row o in [o_begin, o_end). Single-threaded.
using WeightRangeFn = void (*)(const WeightMatmulArgs& args, int o_begin, int o_end);

// A variant of a format and how MatmulWeights splits W's rows between threads for it.
struct WeightKernel {
  const char* name = nullptr;  // "avx512-vnni", "avx2", "generic", "widen+avx2", ...
  WeightRangeFn fn = nullptr;  // nullptr: this CPU cannot run the variant
  int col_align = 1;           // thread ranges start at multiples of this
  int activation_block = 0;    // int8 formats: B of step 1; 0 for float formats
  MatmulRangeFn widened = nullptr;
};

// The variants of `format`, best first, for tests and benchmarks. Float formats:
// "avx512", "avx2", "widen+avx512", "widen+avx2", "widen+generic" (fp32: "avx512",
// "avx2", "generic", Matmul's kernels reading W in place); int8 formats: "avx512-vnni",
// "avx2", "generic".
std::vector<const char*> WeightKernelNames(WeightFormat format);
// The variant `name` of `format` if this CPU can run it, else one with fn == nullptr.
WeightKernel FindWeightKernel(WeightFormat format, const char* name);
// The CPU features the variant needs ("AVX2, FMA and F16C", ...), for messages; "" when
// it needs none, nullptr for a name `format` does not have.
const char* WeightKernelRequirement(WeightFormat format, const char* name);

// The variant MatmulWeights uses for `format` in this process: the best this CPU runs
// whose arithmetic is that of the Matmul kernel chosen for the process (so
// FLOVER_MATMUL_KERNEL=avx2 or generic limits it to those instruction sets).
const WeightKernel& SelectedWeightKernel(WeightFormat format);

// MatmulWeights through a given variant. REQUIRES: kernel.fn != nullptr and a variant
// of w.format.
void MatmulWeightsWithKernel(const WeightKernel& kernel, const float* x, const WeightView& w, float* y, int n,
                             bool accumulate);

// Row `row` of `cols` values of `format` as fp32 (DequantizeWeightRows's values).
void DequantizeWeightRow(WeightFormat format, const uint8_t* row, int cols, float* y);

// Matmul's lane tree (step 3 of matmul_internal.h) on 16 lanes.
inline float SumLanes(const float (&acc)[16]) {
  float e[8], f[4];
  for (int i = 0; i < 8; ++i) e[i] = acc[i] + acc[i + 8];
  for (int i = 0; i < 4; ++i) f[i] = e[i] + e[i + 4];
  return (f[0] + f[2]) + (f[1] + f[3]);
}

// Software prefetch for the int8 tiles: while a tile reads bytes [offset, offset + 64)
// of its C weight rows, the same bytes of the next C rows (the next tile's, one tile
// ahead in memory) are requested into L2. The hardware prefetchers alone leave the
// int8 kernels latency-bound at small n (rows of a few hundred bytes to a few kB, C of
// them read side by side). Only the first x-row tile of a W tile prefetches (the others
// read what it brought in); past the matrix's end the requests fetch nothing useful and
// never fault.
template <int C>
__attribute__((always_inline)) inline void PrefetchNextTileRows(const uint8_t* const (&w)[C], long row_bytes,
                                                                long offset) {
  for (int c = 0; c < C; ++c) __builtin_prefetch(w[c] + C * row_bytes + offset, 0, 2);
}

// The same for one Q4_K block of 144 bytes at p (the next tile's block under this one).
__attribute__((always_inline)) inline void PrefetchQ4KBlock(const uint8_t* p) {
  __builtin_prefetch(p, 0, 2);
  __builtin_prefetch(p + 64, 0, 2);
  __builtin_prefetch(p + 128, 0, 2);
}

// Runs Tiles<R, C>::Run(a, r0, o0) for the R x C tile at x row r0 and W row o0, where
// R <= kRows and C <= kCols are the rows and columns left (edge tiles are smaller).
template <int kRows, int kCols, template <int, int> class Tiles>
__attribute__((always_inline)) inline void RunQuantTile(int rows, int cols, const WeightMatmulArgs& a, int r0,
                                                        int o0) {
  if constexpr (kRows > 1) {
    if (rows < kRows) return RunQuantTile<kRows - 1, kCols, Tiles>(rows, cols, a, r0, o0);
  }
  if constexpr (kCols > 1) {
    if (cols < kCols) return RunQuantTile<kRows, kCols - 1, Tiles>(rows, cols, a, r0, o0);
  }
  Tiles<kRows, kCols>::Run(a, r0, o0);
}

// The tile loop of the int8 SIMD variants (WeightRangeFn's contract): W rows
// [o_begin, o_end) kCols at a time, every x row kRows at a time under each. It uses no
// intrinsics; each variant instantiates it inside its own target region.
template <int kRows, int kCols, template <int, int> class Tiles>
__attribute__((always_inline)) inline void QuantRangeTiledAs(const WeightMatmulArgs& a, int o_begin, int o_end) {
  for (int o = o_begin; o < o_end; o += kCols) {
    const int c = o_end - o < kCols ? o_end - o : kCols;
    for (int r = 0; r < a.n; r += kRows) {
      RunQuantTile<kRows, kCols, Tiles>(a.n - r < kRows ? a.n - r : kRows, c, a, r, o);
    }
  }
}

// The same with two tile shapes: kNarrowRows x kNarrowCols when all of x fits one tile
// row (decode at small batch: many W rows side by side keep enough weight streams in
// flight to read memory at its bandwidth), kRows x kCols otherwise (reuse of each
// loaded weight across x rows). The shape never changes how an element is computed.
template <int kRows, int kCols, int kNarrowRows, int kNarrowCols, template <int, int> class Tiles>
__attribute__((always_inline)) inline void QuantRangeTiled(const WeightMatmulArgs& a, int o_begin, int o_end) {
  if (a.n <= kNarrowRows) return QuantRangeTiledAs<kNarrowRows, kNarrowCols, Tiles>(a, o_begin, o_end);
  QuantRangeTiledAs<kRows, kCols, Tiles>(a, o_begin, o_end);
}

// The variants (weight_matmul_generic.cc, weight_matmul_avx2.cc, weight_matmul_avx512.cc,
// weight_matmul_avx512_vnni.cc). REQUIRES: the CPU features WeightKernelRequirement names.
void WeightRangeWidened(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeF32InPlace(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ8_0Generic(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_0Generic(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_KGeneric(const WeightMatmulArgs& a, int o_begin, int o_end);

void WeightRangeF16Avx2(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeBf16Avx2(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ8_0Avx2(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_0Avx2(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_KAvx2(const WeightMatmulArgs& a, int o_begin, int o_end);
inline constexpr int kAvx2QuantTileCols = 2;  // W rows per tile of the AVX2 int8 variants

void WeightRangeF16Avx512(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeBf16Avx512(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ8_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_KAvx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end);
inline constexpr int kAvx512QuantTileCols = 2;  // W rows per tile of the AVX-512 int8 variants

}  // namespace flover::cpu::internal
