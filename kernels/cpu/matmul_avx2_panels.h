// Private to the AVX2 Matmul kernels: the outer-product form of the canonical
// arithmetic (matmul_internal.h) for many x rows (a prefill's), where the register tiles
// of matmul_avx2_tiles.h spend their loads on reading x and w back from L2.
//
// The canonical lane l of y[r, o] is a chain of fmas over k = l, l + 16, l + 32, ...;
// the tiles keep the 16 lanes of a few (r, o) pairs in registers. Here one lane at a
// time is computed for a tile of kPanelRows x rows and kPanelCols w rows: with w's
// values of that lane for 16 consecutive o in two ymm and x's broadcast, each fma
// advances 8 chains of 8 different outputs, and 12 accumulators cover 96 outputs for 8
// loads per 12 fmas (the tiles: 7 loads per 12 fmas for 12 outputs). The 16 lanes'
// partial sums are then added with step 3's tree, lane-wise over the tile's outputs:
// every output gets exactly the operations of the tiles, in the same order.
//
// This needs x and w regrouped by lane: x a block of rows at a time ([tile][l][r][j] with
// j the chunk of 16), w once per panel of 16 rows and block ([j][l][o], widened to fp32),
// both zero-padded to whole chunks as step 2 pads them. A panel's 16 x in floats are
// reused by every row tile of the block, so the regrouping costs about in / 16 loads,
// shuffles and stores per 16 x in products a row tile does; on w in rows it pays off from
// a few dozen x rows on. An interleaved matrix (weight_interleave.h: fp32, fp16, bf16)
// is w regrouped already, in its own element type: its groups are read in place, 16-bit
// values widened in registers, and the panels run at every batch size.
//
// Include only after <immintrin.h>, inside a region compiled for AVX2 and FMA (a target
// pragma), as matmul_avx2_tiles.h does; everything is in an anonymous namespace, so each
// including file gets its own copy.
#pragma once

#include "kernels/cpu/matmul_internal.h"

