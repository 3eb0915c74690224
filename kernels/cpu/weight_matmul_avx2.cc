// The AVX2 variants of MatmulWeights (F16C for the fp16 scales and weights): fp16 and
// bf16 weights widened in Matmul's AVX2 register tiles (rows) or outer-product panels
// (interleaved, matmul_avx2_panels.h), and the int8 formats' canonical arithmetic
// (weight_matmul_internal.h) on the interleaved layout (weight_interleave.h), 8 W rows per
// ymm, one y element per 32-bit lane.
//
// Q8_0 uses the sign trick: sum w * q = sum |w| * (q * sign(w)), with vpmaddubsw
// (unsigned |w| times signed q, adjacent pairs added into int16, saturating) and vpmaddwd
// (adjacent int16 pairs added into int32). No saturation can happen: |w| <= 128 (a Q8_0
// weight of -128 from any file gives vpabsb's 0x80, read as the unsigned 128 it is) and
// |q * sign(w)| <= 127 (activations are never -128, step 1), so a pair is at most 2 *
// 128 * 127 = 32512 < 32767 in magnitude. The 4-bit weights of Q4_0 (as n = w + 8) and
// Q4_K are >= 0 and need no trick: a pair is at most 2 * 15 * 127 = 3810, so the pairs
// of 16 values can be summed in int16 before vpmaddwd.
//
// Only <immintrin.h> and headers without intrinsics are included before the target
// pragma, so no inline library function is emitted with AVX2 instructions.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_interleave.h"
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
  static constexpr int kPanelMinRows = 96;  // x rows from which RangePanels runs
  static __m256 Load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256 LoadTail8(const uint16_t* p, int count, __m256i) { return _mm256_cvtph_ps(LoadFirst16(p, count)); }
};

inline __m256 WidenBf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }

