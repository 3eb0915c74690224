// The AVX2 variants of MatmulWeights (F16C for the fp16 scales and weights): fp16 and
// bf16 weights widened in Matmul's AVX2 register tiles, and the int8 formats'
// canonical arithmetic (weight_matmul_internal.h) with one block of 32 per ymm.
//
// The int8 dot products use the sign trick: sum w * q = sum |w| * (q * sign(w)), with
// vpmaddubsw (unsigned |w| times signed q, adjacent pairs added into int16, saturating)
// and vpmaddwd (adjacent int16 pairs added into int32). No saturation can happen: |w|
// <= 128 (a Q8_0 weight of -128 from any file gives vpabsb's 0x80, read as the unsigned
// 128 it is) and |q * sign(w)| <= 127 (activations are never -128, step 1), so a pair is
// at most 2 * 128 * 127 = 32512 < 32767 in magnitude. Q4_K's 4-bit weights are >= 0 and
// need no trick: a pair is at most 2 * 15 * 127 = 3810, times a 6-bit scale in vpmaddwd.
//
// Only <immintrin.h> and headers without intrinsics are included before the target
// pragma, so no inline library function is emitted with AVX2 instructions.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx2,fma,f16c")

#include "kernels/cpu/matmul_avx2_tiles.h"

namespace flover::cpu::internal {
namespace {

// ---- fp16 and bf16: Matmul's tiles, widening 8 weights per load ----

// The first `count` (may be <= 0) of 8 16-bit values at p, the rest 0.
inline __m128i LoadFirst16(const uint16_t* p, int count) {
  alignas(16) uint16_t tmp[8] = {};
  if (count > 0) std::memcpy(tmp, reinterpret_cast<const char*>(p), 2 * (count < 8 ? count : 8));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
}

struct F16Weights {
  using Elem = uint16_t;
  static __m256 Load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m256 LoadTail8(const uint16_t* p, int count, __m256i) { return _mm256_cvtph_ps(LoadFirst16(p, count)); }
};

inline __m256 WidenBf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }

struct Bf16Weights {
  using Elem = uint16_t;
  static __m256 Load8(const uint16_t* p) { return WidenBf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m256 LoadTail8(const uint16_t* p, int count, __m256i) { return WidenBf16(LoadFirst16(p, count)); }
};

// ---- int8 formats ----

constexpr int kTileRows = 2;                   // x rows per tile
constexpr int kTileCols = kAvx2QuantTileCols;  // W rows per tile
constexpr int kNarrowRows = 1, kNarrowCols = 4;  // the tile when n <= kNarrowRows

inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return _cvtsh_ss(h);
}

inline void Store(const WeightMatmulArgs& a, int r, int o, float sum) {
  float& dst = a.y[static_cast<long>(r) * a.rows + o];
  dst = a.accumulate ? dst + sum : sum;
}

// A format of blocks of 32: its bytes per block and the 32 integer weights of a block.
struct Q8_0Blocks {
  static constexpr int kBytes = kQ8_0Bytes;
  static __m256i Weights(const uint8_t* b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)); }
};

struct Q4_0Blocks {
  static constexpr int kBytes = kQ4_0Bytes;
  static __m256i Weights(const uint8_t* b) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i low = _mm_set1_epi8(0x0F);
    const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low), _mm_and_si128(v, low));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
  }
};

// acc[r][c] += (the 8 lane sums p of block b) * (dw * dx), for one half of the lanes.
template <int R, int C, class Blocks>
__attribute__((always_inline)) inline void AccumulateBlock32(const uint8_t* const (&w)[C], const int8_t* const (&x)[R],
                                                             const float* const (&dx)[R], int b, __m256 (&acc)[R][C]) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i wv[C], aw[C];
  float dw[C];
#pragma GCC unroll 4
  for (int c = 0; c < C; ++c) {
    const uint8_t* block = w[c] + b * Blocks::kBytes;
    wv[c] = Blocks::Weights(block);
    aw[c] = _mm256_abs_epi8(wv[c]);
    dw[c] = HalfAt(block);
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[r] + 32 * b));
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[c], _mm256_sign_epi8(xv, wv[c])), ones);
      const __m256 s = _mm256_set1_ps(dw[c] * dx[r][b]);
      acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[r][c]);
    }
  }
}

template <int R, int C, class Blocks>
void TileBlocks32(const WeightMatmulArgs& a, int r0, int o0) {
  const int n_blocks = a.cols / 32;
  const uint8_t* w[C];
  for (int c = 0; c < C; ++c) w[c] = a.w + (o0 + c) * a.w_row_bytes;
  const int8_t* x[R];
  const float* dx[R];
  for (int r = 0; r < R; ++r) {
    x[r] = a.qx.q + (r0 + r) * a.qx.stride;
    dx[r] = a.qx.d + static_cast<long>(r0 + r) * n_blocks;
  }
  __m256 lo[R][C], hi[R][C];  // lanes 0-7 (even blocks) and 8-15 (odd blocks)
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
  }
  int b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    if (r0 == 0) PrefetchNextTileRows<C>(w, a.w_row_bytes, b * Blocks::kBytes);
    AccumulateBlock32<R, C, Blocks>(w, x, dx, b, lo);
    AccumulateBlock32<R, C, Blocks>(w, x, dx, b + 1, hi);
  }
  if (b < n_blocks) AccumulateBlock32<R, C, Blocks>(w, x, dx, b, lo);
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) Store(a, r0 + r, o0 + c, avx2_tiles::ReduceLanes(lo[r][c], hi[r][c]));
  }
}

