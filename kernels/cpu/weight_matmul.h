// Weight matrices kept in the precision they were loaded or quantized to (fp32, fp16,
// bf16, or the ggml block formats Q8_0, Q4_0 and Q4_K, byte for byte as GGUF stores
// them), and the weight GEMM over them: y[n, rows] (+)= x[n, cols] · Wᵀ, x and y fp32.
//
// Numerics, per format (each one batch-invariant: every element of y is computed by the
// same operations whatever n is, which rows share the call and how many threads run):
//   - fp32, fp16, bf16: each weight is widened exactly to fp32 in registers, then the
//     canonical fp32 arithmetic of Matmul (matmul_internal.h): the result equals
//     Matmul(x, widened W) bit for bit.
//   - Q8_0, Q4_0, Q4_K: each row of x is quantized per block (Q8_0 blocks of 32 for
//     Q8_0/Q4_0 weights, Q8_K blocks of 256 for Q4_K), products summed in int32 (exact),
//     then scaled and summed in fp32 in a fixed order (weight_matmul_internal.h spells
//     it out). The error against fp32 is the activations' quantization on top of the
//     weights'.
// Every instruction-set variant of a format (portable, AVX2, AVX-512 with VNNI where
// the CPU has them) gives the same bits, with one exception that mirrors Matmul's: under
// FLOVER_MATMUL_KERNEL=generic the fp32/fp16/bf16 path follows Matmul's portable kernel,
// which rounds differently (no FMA). The variant is chosen once per process from the CPU,
// at the level of Matmul's kernel (FLOVER_MATMUL_KERNEL=avx2 or generic limits both).
//
// Multi-threaded with OpenMP over the rows of W; call from outside any parallel region.
// Thread-safety: reentrant.
#pragma once

#include <cstdint>

namespace flover::cpu {

enum class WeightFormat : uint8_t { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K };

// "fp32", "fp16", "bf16", "q8_0", "q4_0", "q4_k" (model.dtype's spelling).
const char* WeightFormatName(WeightFormat format);
// Values per block (1 for fp32/fp16/bf16, 32 for Q8_0/Q4_0, 256 for Q4_K) and bytes
// per block (4, 2, 2, 34, 18, 144).
int WeightBlockValues(WeightFormat format);
int WeightBlockBytes(WeightFormat format);
// Bytes of one row of `cols` values. REQUIRES: cols % WeightBlockValues(format) == 0.
int64_t WeightRowBytes(WeightFormat format, int64_t cols);

// How a matrix's bytes are laid out.
//   kRows: row after row, each WeightRowBytes(format, cols) bytes from the previous one,
//       as GGUF stores them (every format).
//   kInterleaved (every format): groups of kInterleaveRows rows, the last one padded
//       with zero rows, whose blocks are stored side by side (weight_interleave.h): the
//       layout the SIMD kernels stream at full speed, one vector lane per row.
//       InterleavedWeightBytes gives its size: the same bytes per block and row as GGUF
//       for Q8_0 and Q4_0, 148 per 256 values for Q4_K (144 in GGUF: its 6-bit scales
//       and mins are kept unpacked), for fp32, fp16 and bf16 the values with each row
//       padded to a multiple of 16, plus the padding rows.
// MatmulWeights gives the same bits for either layout of a matrix. The int8 formats' SIMD
// kernels read only kInterleaved (on kRows the portable kernel runs, several times
// slower). The float formats' AVX2 kernels read both, kInterleaved as fast for one x row
// and faster from a few on (their outer-product tiles read the groups in place, where
// from rows they regroup each call's weights, or use dot-product tiles that reload x);
// the other float kernels read kInterleaved through a copy of a few rows at a time.
// PreferredWeightLayout says which layout to keep a matrix in.
enum class WeightLayout : uint8_t { kRows, kInterleaved };
inline constexpr int kInterleaveRows = 16;

// A [rows, cols] matrix in `format` laid out as `layout`; no alignment required. Not
// owning.
struct WeightView {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;
  int rows = 0;
  int cols = 0;
  WeightLayout layout = WeightLayout::kRows;
};

// Whether `format` has the kInterleaved layout (every format does).
bool HasInterleavedLayout(WeightFormat format);
// The layout MatmulWeights reads `format` fastest in, with the kernel this process
// chose: kInterleaved for the int8 formats, and for fp32, fp16 and bf16 under the AVX2
// kernels; kRows otherwise.
WeightLayout PreferredWeightLayout(WeightFormat format);
// Bytes of a [rows, cols] matrix of `format` in the kInterleaved layout.
// REQUIRES: HasInterleavedLayout(format), rows >= 0, cols > 0 a multiple of the block.
int64_t InterleavedWeightBytes(WeightFormat format, int64_t rows, int64_t cols);
// Writes the kRows matrix w in the kInterleaved layout (InterleavedWeightBytes bytes at
// out). Exact: every field of every block is kept, hostile bytes included, and
// DequantizeWeightRows reads the same values from either layout.
// REQUIRES: w.layout == kRows, HasInterleavedLayout(w.format); out does not overlap w.
void InterleaveWeightRows(const WeightView& w, void* out);

// y[n, w.rows] = x[n, w.cols] · Wᵀ, or y += with accumulate (the residual stream).
// REQUIRES: n >= 0, w.rows > 0, w.cols > 0 and a multiple of the block, w.layout one the
// format has; x, W, y do not overlap.
void MatmulWeights(const float* x, const WeightView& w, float* y, int n, bool accumulate = false);

// Rows [row_begin, row_begin + n_rows) of W as fp32 (embedding lookups, tests): exact
// for fp16/bf16, the format's dequantization (gguf-py's, bit for bit) otherwise; either
// layout.
void DequantizeWeightRows(const WeightView& w, int row_begin, int n_rows, float* out);

// Converts n_rows rows of `cols` fp32 values into `format` (n_rows *
// WeightRowBytes(format, cols) bytes at out): round to nearest even for fp16/bf16; the
// block quantizations for Q8_0, Q4_0 and Q4_K (scales chosen per block as llama.cpp's
// reference quantizers do, not necessarily bit-identical to theirs).
// REQUIRES: cols % WeightBlockValues(format) == 0.
void QuantizeWeightRows(WeightFormat format, const float* x, int64_t n_rows, int64_t cols, void* out);

// The kernel MatmulWeights uses for `format` in this process ("avx512-vnni", "avx2",
// "generic", ...), for logs and benchmarks.
const char* MatmulWeightsKernelName(WeightFormat format);

}  // namespace flover::cpu
