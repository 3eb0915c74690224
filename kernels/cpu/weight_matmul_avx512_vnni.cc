// The AVX-512 VNNI variants of MatmulWeights for the int8 formats: the canonical
// arithmetic of weight_matmul_internal.h with two blocks of 32 (Q8_0, Q4_0) or two
// sub-blocks of 32 (Q4_K) per zmm, whose 16 int32 lanes are exactly the 16 lanes of
// the canonical accumulators.
//
// vpdpbusd multiplies unsigned bytes by signed bytes and adds each 4 products into an
// int32 lane without saturation; the operands are made to fit:
//   Q8_0: sum w * q = sum (w + 128) * q - 128 * sum q: w + 128 in [0, 255] for any int8
//         w (-128 from a hostile file included), q in [-127, 127]; |lane| <= 4 * 255 *
//         127 + 128 * 4 * 127. The correction depends on the activations only, so it is
//         computed once per x block and shared by every W row of a tile.
//   Q4_0: sum (n - 8) * q = sum n * q - 8 * sum q, n the unsigned nibble.
//   Q4_K: vpmaddubsw (nibble n times q, pairs into int16: at most 2 * 15 * 127 = 3810,
//         no saturation) then vpdpwssd (times the 6-bit scale, pairs into int32).
//
// Only <immintrin.h> and headers without intrinsics are included before the target
// pragma, so no inline library function is emitted with AVX-512 instructions.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,fma,f16c")

#include "kernels/cpu/matmul_avx512_tiles.h"

namespace flover::cpu::internal {
namespace {

constexpr int kTileRows = 4;                     // x rows per tile
constexpr int kTileCols = 4;                     // W rows per tile
constexpr int kNarrowRows = 1, kNarrowCols = 8;  // the tile when n <= kNarrowRows

inline float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return _cvtsh_ss(h);
}

// Lanes 0-7 = lo, lanes 8-15 = hi.
inline __m512 Halves(float lo, float hi) { return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1); }

inline __m512i Load256(const void* p) {
  return _mm512_zextsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
}

// A format of blocks of 32: LoadW gives the weights of blocks b and b + 1 (kTwo) or of
// block b alone (upper half 0), prepared for Dot; PrepX the same for activations; Dot
// the 16 lanes p of step 2.
struct Q8_0Blocks {
  static constexpr int kBytes = kQ8_0Bytes;
  struct W {
    __m512i biased;  // w + 128 as unsigned bytes
  };
  struct X {
    __m512i q, minus_128_sum;
  };
  template <bool kTwo>
  static W LoadW(const uint8_t* block) {
    const __m512i w = kTwo ? _mm512_inserti64x4(Load256(block + 2), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                                                         block + kBytes + 2)),
                                                 1)
                           : Load256(block + 2);
    return {_mm512_xor_si512(w, _mm512_set1_epi8(-128))};
  }
  static X PrepX(__m512i q) {
    const __m512i sum128 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), q);
    return {q, _mm512_sub_epi32(_mm512_setzero_si512(), sum128)};
  }
  static __m512i Dot(const W& w, const X& x) { return _mm512_dpbusd_epi32(x.minus_128_sum, w.biased, x.q); }
};

struct Q4_0Blocks {
  static constexpr int kBytes = kQ4_0Bytes;
  struct W {
    __m512i nibbles;  // n = weight + 8, unsigned
  };
  struct X {
    __m512i q, minus_8_sum;
  };
  template <bool kTwo>
  static W LoadW(const uint8_t* block) {
    const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    const __m128i v1 = kTwo ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + kBytes + 2)) : _mm_setzero_si128();
    const __m256i v = _mm256_set_m128i(v1, v0);
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    // [v0 low, v1 low, v0 high, v1 high] -> [v0 low, v0 high, v1 low, v1 high]: values 0-31
    // of block b, then of block b + 1.
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return {_mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0))};
  }
  static X PrepX(__m512i q) {
    const __m512i sum8 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), q);
    return {q, _mm512_sub_epi32(_mm512_setzero_si512(), sum8)};
  }
  static __m512i Dot(const W& w, const X& x) { return _mm512_dpbusd_epi32(x.minus_8_sum, w.nibbles, x.q); }
};

