// AVX-512 Matmul kernel: register tiles of R x rows by C w rows, one 16-lane accumulator
// per output element (the canonical arithmetic of matmul_internal.h).
//
// Only <immintrin.h> is included and everything is compiled for AVX-512 through a
// function-level target pragma, so no inline library function is emitted with AVX-512
// instructions (which could be picked by the linker for non-AVX-512 callers).
#include <immintrin.h>

#include "kernels/cpu/matmul_internal.h"

// GCC takes a target pragma; clang applies the same target attribute to every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,fma")
#endif
// GCC 12 warns about the _mm512_undefined_ps() inside unmasked shuffle intrinsics
// (GCC bug 105593, fixed in GCC 13); nothing here reads an undefined value.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace flover::cpu::internal {
namespace {

constexpr int kTileRows = 4;  // x rows per register tile
constexpr int kTileCols = 6;  // w rows per register tile (4 x 6 = 24 of 32 zmm registers)
// x rows kept hot in L2 while the thread's w rows stream past them.
constexpr long kRowBlockBytes = 384 * 1024;

// Step 3 of the canonical arithmetic for eight accumulators at once: returns the eight
// sums s(a[0]) .. s(a[7]) in lanes 0..7. Every sum goes through exactly the canonical
// tree (b[i] = a[i] + a[i+8], c[i] = b[i] + b[i+4], d[i] = c[i] + c[i+2], s = d[0] + d[1]);
// the shuffles only decide which sums share a register. 24 instructions instead of 8 x 8.
inline __m512 ReduceLanes8(const __m512 (&a)[8]) {
  // b: 128-bit lanes [b_j[0:4], b_j[4:8], b_k[0:4], b_k[4:8]] for pairs (j, k).
  __m512 b[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // c: 128-bit lanes [c_0, c_1, c_2, c_3] and [c_4, c_5, c_6, c_7].
  const __m512 c0 = _mm512_add_ps(_mm512_shuffle_f32x4(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 c1 = _mm512_add_ps(_mm512_shuffle_f32x4(b[2], b[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(b[2], b[3], _MM_SHUFFLE(3, 1, 3, 1)));
  // d: 128-bit lane j holds [d_j[0], d_j[1], d_{j+4}[0], d_{j+4}[1]].
  const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(c0, c1, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(c0, c1, _MM_SHUFFLE(3, 2, 3, 2)));
  // s: element 4j holds s_j, element 4j + 2 holds s_{j+4}.
  const __m512 s = _mm512_add_ps(d, _mm512_movehdup_ps(d));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0), s);
}

// y[r, c] (+)= dot(x[r], w[c]) for r < R, c < C. Rows of x are `in` floats apart, rows
// of y `out` floats apart. Each full step over k also prefetches `pf_per_step` cache
// lines, from w + pf_begin on but not beyond w + pf_end (see MatmulRangeTiled).
template <int R, int C>
void Tile(const float* __restrict x, long x_stride, const float* __restrict w, float* __restrict y, int in, int out,
          bool accumulate, long pf_begin, long pf_end, int pf_per_step) {
  __m512 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int k = 0;
  long pf = pf_begin;
  for (; k + 16 <= in; k += 16) {
    for (int j = 0; j < pf_per_step && pf < pf_end; ++j, pf += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(w + pf), _MM_HINT_T1);
    }
    __m512 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm512_loadu_ps(x + r * x_stride + k);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m512 wv = _mm512_loadu_ps(w + static_cast<long>(c) * in + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
  if (k < in) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (in - k)) - 1u);
    __m512 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm512_maskz_loadu_ps(mask, x + r * x_stride + k);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m512 wv = _mm512_maskz_loadu_ps(mask, w + static_cast<long>(c) * in + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
  static_assert(C <= 8, "one ReduceLanes8 per row");
  const __mmask16 row_mask = static_cast<__mmask16>((1u << C) - 1u);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    __m512 row[8];
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) row[c] = acc[r][c < C ? c : C - 1];  // lanes >= C are not stored
    __m512 sums = ReduceLanes8(row);
    float* yr = y + static_cast<long>(r) * out;
    if (accumulate) sums = _mm512_add_ps(_mm512_maskz_loadu_ps(row_mask, yr), sums);
    _mm512_mask_storeu_ps(yr, row_mask, sums);
  }
}

// kTiles[R - 1][C - 1] = Tile<R, C>: edge tiles run the same per-element arithmetic.
constexpr MatmulTileFn kTiles[kTileRows][kTileCols] = {
    {Tile<1, 1>, Tile<1, 2>, Tile<1, 3>, Tile<1, 4>, Tile<1, 5>, Tile<1, 6>},
    {Tile<2, 1>, Tile<2, 2>, Tile<2, 3>, Tile<2, 4>, Tile<2, 5>, Tile<2, 6>},
    {Tile<3, 1>, Tile<3, 2>, Tile<3, 3>, Tile<3, 4>, Tile<3, 5>, Tile<3, 6>},
    {Tile<4, 1>, Tile<4, 2>, Tile<4, 3>, Tile<4, 4>, Tile<4, 5>, Tile<4, 6>},
};

}  // namespace

void MatmulRangeAvx512(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                       int o_end, bool accumulate) {
  MatmulRangeTiled(kTiles, kRowBlockBytes, x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace flover::cpu::internal

#pragma GCC diagnostic pop
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
