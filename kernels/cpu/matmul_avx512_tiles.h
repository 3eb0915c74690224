// The register tiles of the AVX-512 Matmul kernel (the canonical arithmetic of
// matmul_internal.h: one 16-lane accumulator per output element), templated on how a
// row of weights is loaded: fp32 as it is (matmul_avx512.cc), or fp16/bf16 widened
// exactly in registers (weight_matmul_avx512.cc), which gives the bits of Matmul on the
// widened weights.
//
// Include only after <immintrin.h> and matmul_internal.h, inside a region compiled for
// AVX-512 F/VL/BW/DQ and FMA (a target pragma). Everything is in an anonymous namespace so that each including
// file gets its own copy, compiled for that file's target.
#pragma once

#include "kernels/cpu/matmul_internal.h"

namespace flover::cpu::internal {
namespace {

namespace avx512_tiles {

constexpr int kTileRows = 4;  // x rows per register tile
constexpr int kTileCols = 6;  // w rows per register tile (4 x 6 = 24 of 32 zmm registers)
// x rows kept hot in L2 while the thread's w rows stream past them.
constexpr long kRowBlockBytes = 384 * 1024;

// Weights: a row of Elem; Load gives 16 of them as fp32, LoadFirst the first `mask` ones
// (the rest 0.0f).
struct F32Weights {
  using Elem = float;
  static __m512 Load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 LoadFirst(__mmask16 mask, const float* p) { return _mm512_maskz_loadu_ps(mask, p); }
};

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

// Steps 3 and 4 for the accumulators of one x row and C <= 8 w rows: y[c] = s(acc[c]),
// or y[c] += s(acc[c]).
template <int C>
__attribute__((always_inline)) inline void StoreRow(const __m512 (&acc)[C], float* __restrict y, bool accumulate) {
  static_assert(C <= 8, "one ReduceLanes8 per row");
  const __mmask16 row_mask = static_cast<__mmask16>((1u << C) - 1u);
  __m512 row[8];
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) row[c] = acc[c < C ? c : C - 1];  // lanes >= C are not stored
  __m512 sums = ReduceLanes8(row);
  if (accumulate) sums = _mm512_add_ps(_mm512_maskz_loadu_ps(row_mask, y), sums);
  _mm512_mask_storeu_ps(y, row_mask, sums);
}

// One full 16-element chunk of k at k: acc[r][c] += x[r] * w[c] lane by lane.
template <int R, int C, class Weights>
__attribute__((always_inline)) inline void Step(const float* __restrict x, long x_stride,
                                                const typename Weights::Elem* __restrict w, int in, int k,
                                                __m512 (&acc)[R][C]) {
  __m512 xv[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) xv[r] = _mm512_loadu_ps(x + r * x_stride + k);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    const __m512 wv = Weights::Load(w + static_cast<long>(c) * in + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
  }
}

// y[r, c] (+)= dot(x[r], w[c]) for r < R, c < C. Rows of x are x_stride floats apart,
// rows of w `in` elements, rows of y `out` floats. The first full steps over k also
// prefetch `pf_per_step` cache lines each, from w + pf_begin on until w + pf_end (see
// MatmulRangeTiled); the steps after that run without the prefetch's bookkeeping.
template <int R, int C, class Weights>
void Tile(const float* __restrict x, long x_stride, const typename Weights::Elem* __restrict w, float* __restrict y,
          int in, int out, bool accumulate, long pf_begin, long pf_end, int pf_per_step) {
  constexpr long kLineElements = 64 / sizeof(typename Weights::Elem);
  __m512 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int k = 0;
  long pf = pf_begin;
  for (; k + 16 <= in && pf < pf_end; k += 16) {
    for (int j = 0; j < pf_per_step && pf < pf_end; ++j, pf += kLineElements) {
      _mm_prefetch(reinterpret_cast<const char*>(w + pf), _MM_HINT_T1);
    }
    Step<R, C, Weights>(x, x_stride, w, in, k, acc);
  }
  for (; k + 16 <= in; k += 16) Step<R, C, Weights>(x, x_stride, w, in, k, acc);
  if (k < in) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (in - k)) - 1u);
    __m512 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm512_maskz_loadu_ps(mask, x + r * x_stride + k);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m512 wv = Weights::LoadFirst(mask, w + static_cast<long>(c) * in + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) StoreRow<C>(acc[r], y + static_cast<long>(r) * out, accumulate);
}