struct Bf16Weights {
  using Elem = uint16_t;
  static constexpr int kPanelMinRows = 96;
  static __m256 Load8(const uint16_t* p) { return WidenBf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m256 LoadTail8(const uint16_t* p, int count, __m256i) { return WidenBf16(LoadFirst16(p, count)); }
};

// ---- int8 formats ----

// x rows per tile, of one half (8 W rows) of a group: as many as fit in the 16 ymm
// registers with the int16 sums and the unpacked weights (Q8_0 keeps fewer live values
// per row but gains nothing from a fourth).
constexpr int kTileRowsQ8_0 = 3;
constexpr int kTileRows4Bit = 4;

inline void Store(const WeightMatmulArgs& a, int r, int o, float sum) {
  float& dst = a.y[static_cast<long>(r) * a.rows + o];
  dst = a.accumulate ? dst + sum : sum;
}

// An empty barrier on v's register: integer adds are associative, and without it GCC
// turns an unrolled chain of accumulations into a tree whose products it computes first
// and spills (twice the loads and stores of the arithmetic).
inline void KeepInRegister(__m256i& v) { asm("" : "+x"(v)); }

inline int32_t LoadInt32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The 8 lanes of y row r for W rows 16g + 8h + [0, 8), up to o_end (exclusive).
inline void StoreHalfRow(const WeightMatmulArgs& a, int r, int g, int h, int o_end, __m256 acc) {
  const int o0 = kInterleaveRows * g + 8 * h;
  const int valid = o_end - o0 < 8 ? o_end - o0 : 8;
  alignas(32) float out[8];
  _mm256_store_ps(out, acc);
  for (int i = 0; i < valid; ++i) Store(a, r, o0 + i, out[i]);
}

// Q8_0 or Q4_0: the y elements of x rows [r0, r0 + R) and W rows 16g + 8h + [0, 8) for
// the H halves h = h0, h0 + 1, ... of group g (weight_interleave.h), one W row per lane.
//   Q8_0: each 4 values by the sign trick into int16 pairs, then into int32 (vpmaddwd).
//   Q4_0: nibble n (= w + 8) times q summed in int16 over the whole block (each at most
//         16 * 15 * 127 = 30480), then into int32, starting from -8 * t_b.
template <int R, int H, WeightFormat kFormat>
void TileBlocks32Halves(const WeightMatmulArgs& a, int r0, int g, int h0, int o_end) {
  constexpr bool kQ8 = kFormat == WeightFormat::kQ8_0;
  constexpr int kBytes = kQ8 ? kQ8_0GroupBlockBytes : kQ4_0GroupBlockBytes;
  const int n_blocks = a.cols / 32;
  const int8_t* x[R];
  const float* dx[R];
  const int16_t* t[R];
  for (int r = 0; r < R; ++r) {
    x[r] = a.qx.q + (r0 + r) * a.qx.stride;
    dx[r] = a.qx.d + static_cast<long>(r0 + r) * n_blocks;
    t[r] = a.qx.sums + static_cast<long>(r0 + r) * n_blocks;
  }
  const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);
  __m256 acc[R][H];
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < H; ++h) acc[r][h] = _mm256_setzero_ps();
  }
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = GroupBlock(a.w, kBytes, n_blocks, g, b);
    __m256i dot[R][H];
    if constexpr (kQ8) {
      for (int r = 0; r < R; ++r) {
        for (int h = 0; h < H; ++h) dot[r][h] = _mm256_setzero_si256();
      }
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) {
        __m256i w[H], aw[H];
        for (int h = 0; h < H; ++h) {
          w[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ8_0GroupQs + 64 * l + 32 * (h0 + h)));
          aw[h] = _mm256_abs_epi8(w[h]);
        }
        for (int r = 0; r < R; ++r) {
          const __m256i xv = _mm256_set1_epi32(LoadInt32(x[r] + 32 * b + 4 * l));
          for (int h = 0; h < H; ++h) {
            dot[r][h] = _mm256_add_epi32(
                dot[r][h], _mm256_madd_epi16(_mm256_maddubs_epi16(aw[h], _mm256_sign_epi8(xv, w[h])), ones));
            KeepInRegister(dot[r][h]);
          }
        }
      }
    } else {
      __m256i sum[R][H];
      for (int r = 0; r < R; ++r) {
        for (int h = 0; h < H; ++h) sum[r][h] = _mm256_setzero_si256();
      }
#pragma GCC unroll 4
      for (int l = 0; l < 4; ++l) {
        __m256i lo[H], hi[H];
        for (int h = 0; h < H; ++h) {
          const __m256i v =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ4_0GroupQs + 64 * l + 32 * (h0 + h)));
          lo[h] = _mm256_and_si256(v, low);
          hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        }
        for (int r = 0; r < R; ++r) {
          const __m256i x_lo = _mm256_set1_epi32(LoadInt32(x[r] + 32 * b + 4 * l));
          const __m256i x_hi = _mm256_set1_epi32(LoadInt32(x[r] + 32 * b + 16 + 4 * l));
          for (int h = 0; h < H; ++h) {
            sum[r][h] = _mm256_add_epi16(
                sum[r][h], _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], x_lo), _mm256_maddubs_epi16(hi[h], x_hi)));
            KeepInRegister(sum[r][h]);
          }
        }
      }
      for (int r = 0; r < R; ++r) {
        const __m256i offset = _mm256_set1_epi32(-8 * t[r][b]);
        for (int h = 0; h < H; ++h) dot[r][h] = _mm256_add_epi32(offset, _mm256_madd_epi16(sum[r][h], ones));
      }
    }
    for (int h = 0; h < H; ++h) {
      const __m256 dw =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kGroupD + 16 * (h0 + h))));
      for (int r = 0; r < R; ++r) {
        acc[r][h] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r][h]), _mm256_mul_ps(dw, _mm256_set1_ps(dx[r][b])), acc[r][h]);
      }
    }
  }
  for (int h = 0; h < H; ++h) {
    for (int r = 0; r < R; ++r) StoreHalfRow(a, r0 + r, g, h0 + h, o_end, acc[r][h]);
  }
}

