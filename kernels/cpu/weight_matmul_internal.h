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
// says int (exact: every int sum below is far inside int32; those of 2. are below 2^24,
// so their conversion to fp32 is exact too):
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
//    normal. A row with an inf or NaN gives NaN outputs (through d). Also the sums of
//    each 32 q's, t_s = sum_{i<32} q_{32s+i} (int, |t_s| <= 4064): the SIMD kernels take
//    an offset out of the weights with them (2.), and Q4_K's mins need them (3.).
//
// 2. Q8_0 and Q4_0 weights: blocks of 32 with an fp16 scale dw_b and integers w_j (Q8_0:
//    q_j in [-128, 127]; Q4_0: q_j - 8 in [-8, 7]). The y element of x row r and W row
//    o, from the row's activation blocks (d_b, q), one accumulator:
//      acc = +0.0f
//      for each block b = 0, 1, ... in order:
//        p = sum_{j<32} w_{32b+j} * q_{32b+j}                        (int, |p| <= 520192)
//        acc = fma(float(p), dw_b * d_b, acc)
//      y = acc, or y = y + acc (accumulate).
//
// 3. Q4_K weights: blocks of 256 with fp16 d and dmin, eight sub-blocks s of 32 with
//    6-bit scale sc_s and min m_s, 4-bit q_j (weight_blocks.h). With the row's Q8_K
//    blocks (d_b, q, t), one accumulator per y element:
//      acc = +0.0f
//      for each block b in order:
//        P = sum_{s<8} sc_s * sum_{i<32} q_{32s+i} * x_{32s+i}   (int, |P| <= 30723840)
//        M = sum_{s<8} m_s * t_s                                 (int, |M| <= 2048256)
//        s = d * d_b;  sm = -(dmin * d_b)
//        acc = fma(float(P), s, acc)
//        acc = fma(float(M), sm, acc)
//      y = acc, or y = y + acc (accumulate).
//    float(P) rounds to nearest even where |P| > 2^24 (the same conversion everywhere).
//
// The SIMD variants read the kInterleaved layout (weight_interleave.h) with one y
// element per 32-bit lane: 16 W rows side by side, each lane summing a whole block (Q4_K:
// sub-block) in int32 before its scales are applied, so the fp32 and scale work is spread
// over 32 (Q4_K: 256) values per row; the kRows layout, one row per vector, would need it
// every few values and a reduction across lanes at the end.
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
  const int16_t* sums = nullptr;  // [n, cols / 32]: t_s
};

// Quantizes rows [0, n) of x ([n, cols], rows `cols` apart) into `storage` (resized as
// needed) per step 1. REQUIRES: cols % block == 0, block is 32 or 256.
QuantizedRows QuantizeActivationRows(const float* x, int n, int cols, int block, std::vector<uint8_t>& storage);

// Whether `format` is one of the int8 formats (Q8_0, Q4_0, Q4_K).
bool IsIntFormat(WeightFormat format);

// Everything a variant needs for one call.
struct WeightMatmulArgs {
  WeightFormat format = WeightFormat::kF32;
  const float* x = nullptr;  // float formats: [n, cols], rows x_stride floats apart
  int x_stride = 0;
  QuantizedRows qx;             // int8 formats: x quantized
  const uint8_t* w = nullptr;   // W's bytes, rows w_row_bytes apart, any alignment
  int64_t w_row_bytes = 0;      // kRows: the bytes of a row; kInterleaved: of its GGUF row
  WeightLayout layout = WeightLayout::kRows;
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
  // Float formats: the Matmul kernel whose bits the variant gives, which it runs on a
  // widened copy of a few rows ("widen+K" always, the others for a layout they do not read).
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

void WeightRangeF16Avx512(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeBf16Avx512(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ8_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end);
void WeightRangeQ4_KAvx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end);

}  // namespace flover::cpu::internal
