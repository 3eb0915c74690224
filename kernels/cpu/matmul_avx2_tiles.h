// The register tiles of the AVX2+FMA Matmul kernel, templated on how a row of weights is
// loaded: fp32 as it is (matmul_avx2.cc), or fp16/bf16 widened exactly in registers
// (weight_matmul_avx2.cc), which gives the bits of Matmul on the widened weights.
//
// Each output element's 16-lane accumulator of the canonical arithmetic
// (matmul_internal.h) is split into its two independent 8-lane halves (lanes 0-7 and
// 8-15), computed by two passes over each block of k, so these tiles give the same bits
// as the AVX-512 ones. Two passes let a register tile hold 3 x 4 elements in 16 ymm
// registers. For long rows and many x rows, the driver also splits k into blocks that
// stay in L1 (RangeKBlocked), stopping and resuming the same accumulations.
//
// Include only after <immintrin.h> and matmul_internal.h, inside a region compiled for
// AVX2 and FMA (a target pragma). Everything is in an anonymous namespace so that each
// including file gets its own copy, compiled for that file's target.
#pragma once

#include "kernels/cpu/matmul_avx2_panels.h"
#include "kernels/cpu/matmul_internal.h"

namespace flover::cpu::internal {
namespace {

namespace avx2_tiles {

constexpr int kTileRows = 3;  // x rows per register tile
constexpr int kTileCols = 4;  // w rows per register tile (12 accumulators + 3 x + 1 w = 16 ymm)
constexpr long kRowBlockBytes = 384 * 1024;
// Elements of k per block over which both halves run before moving on (a multiple of
// 16; 7 rows x 2 KiB stay in L1).
constexpr int kBlockK = 512;

// Weights: a row of Elem; Load8 gives 8 of them as fp32, LoadTail8 the first `count` of
// 8 (count may be <= 0; the rest 0.0f), `mask` having lane i set where i < count.
struct F32Weights {
  using Elem = float;
  static constexpr int kPanelMinRows = 24;  // x rows from which RangePanels runs
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

// One half of a full 16-element chunk of k: acc[r][c] += x[r] * w[c] on the 8 elements
// from k on (k is the chunk's start, plus 8 for the second half).
template <int R, int C, class Weights>
__attribute__((always_inline)) inline void StepHalf(const float* __restrict x, long x_stride,
                                                    const typename Weights::Elem* __restrict w, long w_stride, int k,
                                                    __m256 (&acc)[R][C]) {
  __m256 xv[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x + r * x_stride + k);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    const __m256 wv = Weights::Load8(w + c * w_stride + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(xv[r], wv, acc[r][c]);
  }
}

// What the first pass over a block of k prefetches: `per_step` cache lines per full
// chunk, from base + next on until base + end (offsets in elements).
template <class Elem>
struct Prefetch {
  const Elem* base = nullptr;
  long next = 0, end = 0;
  int per_step = 0;
};

// Continues one 8-lane half (half = 0: lanes 0-7 of every 16-element chunk of k, half =
// 1: lanes 8-15) of the R x C tile's accumulators `state` over k in [k_begin, k_end),
// the tile's w rows w_stride elements apart. k_begin is a multiple of 16; k_end is too,
// or it is the end of the rows (then the last chunk is zero-padded). When kPrefetch, the
// first full chunks also prefetch `pf` (advancing it) until it is done; the chunks after
// that run without its bookkeeping.
template <int R, int C, class Weights, bool kPrefetch>
__attribute__((always_inline)) inline void AccumulateHalf(const float* __restrict x, long x_stride,
                                                          const typename Weights::Elem* __restrict w, long w_stride,
                                                          int half, int k_begin, int k_end, __m256 (&state)[R][C],
                                                          Prefetch<typename Weights::Elem>& pf) {
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
  if constexpr (kPrefetch) {
    long next = pf.next;
    for (; k + 16 <= k_end && next < pf.end; k += 16) {
      for (int j = 0; j < pf.per_step && next < pf.end; ++j, next += kLineElements) {
        _mm_prefetch(reinterpret_cast<const char*>(pf.base + next), _MM_HINT_T1);
      }
      StepHalf<R, C, Weights>(x, x_stride, w, w_stride, k + off, acc);
    }
    pf.next = next;
  }
  for (; k + 16 <= k_end; k += 16) StepHalf<R, C, Weights>(x, x_stride, w, w_stride, k + off, acc);
  if (k < k_end) {
    // Zero-filled tail lanes, as the AVX-512 kernel's masked loads. A half with no lane
    // left still adds 0 * 0, as the AVX-512 kernel does.
    const int count = k_end - k - off;
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 xv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) xv[r] = _mm256_maskload_ps(x + r * x_stride + k + off, mask);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m256 wv = Weights::LoadTail8(w + c * w_stride + k + off, count, mask);
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

// Both halves of the R x C tile's accumulators over k in [k_begin, k_end); the first
// half's pass does the prefetching (AccumulateHalf).
template <int R, int C, class Weights>
__attribute__((always_inline)) inline void AccumulateBlock(const float* __restrict x, long x_stride,
                                                           const typename Weights::Elem* __restrict w, long w_stride,
                                                           int k_begin, int k_end, __m256 (&lo)[R][C],
                                                           __m256 (&hi)[R][C], Prefetch<typename Weights::Elem>& pf) {
  Prefetch<typename Weights::Elem> none;
  AccumulateHalf<R, C, Weights, true>(x, x_stride, w, w_stride, 0, k_begin, k_end, lo, pf);
  AccumulateHalf<R, C, Weights, false>(x, x_stride, w, w_stride, 1, k_begin, k_end, hi, none);
}

// Step 3 and 4 of the canonical arithmetic for the R x C tile: y[r, c] (+)= the sum of
// its lanes.
template <int R, int C>
__attribute__((always_inline)) inline void StoreTile(const __m256 (&lo)[R][C], const __m256 (&hi)[R][C],
                                                     float* __restrict y, int out, bool accumulate) {
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

// y[r, c] (+)= dot(x[r], w[c]) for r < R, c < C (strides x_stride for x, `in` for w,
// `out` for y). Both halves advance block by block over k, so the rows' current block
// stays in L1 between the two passes.
template <int R, int C, class Weights>
void Tile(const float* __restrict x, long x_stride, const typename Weights::Elem* __restrict w, float* __restrict y,
          int in, int out, bool accumulate, long pf_begin, long pf_end, int pf_per_step) {
  __m256 lo[R][C], hi[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
  }
  Prefetch<typename Weights::Elem> pf{w, pf_begin, pf_end, pf_per_step};
  for (int kb = 0; kb < in; kb += kBlockK) {
    const int ke = in - kb > kBlockK ? kb + kBlockK : in;
    AccumulateBlock<R, C, Weights>(x, x_stride, w, in, kb, ke, lo, hi, pf);
  }
  StoreTile<R, C>(lo, hi, y, out, accumulate);
}

// One block of k of the R x C tile, for the k-blocked driver below: x and w point at the
// block's first element of the tile's first rows (w rows w_stride elements apart), `len`
// elements long. The accumulators start at zero for the first block and else come from
// `state` (the previous block's, R * C * 2 vectors); after the last block y is written,
// else the accumulators go back to `state`. The same operations in the same order as
// Tile, only stopped and resumed between blocks.
template <int R, int C, class Weights>
void TileBlock(const float* __restrict x, long x_stride, const typename Weights::Elem* __restrict w, long w_stride,
               float* __restrict y, int out, bool accumulate, int len, bool first, bool last, __m256* state,
               Prefetch<typename Weights::Elem> pf) {
  __m256 lo[R][C], hi[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      lo[r][c] = first ? _mm256_setzero_ps() : state[2 * (r * C + c)];
      hi[r][c] = first ? _mm256_setzero_ps() : state[2 * (r * C + c) + 1];
    }
  }
  AccumulateBlock<R, C, Weights>(x, x_stride, w, w_stride, 0, len, lo, hi, pf);
  if (last) return StoreTile<R, C>(lo, hi, y, out, accumulate);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      state[2 * (r * C + c)] = lo[r][c];
      state[2 * (r * C + c) + 1] = hi[r][c];
    }
  }
}

template <class Elem>
using TileBlockFn = void (*)(const float* x, long x_stride, const Elem* w, long w_stride, float* y, int out,
                             bool accumulate, int len, bool first, bool last, __m256* state, Prefetch<Elem> pf);

template <class Weights>
constexpr TileBlockFn<typename Weights::Elem> kBlockTiles[kTileRows][kTileCols] = {
    {TileBlock<1, 1, Weights>, TileBlock<1, 2, Weights>, TileBlock<1, 3, Weights>, TileBlock<1, 4, Weights>},
    {TileBlock<2, 1, Weights>, TileBlock<2, 2, Weights>, TileBlock<2, 3, Weights>, TileBlock<2, 4, Weights>},
    {TileBlock<3, 1, Weights>, TileBlock<3, 2, Weights>, TileBlock<3, 3, Weights>, TileBlock<3, 4, Weights>},
};

// Bytes of each w row per block of the k-blocked driver: a w tile's block (4 rows x 2
// KiB) and a row tile's x (3 rows x 2 KiB for fp32 weights, x 4 KiB for 16-bit ones)
// stay in L1 with the next block being prefetched.
constexpr int kDriverBlockBytes = 2048;
// Beyond this many bytes of x and w rows per register tile, Range blocks k in the driver.
constexpr long kL1TileBytes = 24 * 1024;

// MatmulRangeFn's contract for inputs whose register tiles' rows do not fit in L1
// together (more than kL1TileBytes) and enough x rows to reuse a w tile: k is split into
// blocks of kDriverBlockBytes of w, and each w tile's block is copied once into a
// contiguous buffer of the calling thread, then read from L1 by every row tile of the
// row block, whose accumulators wait between blocks in another such buffer. Without it
// the w tile (4 rows x `in`) is evicted by the x rows between row tiles and every row
// tile reads it again from L2, which the AVX2 tile, loading 7 vectors per 12 FMAs,
// cannot sustain; copied, its rows no longer share L1's sets with each other (rows a
// multiple of 4 KiB apart, as fp32 rows of `in` 2048 are, map to the same sets).
// While a block runs, row tile t prefetches the next block of w row t % C (or of the
// next tile's rows).
template <class Weights>
void RangeKBlocked(const float* x, int x_stride, const typename Weights::Elem* w, float* y, int n, int in, int out,
                   int o_begin, int o_end, bool accumulate) {
  using Elem = typename Weights::Elem;
  constexpr long kLineElements = 64 / sizeof(Elem);
  constexpr int kDriverBlockK = kDriverBlockBytes / sizeof(Elem);  // a multiple of 16
  constexpr int kStateVectors = kTileRows * kTileCols * 2;
  constexpr long kMaxRowTiles = 64;  // of a row block: 48 KiB of accumulators per thread
  long row_block = kRowBlockBytes / (4L * x_stride) / kTileRows * kTileRows;
  if (row_block < kTileRows) row_block = kTileRows;
  if (row_block > kMaxRowTiles * kTileRows) row_block = kMaxRowTiles * kTileRows;
  // No std:: templates in here: this code is compiled for AVX2 and their instances would
  // be shared with code compiled for any x86-64.
  alignas(32) static thread_local __m256 state[kMaxRowTiles * kStateVectors];
  alignas(64) static thread_local Elem packed[kTileCols * kDriverBlockK];
  for (long r0 = 0; r0 < n; r0 += row_block) {
    const long r1 = r0 + row_block < n ? r0 + row_block : n;
    for (long o = o_begin; o < o_end; o += kTileCols) {
      const int c = o_end - o < kTileCols ? static_cast<int>(o_end - o) : kTileCols;
      const Elem* wo = w + o * in;
      const long range_end = (o_end - o) * in;  // nothing is prefetched past this range
      for (int kb = 0; kb < in; kb += kDriverBlockK) {
        const int ke = in - kb > kDriverBlockK ? kb + kDriverBlockK : in;
        for (int j = 0; j < c; ++j) {
          __builtin_memcpy(packed + j * kDriverBlockK, wo + static_cast<long>(j) * in + kb, (ke - kb) * sizeof(Elem));
        }
        // What comes after this block: the next block of this tile, or the next tile's first.
        const bool last = ke == in;
        const int next_c = last ? (o_end - o - c < kTileCols ? static_cast<int>(o_end - o - c) : kTileCols) : c;
        const long next_base = last ? c * static_cast<long>(in) : ke;
        const long next_room = last ? in : in - ke;
        const long next_len = next_room < kDriverBlockK ? next_room : kDriverBlockK;
        const long steps = (ke - kb) / 16 > 0 ? (ke - kb) / 16 : 1;
        const int pf_per_step = static_cast<int>(((next_len + kLineElements - 1) / kLineElements + steps - 1) / steps);
        long t = 0;
        for (long r = r0; r < r1; r += kTileRows, ++t) {
          const long rr = r1 - r < kTileRows ? r1 - r : kTileRows;
          const long pf_row = next_c > 0 ? t % next_c : 0;
          const long pf = next_c > 0 && t < next_c ? next_base + pf_row * in : range_end;
          const long pf_end = pf + next_len < range_end ? pf + next_len : range_end;
          kBlockTiles<Weights>[rr - 1][c - 1](x + r * x_stride + kb, x_stride, packed, kDriverBlockK, y + r * out + o,
                                              out, accumulate, ke - kb, kb == 0, last, &state[t * kStateVectors],
                                              {wo, pf, pf_end, pf_per_step});
        }
      }
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

// Step 3 of the canonical arithmetic for four accumulators at once (halves lo[c],
// hi[c]): their sums in lanes 0-3. Every sum goes through exactly ReduceLanes's
// additions; the shuffles only decide which sums share a register.
inline __m128 ReduceLanes4(const __m256 (&lo)[4], const __m256 (&hi)[4]) {
  __m256 b[4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) b[c] = _mm256_add_ps(lo[c], hi[c]);
  // c01 = [c_0[0:4], c_1[0:4]], c23 = [c_2[0:4], c_3[0:4]]
  const __m256 c01 = _mm256_add_ps(_mm256_permute2f128_ps(b[0], b[1], 0x20), _mm256_permute2f128_ps(b[0], b[1], 0x31));
  const __m256 c23 = _mm256_add_ps(_mm256_permute2f128_ps(b[2], b[3], 0x20), _mm256_permute2f128_ps(b[2], b[3], 0x31));
  // d = [d_0[0], d_0[1], d_2[0], d_2[1], d_1[0], d_1[1], d_3[0], d_3[1]]
  const __m256 d = _mm256_add_ps(_mm256_shuffle_ps(c01, c23, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(c01, c23, _MM_SHUFFLE(3, 2, 3, 2)));
  // s_0, s_2, s_1, s_3 in lanes 0, 2, 4, 6
  const __m256 e = _mm256_add_ps(d, _mm256_movehdup_ps(d));
  return _mm256_castps256_ps128(_mm256_permutevar8x32_ps(e, _mm256_setr_epi32(0, 4, 2, 6, 0, 0, 0, 0)));
}

// y[c] (+)= dot(x, w[c]) for c < C <= 4 (w rows `in` elements apart): one x row,
// both halves of each accumulator in one pass.
template <int C, class Weights>
__attribute__((always_inline)) inline void RowDotsTile(const float* __restrict x,
                                                       const typename Weights::Elem* __restrict w, int in,
                                                       float* __restrict y, bool accumulate) {
  __m256 lo[4], hi[4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) lo[c] = hi[c] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 16 <= in; k += 16) {
    const __m256 xl = _mm256_loadu_ps(x + k), xh = _mm256_loadu_ps(x + k + 8);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      lo[c] = _mm256_fmadd_ps(xl, Weights::Load8(w + static_cast<long>(c) * in + k), lo[c]);
      hi[c] = _mm256_fmadd_ps(xh, Weights::Load8(w + static_cast<long>(c) * in + k + 8), hi[c]);
    }
  }
  if (k < in) {  // zero-filled tail lanes, as in AccumulateHalf
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int count_lo = in - k, count_hi = in - k - 8;
    const __m256i mask_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(count_lo), lanes);
    const __m256i mask_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(count_hi), lanes);
    const __m256 xl = _mm256_maskload_ps(x + k, mask_lo), xh = _mm256_maskload_ps(x + k + 8, mask_hi);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const typename Weights::Elem* wc = w + static_cast<long>(c) * in + k;
      lo[c] = _mm256_fmadd_ps(xl, Weights::LoadTail8(wc, count_lo, mask_lo), lo[c]);
      hi[c] = _mm256_fmadd_ps(xh, Weights::LoadTail8(wc + 8, count_hi, mask_hi), hi[c]);
    }
  }
  alignas(16) float s[4];
  _mm_store_ps(s, ReduceLanes4(lo, hi));
#pragma GCC unroll 4
  for (int c = 0; c < C; ++c) y[c] = accumulate ? y[c] + s[c] : s[c];
}

// One x row against at most kRowDotsBytes of w rows (attention's scores of a KV block):
// without the blocking and prefetching driver, whose bookkeeping would cost more than
// these few products.
constexpr long kRowDotsBytes = 16 * 1024;

template <class Weights>
void RowDots(const float* x, const typename Weights::Elem* w, float* y, int in, int o_begin, int o_end,
             bool accumulate) {
  int o = o_begin;
  for (; o + 4 <= o_end; o += 4) RowDotsTile<4, Weights>(x, w + static_cast<long>(o) * in, in, y + o, accumulate);
  switch (o_end - o) {
    case 3: return RowDotsTile<3, Weights>(x, w + static_cast<long>(o) * in, in, y + o, accumulate);
    case 2: return RowDotsTile<2, Weights>(x, w + static_cast<long>(o) * in, in, y + o, accumulate);
    case 1: return RowDotsTile<1, Weights>(x, w + static_cast<long>(o) * in, in, y + o, accumulate);
    default: return;
  }
}

// MatmulRangeFn's contract, for weights read through Weights: from Weights::kPanelMinRows
// x rows on through panels (matmul_avx2_panels.h), else through these tiles.
template <class Weights>
void Range(const float* x, int x_stride, const typename Weights::Elem* w, float* y, int n, int in, int out, int o_begin,
           int o_end, bool accumulate) {
  if (n == 1 &&
      static_cast<long>(o_end - o_begin) * in * static_cast<long>(sizeof(typename Weights::Elem)) <= kRowDotsBytes)
    return RowDots<Weights>(x, w, y, in, o_begin, o_end, accumulate);
  if (n >= Weights::kPanelMinRows)
    return RangePanels<Weights>(x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
  const long tile_bytes = static_cast<long>(in) * (kTileCols * sizeof(typename Weights::Elem) + kTileRows * 4);
  if (tile_bytes > kL1TileBytes && n >= 2 * kTileRows)
    return RangeKBlocked<Weights>(x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
  MatmulRangeTiled(kTiles<Weights>, kRowBlockBytes, x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace avx2_tiles

}  // namespace
}  // namespace flover::cpu::internal