// The y elements of x rows [r0, r0 + R) and W rows 16g + 8h + [0, 8) for the H halves h
// = h0, h0 + 1, ... of group g of an interleaved Q4_K matrix (weight_interleave.h), one
// W row per lane; W rows from o_end on are not stored. Per sub-block, vpmaddubsw's int16
// pairs are summed over its 32 values in int16 (each at most 16 * 15 * 127 = 30480, no
// overflow) before vpmaddwd multiplies them by the row's scale into int32.
template <int R, int H>
void TileQ4_KHalves(const WeightMatmulArgs& a, int r0, int g, int h0, int o_end) {
  const int n_blocks = a.cols / 256;
  const int8_t* x[R];
  const float* dx[R];
  const int16_t* t[R];
  for (int r = 0; r < R; ++r) {
    x[r] = a.qx.q + (r0 + r) * a.qx.stride;
    dx[r] = a.qx.d + static_cast<long>(r0 + r) * n_blocks;
    t[r] = a.qx.sums + static_cast<long>(r0 + r) * 8 * n_blocks;
  }
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  __m256 acc[R][H];
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < H; ++h) acc[r][h] = _mm256_setzero_ps();
  }
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = GroupBlock(a.w, kQ4KGroupBlockBytes, n_blocks, g, b);
    __m256i p[R][H];
    for (int r = 0; r < R; ++r) {
      for (int h = 0; h < H; ++h) p[r][h] = _mm256_setzero_si256();
    }
#pragma GCC unroll 1
    for (int k = 0; k < 4; ++k) {
      __m256i sum_lo[R][H], sum_hi[R][H];  // int16 pairs of sub-blocks 2k and 2k + 1
      for (int r = 0; r < R; ++r) {
        for (int h = 0; h < H; ++h) sum_lo[r][h] = sum_hi[r][h] = _mm256_setzero_si256();
      }
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) {
        __m256i lo[H], hi[H];
        for (int h = 0; h < H; ++h) {
          const __m256i v = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(blk + kQ4KGroupQs + 64 * (8 * k + l) + 32 * (h0 + h)));
          lo[h] = _mm256_and_si256(v, low);
          hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        }
        for (int r = 0; r < R; ++r) {
          const int8_t* xk = x[r] + 256 * b + 64 * k + 4 * l;
          const __m256i x_lo = _mm256_set1_epi32(LoadInt32(xk)), x_hi = _mm256_set1_epi32(LoadInt32(xk + 32));
          for (int h = 0; h < H; ++h) {
            sum_lo[r][h] = _mm256_add_epi16(sum_lo[r][h], _mm256_maddubs_epi16(lo[h], x_lo));
            sum_hi[r][h] = _mm256_add_epi16(sum_hi[r][h], _mm256_maddubs_epi16(hi[h], x_hi));
            KeepInRegister(sum_lo[r][h]);
            KeepInRegister(sum_hi[r][h]);
          }
        }
      }
      for (int h = 0; h < H; ++h) {
        // Each row's scale in both int16 halves of its lane.
        const uint8_t* sc = blk + kQ4KGroupScales + 8 * (h0 + h);
        __m256i sc_lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 16 * (2 * k))));
        __m256i sc_hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 16 * (2 * k + 1))));
        sc_lo = _mm256_or_si256(sc_lo, _mm256_slli_epi32(sc_lo, 16));
        sc_hi = _mm256_or_si256(sc_hi, _mm256_slli_epi32(sc_hi, 16));
        for (int r = 0; r < R; ++r) {
          p[r][h] = _mm256_add_epi32(p[r][h], _mm256_add_epi32(_mm256_madd_epi16(sum_lo[r][h], sc_lo),
                                                               _mm256_madd_epi16(sum_hi[r][h], sc_hi)));
        }
      }
    }
    for (int h = 0; h < H; ++h) {
      __m256i m[R];
      for (int r = 0; r < R; ++r) m[r] = _mm256_setzero_si256();
      for (int i = 0; i < 4; ++i) {
        const __m256i mins = _mm256_cvtepu8_epi16(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ4KGroupMins + 32 * i + 16 * (h0 + h))));
        for (int r = 0; r < R; ++r)
          m[r] = _mm256_add_epi32(m[r], _mm256_madd_epi16(mins, _mm256_set1_epi32(LoadInt32(t[r] + 8 * b + 2 * i))));
      }
      const __m256 d =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kGroupD + 16 * (h0 + h))));
      const __m256 dmin =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ4KGroupDmin + 16 * (h0 + h))));
      for (int r = 0; r < R; ++r) {
        const __m256 dxv = _mm256_set1_ps(dx[r][b]);
        const __m256 s = _mm256_mul_ps(d, dxv);
        const __m256 sm = _mm256_xor_ps(_mm256_mul_ps(dmin, dxv), sign);
        acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[r][h]), s, acc[r][h]);
        acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m[r]), sm, acc[r][h]);
      }
    }
  }
  for (int h = 0; h < H; ++h) {
    for (int r = 0; r < R; ++r) StoreHalfRow(a, r0 + r, g, h0 + h, o_end, acc[r][h]);
  }
}