namespace flover::cpu::internal {
namespace {

namespace avx2_tiles {

constexpr int kPanelCols = 16;  // w rows per panel: two ymm of outputs
constexpr int kPanelRows = 6;   // x rows per tile: 12 accumulators + 2 w + 1 broadcast

// In-register transpose of an 8 x 8 block of floats: m[i][j] -> m[j][i].
inline void Transpose8(__m256 (&m)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(m[0], m[1]), t1 = _mm256_unpackhi_ps(m[0], m[1]);
  const __m256 t2 = _mm256_unpacklo_ps(m[2], m[3]), t3 = _mm256_unpackhi_ps(m[2], m[3]);
  const __m256 t4 = _mm256_unpacklo_ps(m[4], m[5]), t5 = _mm256_unpackhi_ps(m[4], m[5]);
  const __m256 t6 = _mm256_unpacklo_ps(m[6], m[7]), t7 = _mm256_unpackhi_ps(m[6], m[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  m[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  m[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  m[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  m[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  m[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  m[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  m[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  m[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// x rows [0, rows) (rows <= kPanelRows, x_stride apart) into dst[(l * rows + r) * chunks + j]
// = x[r][16 j + l], 0 past `in`.
inline void PackPanelX(const float* x, long x_stride, int rows, int in, int chunks, float* __restrict dst) {
  const int full = in / 16;  // chunks without padding
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    int j = 0;
    for (; j + 8 <= full; j += 8) {
      __m256 lo[8], hi[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        lo[i] = _mm256_loadu_ps(xr + 16 * (j + i));
        hi[i] = _mm256_loadu_ps(xr + 16 * (j + i) + 8);
      }
      Transpose8(lo);
      Transpose8(hi);
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) {
        _mm256_storeu_ps(dst + (static_cast<long>(l) * rows + r) * chunks + j, lo[l]);
        _mm256_storeu_ps(dst + (static_cast<long>(l + 8) * rows + r) * chunks + j, hi[l]);
      }
    }
    for (; j < chunks; ++j) {
      for (int l = 0; l < 16; ++l) {
        const int k = 16 * j + l;
        dst[(static_cast<long>(l) * rows + r) * chunks + j] = k < in ? xr[k] : 0.0f;
      }
    }
  }
}

// w rows [0, cols) (cols <= kPanelCols, `in` elements apart) widened into
// dst[(j * 16 + l) * kPanelCols + c] = w[c][16 j + l], 0 past `in` and for c >= cols.
template <class Weights>
void PackPanelW(const typename Weights::Elem* w, int cols, int in, int chunks, float* __restrict dst) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int j = 0; j < chunks; ++j) {
    for (int half_l = 0; half_l < 2; ++half_l) {
      const int count = in - 16 * j - 8 * half_l;  // values of each row in these 8 lanes
      const bool whole = count >= 8;
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), lanes);
      for (int half_c = 0; half_c < 2; ++half_c) {
        __m256 m[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          const long row = 8 * half_c + c;
          const typename Weights::Elem* p = w + row * in + 16 * j + 8 * half_l;
          m[c] = row >= cols ? _mm256_setzero_ps() : whole ? Weights::Load8(p) : Weights::LoadTail8(p, count, mask);
        }
        Transpose8(m);
#pragma GCC unroll 8
        for (int l = 0; l < 8; ++l) _mm256_store_ps(dst + (16L * j + 8 * half_l + l) * kPanelCols + 8 * half_c, m[l]);
      }
    }
  }
}

// A panel of fp32 values (PackPanelW's, or an interleaved fp32 matrix's), read as
// PanelTile reads a panel: Load8 gives 8 of its values as fp32. The 16-bit formats' panels
// are read through their Weights (F16Weights, Bf16Weights), which widen exactly.
struct F32Panel {
  using Elem = float;
  static __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
};

// Lanes PanelTile computes in one pass over the chunks for R x rows: enough chains of
// fmas in flight (2 * R per lane) to hide their latency, and a whole cache line of a
// 16-bit panel (two lanes) read in one pass.
template <int R>
constexpr int kPanelPassLanes = R == 1   ? 4
                                : R == 2 ? 2
                                         : 1;

// One chunk j of one pass of PanelTile: lanes [l0, l0 + L) of 16 outputs of each of R x rows.
template <int R, int L, class W>
__attribute__((always_inline)) inline void PanelStep(const float* __restrict xt, const typename W::Elem* __restrict wp,
                                                     int chunks, int l0, int j, __m256 (&acc)[L][R][2]) {
#pragma GCC unroll 4
  for (int i = 0; i < L; ++i) {
    const typename W::Elem* wl = wp + (l0 + i) * kPanelCols + 16L * kPanelCols * j;
    const float* xl = xt + static_cast<long>(l0 + i) * R * chunks + j;
    const __m256 w0 = W::Load8(wl), w1 = W::Load8(wl + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 b = _mm256_broadcast_ss(xl + static_cast<long>(r) * chunks);
      acc[i][r][0] = _mm256_fmadd_ps(b, w0, acc[i][r][0]);
      acc[i][r][1] = _mm256_fmadd_ps(b, w1, acc[i][r][1]);
    }
  }
}

// Lane l of the R x kPanelCols outputs of a tile, for every l: part[(l * kPanelRows + r)
// * kPanelCols + c] = the chain of fmas over the chunks (step 2 of the canonical
// arithmetic), from +0.0f. xt: the tile's packed x (PackPanelX with R rows), wp: the
// panel's w (PackPanelW's layout, in W's elements, any alignment).
// Each pass (kPanelPassLanes<R> lanes) also prefetches that many times pf_per_lane cache
// lines into L2, from pf on, spread over its first chunks (a burst would fill the core's
// few outstanding misses and stall).
template <int R, class W>
__attribute__((noinline)) void PanelTile(const float* __restrict xt, const typename W::Elem* __restrict wp, int chunks,
                                         float* __restrict part, const char* pf, int pf_per_lane) {
  constexpr int L = kPanelPassLanes<R>;
  const int pf_per_pass = L * pf_per_lane;
  const int pf_per_chunk = chunks > 0 ? (pf_per_pass + chunks - 1) / chunks : 0;
  for (int l0 = 0; l0 < 16; l0 += L) {
    const char* pf_pass = pf + 64L * l0 * pf_per_lane;
    __m256 acc[L][R][2];
#pragma GCC unroll 4
    for (int i = 0; i < L; ++i) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[i][r][0] = acc[i][r][1] = _mm256_setzero_ps();
    }
    int j = 0, issued = 0;
    for (; j < chunks && issued < pf_per_pass; ++j) {
      for (int k = 0; k < pf_per_chunk && issued < pf_per_pass; ++k, ++issued)
        __builtin_prefetch(pf_pass + 64L * issued, 0, 2);
      PanelStep<R, L, W>(xt, wp, chunks, l0, j, acc);
    }
    for (; j < chunks; ++j) PanelStep<R, L, W>(xt, wp, chunks, l0, j, acc);
#pragma GCC unroll 4
    for (int i = 0; i < L; ++i) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        _mm256_store_ps(part + ((l0 + i) * kPanelRows + r) * kPanelCols, acc[i][r][0]);
        _mm256_store_ps(part + ((l0 + i) * kPanelRows + r) * kPanelCols + 8, acc[i][r][1]);
      }
    }
  }
}

// Steps 3 and 4 for a tile's R x cols outputs from PanelTile's lanes, into y (rows `out`
// apart): the tree of ReduceLanes, lane-wise over 8 outputs at a time.
inline void StorePanelTile(const float* __restrict part, int rows, int cols, float* __restrict y, long out,
                           bool accumulate) {
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < 2 && 8 * h < cols; ++h) {
      __m256 a[16];
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l) a[l] = _mm256_load_ps(part + (l * kPanelRows + r) * kPanelCols + 8 * h);
      __m256 b[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) b[i] = _mm256_add_ps(a[i], a[i + 8]);
      const __m256 c0 = _mm256_add_ps(b[0], b[4]), c1 = _mm256_add_ps(b[1], b[5]);
      const __m256 c2 = _mm256_add_ps(b[2], b[6]), c3 = _mm256_add_ps(b[3], b[7]);
      const __m256 s = _mm256_add_ps(_mm256_add_ps(c0, c2), _mm256_add_ps(c1, c3));
      float* yr = y + r * out + 8 * h;
      const int count = cols - 8 * h < 8 ? cols - 8 * h : 8;
      if (count == 8) {
        _mm256_storeu_ps(yr, accumulate ? _mm256_add_ps(_mm256_loadu_ps(yr), s) : s);
      } else {
        alignas(32) float sums[8];
        _mm256_store_ps(sums, s);
        for (int i = 0; i < count; ++i) yr[i] = accumulate ? yr[i] + sums[i] : sums[i];
      }
    }
  }
}

// Bytes of regrouped x a thread holds at a time: x is taken a block of rows at a time
// (each panel of w regrouped once per block), so the scratch stays bounded whatever the
// batch; the prefill chunks of models with rows up to a few thousand values fit in one.
constexpr long kPanelXBytes = 2L << 20;
constexpr int kPanelMinBlockRows = 8 * kPanelRows;  // a regrouped panel serves >= 8 tiles

// Where RangePanels takes each panel's regrouped w from. Panel(o, cols) gives the panel
// of w rows [o, o + cols) (o a multiple of kPanelCols), in PackPanelW's layout, read
// through Loads; Start(o) the address its bytes start at in the source and PanelBytes()
// how many there are (for prefetching the next).
//
// RowPanels: w in rows (`in` elements of Weights::Elem apart), each panel regrouped and
// widened by PackPanelW into `scratch` when it is needed.
template <class Weights>
struct RowPanels {
  using Loads = F32Panel;
  using Elem = typename Weights::Elem;
  const Elem* w;
  int in, chunks;
  float* scratch;  // kPanelCols * 16 * chunks floats, 64-byte aligned
  long PanelBytes() const { return static_cast<long>(kPanelCols) * in * static_cast<long>(sizeof(Elem)); }
  const char* Start(int o) const { return reinterpret_cast<const char*>(w + static_cast<long>(o) * in); }
  const float* Panel(int o, int cols) const {
    PackPanelW<Weights>(w + static_cast<long>(o) * in, cols, in, chunks, scratch);
    return scratch;
  }
};

// InterleavedPanels: an interleaved fp32, fp16 or bf16 matrix (weight_interleave.h),
// whose groups of kInterleaveRows = kPanelCols rows are PackPanelW's panels already (in
// W's elements), read in place and widened in registers by W.
template <class W>
struct InterleavedPanels {
  using Loads = W;
  const char* w;
  int chunks;
  long PanelBytes() const { return 16L * kPanelCols * static_cast<long>(sizeof(typename W::Elem)) * chunks; }
  const char* Start(int o) const { return w + o / kPanelCols * PanelBytes(); }
  const typename W::Elem* Panel(int o, int /*cols*/) const {
    return reinterpret_cast<const typename W::Elem*>(Start(o));
  }
};

// RangePanels for the n rows of one block, with xp the scratch for the block's
// regrouped rows.
template <class Panels>
void RangePanelsBlock(const float* x, int x_stride, const Panels& panels, float* y, int n, int in, int out, int o_begin,
                      int o_end, bool accumulate, float* __restrict xp) {
  const int chunks = (in + 15) / 16;
  const int tiles = (n + kPanelRows - 1) / kPanelRows;
  const int base_rows = n / tiles, longer = n % tiles;  // tiles [0, longer) have base_rows + 1 rows
  for (int t = 0, r0 = 0; t < tiles; ++t) {
    const int rows = base_rows + (t < longer ? 1 : 0);
    PackPanelX(x + static_cast<long>(r0) * x_stride, x_stride, rows, in, chunks,
               xp + static_cast<long>(r0) * 16 * chunks);
    r0 += rows;
  }
  // The tiles of a panel prefetch the next panel's bytes (contiguous), spread over their
  // lanes' passes: w streams from DRAM while the tiles compute.
  const long panel_lines = (panels.PanelBytes() + 63) / 64;
  const int pf_per_lane = static_cast<int>((panel_lines + 16L * tiles - 1) / (16L * tiles));
  alignas(32) float part[16 * kPanelRows * kPanelCols];
  for (int o = o_begin; o < o_end; o += kPanelCols) {
    const int cols = o_end - o < kPanelCols ? o_end - o : kPanelCols;
    const auto* wp = panels.Panel(o, cols);
    const char* next = panels.Start(o + kPanelCols);
    const long next_lines = o + kPanelCols < o_end ? panel_lines : 0;  // nothing past the range
    const char* next_end = next + 64 * next_lines;
    for (int t = 0, r0 = 0; t < tiles; ++t) {
      const int rows = base_rows + (t < longer ? 1 : 0);
      const float* xt = xp + static_cast<long>(r0) * 16 * chunks;
      const char* pf = next + 64L * 16 * pf_per_lane * t;
      const int pf_count = pf < next_end ? pf_per_lane : 0;
      switch (rows) {
        case 6: PanelTile<6, typename Panels::Loads>(xt, wp, chunks, part, pf, pf_count); break;
        case 5: PanelTile<5, typename Panels::Loads>(xt, wp, chunks, part, pf, pf_count); break;
        case 4: PanelTile<4, typename Panels::Loads>(xt, wp, chunks, part, pf, pf_count); break;
        case 3: PanelTile<3, typename Panels::Loads>(xt, wp, chunks, part, pf, pf_count); break;
        case 2: PanelTile<2, typename Panels::Loads>(xt, wp, chunks, part, pf, pf_count); break;
        default: PanelTile<1, typename Panels::Loads>(xt, wp, chunks, part, pf, pf_count); break;
      }
      StorePanelTile(part, rows, cols, y + static_cast<long>(r0) * out + o, out, accumulate);
      r0 += rows;
    }
  }
}

// MatmulRangeFn's contract through panels: blocks of about kPanelXBytes of regrouped x
// rows (at least kPanelMinBlockRows), the blocks' sizes as even as they can be; in a
// block, row tiles of 5 or 6 rows (ceil(rows / 6) tiles, the first rows % tiles of them
// one row longer; fewer rows only when the block has fewer than 5). make_panels(scratch)
// gives the Panels, with scratch for one regrouped panel.
template <class MakePanels>
__attribute__((always_inline)) inline void RangePanelsWith(const float* x, int x_stride, float* y, int n, int in,
                                                           int out, int o_begin, int o_end, bool accumulate,
                                                           const MakePanels& make_panels) {
  const long row_floats = 16L * ((in + 15) / 16);  // regrouped floats per x row
  long block_rows = kPanelXBytes / (4 * row_floats);
  if (block_rows < kPanelMinBlockRows) block_rows = kPanelMinBlockRows;
  const long n_blocks = (n + block_rows - 1) / block_rows;
  block_rows = (n + n_blocks - 1) / n_blocks;
  // Both 64-byte aligned: row_floats is a multiple of 16.
  float* const xp = PanelScratch(block_rows * row_floats + kPanelCols * row_floats);
  const auto panels = make_panels(xp + block_rows * row_floats);
  for (long r0 = 0; r0 < n; r0 += block_rows) {
    const int rows = static_cast<int>(n - r0 < block_rows ? n - r0 : block_rows);
    RangePanelsBlock(x + r0 * x_stride, x_stride, panels, y + r0 * out, rows, in, out, o_begin, o_end, accumulate, xp);
  }
}

// RangePanelsWith on w in rows of Weights::Elem.
template <class Weights>
void RangePanels(const float* x, int x_stride, const typename Weights::Elem* w, float* y, int n, int in, int out,
                 int o_begin, int o_end, bool accumulate) {
  const int chunks = (in + 15) / 16;
  RangePanelsWith(x, x_stride, y, n, in, out, o_begin, o_end, accumulate, [&](float* scratch) {
    return RowPanels<Weights>{w, in, chunks, scratch};
  });
}

// RangePanelsWith on an interleaved matrix of W's elements (fp32: F32Panel).
// REQUIRES: o_begin % kPanelCols == 0.
template <class W>
void RangeInterleavedPanels(const float* x, int x_stride, const void* w, float* y, int n, int in, int out, int o_begin,
                            int o_end, bool accumulate) {
  const int chunks = (in + 15) / 16;
  RangePanelsWith(x, x_stride, y, n, in, out, o_begin, o_end, accumulate, [&](float*) {
    return InterleavedPanels<W>{static_cast<const char*>(w), chunks};
  });
}

}  // namespace avx2_tiles

}  // namespace
}  // namespace flover::cpu::internal