// kTiles<Weights>[R - 1][C - 1] = Tile<R, C, Weights>: edge tiles run the same
// per-element arithmetic.
template <class Weights>
constexpr MatmulTileFnOf<typename Weights::Elem> kTiles[kTileRows][kTileCols] = {
    {Tile<1, 1, Weights>, Tile<1, 2, Weights>, Tile<1, 3, Weights>, Tile<1, 4, Weights>, Tile<1, 5, Weights>,
     Tile<1, 6, Weights>},
    {Tile<2, 1, Weights>, Tile<2, 2, Weights>, Tile<2, 3, Weights>, Tile<2, 4, Weights>, Tile<2, 5, Weights>,
     Tile<2, 6, Weights>},
    {Tile<3, 1, Weights>, Tile<3, 2, Weights>, Tile<3, 3, Weights>, Tile<3, 4, Weights>, Tile<3, 5, Weights>,
     Tile<3, 6, Weights>},
    {Tile<4, 1, Weights>, Tile<4, 2, Weights>, Tile<4, 3, Weights>, Tile<4, 4, Weights>, Tile<4, 5, Weights>,
     Tile<4, 6, Weights>},
};

// y[c] (+)= dot(x, w[c]) for c < C <= 8 (w rows `in` elements apart), one x row.
template <int C, class Weights>
__attribute__((always_inline)) inline void RowDotsTile(const float* __restrict x,
                                                       const typename Weights::Elem* __restrict w, int in,
                                                       float* __restrict y, bool accumulate) {
  __m512 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  int k = 0;
  for (; k + 16 <= in; k += 16) {
    const __m512 xv = _mm512_loadu_ps(x + k);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[c] = _mm512_fmadd_ps(xv, Weights::Load(w + static_cast<long>(c) * in + k), acc[c]);
  }
  if (k < in) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (in - k)) - 1u);
    const __m512 xv = _mm512_maskz_loadu_ps(mask, x + k);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      acc[c] = _mm512_fmadd_ps(xv, Weights::LoadFirst(mask, w + static_cast<long>(c) * in + k), acc[c]);
    }
  }
  StoreRow<C>(acc, y, accumulate);
}

// One x row against at most kRowDotsBytes of w rows (attention's scores of a KV block):
// without the blocking and prefetching driver, whose bookkeeping would cost more than
// these few products.
constexpr long kRowDotsBytes = 16 * 1024;

template <class Weights>
void RowDots(const float* x, const typename Weights::Elem* w, float* y, int in, int o_begin, int o_end,
             bool accumulate) {
  int o = o_begin;
  for (; o + 8 <= o_end; o += 8) RowDotsTile<8, Weights>(x, w + static_cast<long>(o) * in, in, y + o, accumulate);
  const typename Weights::Elem* wo = w + static_cast<long>(o) * in;
  switch (o_end - o) {
    case 7: return RowDotsTile<7, Weights>(x, wo, in, y + o, accumulate);
    case 6: return RowDotsTile<6, Weights>(x, wo, in, y + o, accumulate);
    case 5: return RowDotsTile<5, Weights>(x, wo, in, y + o, accumulate);
    case 4: return RowDotsTile<4, Weights>(x, wo, in, y + o, accumulate);
    case 3: return RowDotsTile<3, Weights>(x, wo, in, y + o, accumulate);
    case 2: return RowDotsTile<2, Weights>(x, wo, in, y + o, accumulate);
    case 1: return RowDotsTile<1, Weights>(x, wo, in, y + o, accumulate);
    default: return;
  }
}

// MatmulRangeFn's contract, for weights read through Weights.
template <class Weights>
void Range(const float* x, int x_stride, const typename Weights::Elem* w, float* y, int n, int in, int out, int o_begin,
           int o_end, bool accumulate) {
  if (n == 1 &&
      static_cast<long>(o_end - o_begin) * in * static_cast<long>(sizeof(typename Weights::Elem)) <= kRowDotsBytes)
    return RowDots<Weights>(x, w, y, in, o_begin, o_end, accumulate);
  MatmulRangeTiled(kTiles<Weights>, kRowBlockBytes, x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace avx512_tiles

}  // namespace
}  // namespace flover::cpu::internal