template <int R, int H>
struct Q8_0Tile {
  static void Run(const WeightMatmulArgs& a, int r0, int g, int h0, int o_end) {
    TileBlocks32Halves<R, H, WeightFormat::kQ8_0>(a, r0, g, h0, o_end);
  }
};
template <int R, int H>
struct Q4_0Tile {
  static void Run(const WeightMatmulArgs& a, int r0, int g, int h0, int o_end) {
    TileBlocks32Halves<R, H, WeightFormat::kQ4_0>(a, r0, g, h0, o_end);
  }
};
template <int R, int H>
struct Q4_KTile {
  static void Run(const WeightMatmulArgs& a, int r0, int g, int h0, int o_end) {
    TileQ4_KHalves<R, H>(a, r0, g, h0, o_end);
  }
};

// Runs Tile<R', 1>::Run for the R' = min(rows, R) x rows at r0 and half h of group g.
template <int R, template <int, int> class Tile>
__attribute__((always_inline)) inline void RunHalfTile(int rows, const WeightMatmulArgs& a, int r0, int g, int h,
                                                       int o_end) {
  if constexpr (R > 1) {
    if (rows < R) return RunHalfTile<R - 1, Tile>(rows, a, r0, g, h, o_end);
  }
  Tile<R, 1>::Run(a, r0, g, h, o_end);
}

// W rows [o_begin, o_end) (o_begin a multiple of 16) a group at a time: one x row with
// both halves of the group in one pass over its bytes, else each half under every x
// row kTileRows at a time.
template <template <int, int> class Tile, int kTileRows>
void HalvesRange(const WeightMatmulArgs& a, int o_begin, int o_end) {
  for (int g = o_begin / kInterleaveRows; g * kInterleaveRows < o_end; ++g) {
    if (a.n == 1) {
      Tile<1, 2>::Run(a, 0, g, 0, o_end);
      continue;
    }
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < a.n; r += kTileRows)
        RunHalfTile<kTileRows, Tile>(a.n - r < kTileRows ? a.n - r : kTileRows, a, r, g, h, o_end);
    }
  }
}

}  // namespace

void WeightRangeF16Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  if (a.layout == WeightLayout::kInterleaved)
    return avx2_tiles::RangeInterleavedPanels<F16Weights>(a.x, a.x_stride, a.w, a.y, a.n, a.cols, a.rows, o_begin,
                                                          o_end, a.accumulate);
  avx2_tiles::Range<F16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                o_begin, o_end, a.accumulate);
}

void WeightRangeBf16Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  if (a.layout == WeightLayout::kInterleaved)
    return avx2_tiles::RangeInterleavedPanels<Bf16Weights>(a.x, a.x_stride, a.w, a.y, a.n, a.cols, a.rows, o_begin,
                                                           o_end, a.accumulate);
  avx2_tiles::Range<Bf16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                 o_begin, o_end, a.accumulate);
}

void WeightRangeQ8_0Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  HalvesRange<Q8_0Tile, kTileRowsQ8_0>(a, o_begin, o_end);
}
void WeightRangeQ4_0Avx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  HalvesRange<Q4_0Tile, kTileRows4Bit>(a, o_begin, o_end);
}
void WeightRangeQ4_KAvx2(const WeightMatmulArgs& a, int o_begin, int o_end) {
  HalvesRange<Q4_KTile, kTileRows4Bit>(a, o_begin, o_end);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