// Blocks b and b + 1 (kTwo, all 16 lanes) or block b alone (lanes 0-7) into acc.
template <int R, int C, class Blocks, bool kTwo>
__attribute__((always_inline)) inline void AccumulateBlocks(const uint8_t* const (&w)[C], const int8_t* const (&x)[R],
                                                            const float* const (&dx)[R], int b, __m512 (&acc)[R][C]) {
  typename Blocks::W wp[C];
  __m512 dw[C];
#pragma GCC unroll 4
  for (int c = 0; c < C; ++c) {
    const uint8_t* block = w[c] + b * Blocks::kBytes;
    wp[c] = Blocks::template LoadW<kTwo>(block);
    dw[c] = kTwo ? Halves(HalfAt(block), HalfAt(block + Blocks::kBytes)) : _mm512_set1_ps(HalfAt(block));
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m512i xv = kTwo ? _mm512_loadu_si512(x[r] + 32 * b) : Load256(x[r] + 32 * b);
    const typename Blocks::X xp = Blocks::PrepX(xv);
    const __m512 dxv = kTwo ? Halves(dx[r][b], dx[r][b + 1]) : _mm512_set1_ps(dx[r][b]);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const __m512 p = _mm512_cvtepi32_ps(Blocks::Dot(wp[c], xp));
      const __m512 s = _mm512_mul_ps(dw[c], dxv);
      acc[r][c] = kTwo ? _mm512_fmadd_ps(p, s, acc[r][c]) : _mm512_mask3_fmadd_ps(p, s, acc[r][c], 0x00FF);
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
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int b = 0;
  if (r0 == 0) {
    for (; b + 2 <= n_blocks; b += 2) {
      PrefetchNextTileRows<C>(w, a.w_row_bytes, b * Blocks::kBytes);
      AccumulateBlocks<R, C, Blocks, true>(w, x, dx, b, acc);
    }
  }
  for (; b + 2 <= n_blocks; b += 2) AccumulateBlocks<R, C, Blocks, true>(w, x, dx, b, acc);
  if (b < n_blocks) AccumulateBlocks<R, C, Blocks, false>(w, x, dx, b, acc);
  for (int r = 0; r < R; ++r) avx512_tiles::StoreRow<C>(acc[r], a.y + static_cast<long>(r0 + r) * a.rows + o0, a.accumulate);
}

// A Q4_K block's eight scales and eight mins as int16 (lanes 0-7 and 8-15 of a vector).
inline __m256i Q4KScalesMins(const uint8_t* block) {
  const Q4KScaleMinWords v = UnpackQ4KScaleMinWords(block + kQ4_KScalesOffset);
  return _mm256_cvtepu8_epi16(_mm_setr_epi32(static_cast<int>(v.scales_lo), static_cast<int>(v.scales_hi),
                                             static_cast<int>(v.mins_lo), static_cast<int>(v.mins_hi)));
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
  const __m512i low = _mm512_set1_epi8(0x0F);
  // The 32 bytes of a sub-block pair in both halves, shifted right by 4 in the upper:
  // low nibbles (sub-block 2k) in lanes 0-7, high nibbles (2k + 1) in lanes 8-15.
  const __m512i nibble_shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int b = 0; b < n_blocks; ++b) {
    __m512i scales[C];  // the block's scales and mins as int16, in both halves
    __m128i mins[C];
    float d[C], dmin[C];
    for (int c = 0; c < C; ++c) {
      const uint8_t* block = w[c] + b * kQ4_KBytes;
      if (r0 == 0) PrefetchQ4KBlock(block + C * a.w_row_bytes);
      d[c] = HalfAt(block);
      dmin[c] = HalfAt(block + 2);
      const __m256i sm = Q4KScalesMins(block);
      scales[c] = _mm512_broadcast_i64x4(sm);
      mins[c] = _mm256_extracti128_si256(sm, 1);
    }
    __m512i p[R][C];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) p[r][c] = _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      // Scale 2k in the low half, 2k + 1 in the high half.
      const __m512i pick = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<int16_t>(2 * k)),
                                              _mm256_set1_epi16(static_cast<int16_t>(2 * k + 1)), 1);
      __m512i q[C], sc[C];
      for (int c = 0; c < C; ++c) {
        const __m512i qs = _mm512_broadcast_i64x4(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[c] + b * kQ4_KBytes + kQ4_KQsOffset + 32 * k)));
        q[c] = _mm512_and_si512(_mm512_srlv_epi64(qs, nibble_shift), low);
        sc[c] = _mm512_permutexvar_epi16(pick, scales[c]);
      }
      for (int r = 0; r < R; ++r) {
        const __m512i xv = _mm512_loadu_si512(x[r] + 256 * b + 64 * k);
        for (int c = 0; c < C; ++c) p[r][c] = _mm512_dpwssd_epi32(p[r][c], _mm512_maddubs_epi16(q[c], xv), sc[c]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m128i sums = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t[r] + 8 * b));
      for (int c = 0; c < C; ++c) {
        const __m512 s = _mm512_set1_ps(d[c] * dx[r][b]);
        const __m512 sm = _mm512_set1_ps(-(dmin[c] * dx[r][b]));
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[r][c]), s, acc[r][c]);
        // Lanes 0-3 take the mins' term after the block's main term.
        const __m512 m = _mm512_zextps128_ps512(_mm_cvtepi32_ps(_mm_madd_epi16(mins[c], sums)));
        acc[r][c] = _mm512_mask3_fmadd_ps(m, sm, acc[r][c], 0x000F);
      }
    }
  }
  for (int r = 0; r < R; ++r) avx512_tiles::StoreRow<C>(acc[r], a.y + static_cast<long>(r0 + r) * a.rows + o0, a.accumulate);
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

void WeightRangeQ8_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end) {
  QuantRangeTiled<kTileRows, kTileCols, kNarrowRows, kNarrowCols, Q8_0Tiles>(a, o_begin, o_end);
}
void WeightRangeQ4_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end) {
  QuantRangeTiled<kTileRows, kTileCols, kNarrowRows, kNarrowCols, Q4_0Tiles>(a, o_begin, o_end);
}
void WeightRangeQ4_KAvx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end) {
  QuantRangeTiled<kTileRows, kTileCols, kNarrowRows, kNarrowCols, Q4_KTiles>(a, o_begin, o_end);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
