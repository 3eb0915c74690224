// The register tiles of the AVX2+FMA Matmul kernel, templated on how a row of weights is
// loaded: fp32 as it is (matmul_avx2.cc), or fp16/bf16 widened exactly in registers
// (weight_matmul_avx2.cc), which gives the bits of Matmul on the widened weights.
//
// Each output element's 16-lane accumulator of the canonical arithmetic
// (matmul_internal.h) is split into its two independent 8-lane halves (lanes 0-7 and
// 8-15), computed by two passes over each block of k, so these tiles give the same bits
// as the AVX-512 ones. Two passes let a register tile hold 3 x 4 elements in 16 ymm
// registers.
//
// Include only after <immintrin.h> and matmul_internal.h, inside a region compiled for
// AVX2 and FMA (a target pragma). Everything is in an anonymous namespace so that each
// including file gets its own copy, compiled for that file's target.
#pragma once

#include "kernels/cpu/matmul_internal.h"

namespace flover::cpu::internal {
namespace {

namespace avx2_tiles {

constexpr int kTileRows = 3;  // x rows per register tile
constexpr int kTileCols = 4;  // w rows per register tile (12 accumulators + 3 x + 1 w = 16 ymm)
constexpr long kRowBlockBytes = 384 * 1024;
// Elements of k per block over which both halves run before moving on (a multiple of
// 16; 7 rows x 1 KiB stay in L1).
constexpr int kBlockK = 256;

// Weights: a row of Elem; Load8 gives 8 of them as fp32, LoadTail8 the first `count` of
// 8 (count may be <= 0; the rest 0.0f), `mask` having lane i set where i < count.
struct F32Weights {
  using Elem = float;
  static __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 LoadTail8(const float* p, int /*count*/, __m256i mask) { return _mm256_maskload_ps(p, mask); }
};

// Step 3 of the canonical arithmetic on the two halves (lo = lanes 0-7, hi = 8-15).
inline float ReduceLanes(__m256 lo, __m256 hi) {
  const __m256 b = _mm256_add_ps(lo, hi);
  const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
  const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));
  return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

// Continues one 8-lane half (half = 0: lanes 0-7 of every 16-element chunk of k, half =
// 1: lanes 8-15) of the R x C tile's accumulators `state` over k in [k_begin, k_end).
// k_begin is a multiple of 16; k_end is too, or equals `in` (then the last chunk is
// zero-padded). Each full chunk also prefetches `pf_per_step` cache lines from w + pf
// on, below w + pf_end.
template <int R, int C, class Weights>
__attribute__((always_inline)) inline void AccumulateHalf(const float* __restrict x, long x_stride,
                                                          const typename Weights::Elem* __restrict w, int in,
                                                          int half, int k_begin, int k_end, __m256 (&state)[R][C],
                                                          long& pf, long pf_end, int pf_per_step) {
  constexpr long kLineElements = 64 / sizeof(typename Weights::Elem);
  // Accumulating in locals: through the reference GCC would keep them in memory.
  __m256 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = state[r][c];
  }
  const int off = 8 * half;
  int k = k_begin;
  for (; k + 16 <= k_end; k += 16) {
    for (int j = 0; j < pf_per_step && pf < pf_end; ++j, pf += kLineElements) {
      _mm_prefetch(reinterpret_cast<const char*>(w + pf), _MM_HINT_T1);
    }
    __m256 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x + r * x_stride + k + off);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m256 wv = Weights::Load8(w + static_cast<long>(c) * in + k + off);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
  if (k < k_end) {
    // Zero-filled tail lanes, as the AVX-512 kernel's masked loads. A half with no lane
    // left still adds 0 * 0, as the AVX-512 kernel does.
    const int count = in - k - off;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm256_maskload_ps(x + r * x_stride + k + off, mask);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m256 wv = Weights::LoadTail8(w + static_cast<long>(c) * in + k + off, count, mask);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) state[r][c] = acc[r][c];
  }
}

// y[r, c] (+)= dot(x[r], w[c]) for r < R, c < C (strides x_stride for x, `in` for w,
// `out` for y). Both halves advance block by block over k, so the rows' current block
// stays in L1 between the two passes.
template <int R, int C, class Weights>
void Tile(const float* __restrict x, long x_stride, const typename Weights::Elem* __restrict w, float* __restrict y,
          int in, int out, bool accumulate, long pf, long pf_end, int pf_per_step) {
  __m256 lo[R][C], hi[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
  }
  long no_pf = 0;
  for (int kb = 0; kb < in; kb += kBlockK) {
    const int ke = in - kb > kBlockK ? kb + kBlockK : in;
    AccumulateHalf<R, C, Weights>(x, x_stride, w, in, 0, kb, ke, lo, pf, pf_end, pf_per_step);
    AccumulateHalf<R, C, Weights>(x, x_stride, w, in, 1, kb, ke, hi, no_pf, 0, 0);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const float s = ReduceLanes(lo[r][c], hi[r][c]);
      float& dst = y[static_cast<long>(r) * out + c];
      dst = accumulate ? dst + s : s;
    }
  }
}

// kTiles<Weights>[R - 1][C - 1] = Tile<R, C, Weights>: edge tiles run the same
// per-element arithmetic.
template <class Weights>
constexpr MatmulTileFnOf<typename Weights::Elem> kTiles[kTileRows][kTileCols] = {
    {Tile<1, 1, Weights>, Tile<1, 2, Weights>, Tile<1, 3, Weights>, Tile<1, 4, Weights>},
    {Tile<2, 1, Weights>, Tile<2, 2, Weights>, Tile<2, 3, Weights>, Tile<2, 4, Weights>},
    {Tile<3, 1, Weights>, Tile<3, 2, Weights>, Tile<3, 3, Weights>, Tile<3, 4, Weights>},
};

// MatmulRangeFn's contract, for weights read through Weights.
template <class Weights>
void Range(const float* x, int x_stride, const typename Weights::Elem* w, float* y, int n, int in, int out,
           int o_begin, int o_end, bool accumulate) {
  MatmulRangeTiled(kTiles<Weights>, kRowBlockBytes, x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace avx2_tiles

}  // namespace
}  // namespace flover::cpu::internal