template <int R, int C>
void TileQ4_K(const WeightMatmulArgs& a, int r0, int o0) {
  const int n_blocks = a.cols / 256;
  const uint8_t* w[C];
  for (int c = 0; c < C; ++c) w[c] = a.w + (o0 + c) * a.w_row_bytes;
  const int8_t* x[R];
  const float* dx[R];
  const int16_t* t[R];
  for (int r = 0; r < R; ++r) {
    x[r] = a.qx.q + (r0 + r) * a.qx.stride;
    dx[r] = a.qx.d + static_cast<long>(r0 + r) * n_blocks;
    t[r] = a.qx.sums + static_cast<long>(r0 + r) * 8 * n_blocks;
  }
  const __m256i low = _mm256_set1_epi8(0x0F);
  __m256 lo[R][C], hi[R][C];  // lanes 0-7 (even sub-blocks) and 8-15 (odd sub-blocks)
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
  }
  for (int b = 0; b < n_blocks; ++b) {
    __m256i scales[C];  // the block's eight scales as int16, in both 128-bit lanes
    __m128i mins[C];
    float d[C], dmin[C];
    for (int c = 0; c < C; ++c) {
      const uint8_t* block = w[c] + b * kQ4_KBytes;
      if (r0 == 0) PrefetchQ4KBlock(block + C * a.w_row_bytes);
      d[c] = HalfAt(block);
      dmin[c] = HalfAt(block + 2);
      const Q4KScaleMinWords v = UnpackQ4KScaleMinWords(block + kQ4_KScalesOffset);
      const __m256i sm = _mm256_cvtepu8_epi16(_mm_setr_epi32(static_cast<int>(v.scales_lo), static_cast<int>(v.scales_hi),
                                                             static_cast<int>(v.mins_lo), static_cast<int>(v.mins_hi)));
      scales[c] = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
      mins[c] = _mm256_extracti128_si256(sm, 1);
    }
    __m256i p_lo[R][C], p_hi[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) p_lo[r][c] = p_hi[r][c] = _mm256_setzero_si256();
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      // vpshufb picks the two bytes of int16 scale 2k (and 2k + 1) into every lane.
      const __m256i pick_lo = _mm256_set1_epi16(static_cast<int16_t>(((4 * k + 1) << 8) | (4 * k)));
      const __m256i pick_hi = _mm256_set1_epi16(static_cast<int16_t>(((4 * k + 3) << 8) | (4 * k + 2)));
      __m256i q_lo[C], q_hi[C], sc_lo[C], sc_hi[C];
      for (int c = 0; c < C; ++c) {
        const __m256i qs =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[c] + b * kQ4_KBytes + kQ4_KQsOffset + 32 * k));
        q_lo[c] = _mm256_and_si256(qs, low);
        q_hi[c] = _mm256_and_si256(_mm256_srli_epi16(qs, 4), low);
        sc_lo[c] = _mm256_shuffle_epi8(scales[c], pick_lo);
        sc_hi[c] = _mm256_shuffle_epi8(scales[c], pick_hi);
      }
      for (int r = 0; r < R; ++r) {
        const int8_t* xk = x[r] + 256 * b + 64 * k;
        const __m256i x_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xk));
        const __m256i x_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xk + 32));
        for (int c = 0; c < C; ++c) {
          p_lo[r][c] = _mm256_add_epi32(p_lo[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(q_lo[c], x_lo), sc_lo[c]));
          p_hi[r][c] = _mm256_add_epi32(p_hi[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(q_hi[c], x_hi), sc_hi[c]));
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m128i sums = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t[r] + 8 * b));
      for (int c = 0; c < C; ++c) {
        const __m256 s = _mm256_set1_ps(d[c] * dx[r][b]);
        const __m128 sm = _mm_set1_ps(-(dmin[c] * dx[r][b]));
        lo[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p_lo[r][c]), s, lo[r][c]);
        hi[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p_hi[r][c]), s, hi[r][c]);
        // Lanes 0-3 take the mins' term after the block's main term.
        const __m128 m = _mm_cvtepi32_ps(_mm_madd_epi16(mins[c], sums));
        const __m128 first4 = _mm_fmadd_ps(m, sm, _mm256_castps256_ps128(lo[r][c]));
        lo[r][c] = _mm256_blend_ps(lo[r][c], _mm256_castps128_ps256(first4), 0x0F);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) Store(a, r0 + r, o0 + c, avx2_tiles::ReduceLanes(lo[r][c], hi[r][c]));
  }
}

template <int R, int C>
struct Q8_0Tiles {
  static void Run(const WeightMatmulArgs& a, int r0, int o0) { TileBlocks32<R, C, Q8_0Blocks>(a, r0, o0); }
};
template <int R, int C>
struct Q4_0Tiles {
  static void Run(const WeightMatmulArgs& a, int r0, int o0) { TileBlocks32<R, C, Q4_0Blocks>(a, r0, o0); }
};
template <int R, int C>
struct Q4_KTiles {
  static void Run(const WeightMatmulArgs& a, int r0, int o0) { TileQ4_K<R, C>(a, r0, o0); }
};

}  // namespace

void WeightRangeF16Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  avx2_tiles::Range<F16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                o_begin, o_end, a.accumulate);
}

void WeightRangeBf16Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  avx2_tiles::Range<Bf16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                 o_begin, o_end, a.accumulate);
}

void WeightRangeQ8_0Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  QuantRangeTiled<kTileRows, kTileCols, kNarrowRows, kNarrowCols, Q8_0Tiles>(a, o_begin, o_end);
}
void WeightRangeQ4_0Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  QuantRangeTiled<kTileRows, kTileCols, kNarrowRows, kNarrowCols, Q4_0Tiles>(a, o_begin, o_end);
}
void WeightRangeQ4_KAvx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  QuantRangeTiled<kTileRows, kTileCols, kNarrowRows, kNarrowCols, Q4_KTiles>(a, o_begin, o_end);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
