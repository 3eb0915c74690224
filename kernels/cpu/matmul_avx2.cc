// AVX2+FMA Matmul kernel. Each output element's 16-lane accumulator of the canonical
// arithmetic (matmul_internal.h) is split into its two independent 8-lane halves (lanes
// 0-7 and 8-15), computed by two passes over each block of k, so this kernel gives the
// same bits as the AVX-512 one. Two passes let a register tile hold 3 x 4 elements in 16
// ymm registers.
//
// Only <immintrin.h> is included and the AVX2 target is set after it, so no inline
// library function is emitted with AVX2 instructions.
#include <immintrin.h>

#include "kernels/cpu/matmul_internal.h"

// GCC takes a target pragma; clang applies the same target attribute to every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace flover::cpu::internal {
namespace {

constexpr int kTileRows = 3;  // x rows per register tile
constexpr int kTileCols = 4;  // w rows per register tile (12 accumulators + 3 x + 1 w = 16 ymm)
constexpr long kRowBlockBytes = 384 * 1024;
// Floats of k per block over which both halves run before moving on (a multiple of 16;
// 7 rows x 1 KiB stay in L1).
constexpr int kBlockK = 256;

// Step 3 of the canonical arithmetic on the two halves (lo = lanes 0-7, hi = 8-15).
inline float ReduceLanes(__m256 lo, __m256 hi) {
  const __m256 b = _mm256_add_ps(lo, hi);
  const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
  const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));
  return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

// Continues one 8-lane half (half = 0: lanes 0-7 of every 16-float chunk of k, half = 1:
// lanes 8-15) of the R x C tile's accumulators `state` over k in [k_begin, k_end).
// k_begin is a multiple of 16; k_end is too, or equals `in` (then the last chunk is
// zero-padded). Each full chunk also prefetches `pf_per_step` cache lines from w + pf
// on, below w + pf_end.
template <int R, int C>
__attribute__((always_inline)) inline void AccumulateHalf(const float* __restrict x, long x_stride,
                                                          const float* __restrict w, int in, int half, int k_begin,
                                                          int k_end, __m256 (&state)[R][C], long& pf, long pf_end,
                                                          int pf_per_step) {
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
    for (int j = 0; j < pf_per_step && pf < pf_end; ++j, pf += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(w + pf), _MM_HINT_T1);
    }
    __m256 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x + r * x_stride + k + off);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m256 wv = _mm256_loadu_ps(w + static_cast<long>(c) * in + k + off);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
  if (k < k_end) {
    // Zero-filled tail lanes, as the AVX-512 kernel's masked loads. A half with no lane
    // left still adds 0 * 0, as the AVX-512 kernel does.
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(in - k - off), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm256_maskload_ps(x + r * x_stride + k + off, mask);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m256 wv = _mm256_maskload_ps(w + static_cast<long>(c) * in + k + off, mask);
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

// y[r, c] (+)= dot(x[r], w[c]) for r < R, c < C (strides `in` for x and w, `out` for y).
// Both halves advance block by block over k, so the rows' current block stays in L1
// between the two passes.
template <int R, int C>
void Tile(const float* __restrict x, long x_stride, const float* __restrict w, float* __restrict y, int in, int out,
          bool accumulate, long pf, long pf_end, int pf_per_step) {
  __m256 lo[R][C], hi[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
  }
  long no_pf = 0;
  for (int kb = 0; kb < in; kb += kBlockK) {
    const int ke = in - kb > kBlockK ? kb + kBlockK : in;
    AccumulateHalf<R, C>(x, x_stride, w, in, 0, kb, ke, lo, pf, pf_end, pf_per_step);
    AccumulateHalf<R, C>(x, x_stride, w, in, 1, kb, ke, hi, no_pf, 0, 0);
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

// kTiles[R - 1][C - 1] = Tile<R, C>: edge tiles run the same per-element arithmetic.
constexpr MatmulTileFn kTiles[kTileRows][kTileCols] = {
    {Tile<1, 1>, Tile<1, 2>, Tile<1, 3>, Tile<1, 4>},
    {Tile<2, 1>, Tile<2, 2>, Tile<2, 3>, Tile<2, 4>},
    {Tile<3, 1>, Tile<3, 2>, Tile<3, 3>, Tile<3, 4>},
};

}  // namespace

void MatmulRangeAvx2(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                     int o_end, bool accumulate) {
  MatmulRangeTiled(kTiles, kRowBlockBytes, x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace flover::cpu::internal

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
