// The AVX-512 VNNI variants of MatmulWeights for the int8 formats: the canonical
// arithmetic of weight_matmul_internal.h on the interleaved layout (weight_interleave.h),
// 16 W rows per zmm, one y element per 32-bit lane.
//
// vpdpbusd multiplies unsigned bytes by signed bytes and adds each 4 products into an
// int32 lane without saturation; the weights are made unsigned by an offset that the
// activations' block sums t take back out (the lane starts at -offset * t):
//   Q8_0: w + 128 in [0, 255] for any int8 w (-128 from a hostile file included), q in
//         [-127, 127]; |lane| <= 128 * 4064 + 32 * 255 * 127.
//   Q4_0: the nibble n = w + 8.
//   Q4_K: the nibbles are the unsigned weights; a lane's sum over a sub-block is at most
//         32 * 15 * 127 = 60960, then times its 6-bit scale (vpmulld); the mins' term by
//         vpdpwssd of the int16 sums.
//
// Only <immintrin.h> and headers without intrinsics are included before the target
// pragma, so no inline library function is emitted with AVX-512 instructions.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_interleave.h"
#include "kernels/cpu/weight_matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,fma,f16c")

namespace flover::cpu::internal {
namespace {

constexpr int kTileRows = 4;  // x rows per tile, of one group of 16 W rows

// The 64-byte vectors of a (group, block) of Q8_0 or Q4_0 weights as unsigned bytes u
// (the weight is u - kOffset), one W row per 32-bit lane, each with the offset of its 4
// values within the x block: Chunk(blk, i, &x_offset) for i < kChunks.
struct Q8_0Group {
  static constexpr int kBytes = kQ8_0GroupBlockBytes, kOffset = 128, kChunks = 8;
  static __m512i Chunk(const uint8_t* blk, int i, int* x_offset) {
    *x_offset = 4 * i;
    return _mm512_xor_si512(_mm512_loadu_si512(blk + kQ8_0GroupQs + 64 * i), _mm512_set1_epi8(-128));
  }
};

struct Q4_0Group {
  static constexpr int kBytes = kQ4_0GroupBlockBytes, kOffset = 8, kChunks = 8;
  static __m512i Chunk(const uint8_t* blk, int i, int* x_offset) {
    const int l = i / 2;  // chunk 2l: low nibbles (values 4l + [0, 4)); 2l + 1: high (16 + 4l + [0, 4))
    *x_offset = 4 * l + 16 * (i % 2);
    const __m512i v = _mm512_loadu_si512(blk + kQ4_0GroupQs + 64 * l);
    return _mm512_and_si512(i % 2 ? _mm512_srli_epi16(v, 4) : v, _mm512_set1_epi8(0x0F));
  }
};

inline int32_t LoadInt32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The 16 lanes of y row r0 + r for W rows 16g + [0, 16), up to o_end (exclusive).
inline void StoreGroupRow(const WeightMatmulArgs& a, int r, int g, int o_end, __m512 acc) {
  const int o0 = kInterleaveRows * g;
  const int valid = o_end - o0 < kInterleaveRows ? o_end - o0 : kInterleaveRows;
  const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
  float* y = a.y + static_cast<long>(r) * a.rows + o0;
  _mm512_mask_storeu_ps(y, mask, a.accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, y), acc) : acc);
}

// Q8_0 or Q4_0: the y elements of x rows [r0, r0 + R) and the 16 W rows of group g, one
// W row per lane; each lane's block sum starts at -kOffset * t_b, which takes the offset
// out of u.
template <int R, class Group>
void TileBlocks32Group(const WeightMatmulArgs& a, int r0, int g, int o_end) {
  const int n_blocks = a.cols / 32;
  const int8_t* x[R];
  const float* dx[R];
  const int16_t* t[R];
  for (int r = 0; r < R; ++r) {
    x[r] = a.qx.q + (r0 + r) * a.qx.stride;
    dx[r] = a.qx.d + static_cast<long>(r0 + r) * n_blocks;
    t[r] = a.qx.sums + static_cast<long>(r0 + r) * n_blocks;
  }
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = GroupBlock(a.w, Group::kBytes, n_blocks, g, b);
    __m512i dot[R];
    for (int r = 0; r < R; ++r) dot[r] = _mm512_set1_epi32(-Group::kOffset * t[r][b]);
#pragma GCC unroll 8
    for (int i = 0; i < Group::kChunks; ++i) {
      int x_offset;
      const __m512i u = Group::Chunk(blk, i, &x_offset);
      for (int r = 0; r < R; ++r)
        dot[r] = _mm512_dpbusd_epi32(dot[r], u, _mm512_set1_epi32(LoadInt32(x[r] + 32 * b + x_offset)));
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kGroupD)));
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r]), _mm512_mul_ps(dw, _mm512_set1_ps(dx[r][b])), acc[r]);
  }
  for (int r = 0; r < R; ++r) StoreGroupRow(a, r0 + r, g, o_end, acc[r]);
}

// The y elements of x rows [r0, r0 + R) and the 16 W rows of group g of an interleaved
// Q4_K matrix (weight_interleave.h), one W row per lane; W rows from o_end on are not
// stored.
template <int R>
void TileQ4_KGroup(const WeightMatmulArgs& a, int r0, int g, int o_end) {
  const int n_blocks = a.cols / 256;
  const int8_t* x[R];
  const float* dx[R];
  const int16_t* t[R];
  for (int r = 0; r < R; ++r) {
    x[r] = a.qx.q + (r0 + r) * a.qx.stride;
    dx[r] = a.qx.d + static_cast<long>(r0 + r) * n_blocks;
    t[r] = a.qx.sums + static_cast<long>(r0 + r) * 8 * n_blocks;
  }
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(0x80000000u)));
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = GroupBlock(a.w, kQ4KGroupBlockBytes, n_blocks, g, b);
    __m512i p[R];
    for (int r = 0; r < R; ++r) p[r] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int k = 0; k < 4; ++k) {
      // Sub-blocks 2k (low nibbles) and 2k + 1 (high nibbles), summed whole per lane.
      __m512i dot_lo[R], dot_hi[R];
      for (int r = 0; r < R; ++r) dot_lo[r] = dot_hi[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) {
        const __m512i v = _mm512_loadu_si512(blk + kQ4KGroupQs + 64 * (8 * k + l));
        const __m512i lo = _mm512_and_si512(v, low), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
        for (int r = 0; r < R; ++r) {
          const int8_t* xk = x[r] + 256 * b + 64 * k + 4 * l;
          dot_lo[r] = _mm512_dpbusd_epi32(dot_lo[r], lo, _mm512_set1_epi32(LoadInt32(xk)));
          dot_hi[r] = _mm512_dpbusd_epi32(dot_hi[r], hi, _mm512_set1_epi32(LoadInt32(xk + 32)));
        }
      }
      const __m512i sc_lo = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ4KGroupScales + 16 * (2 * k))));
      const __m512i sc_hi = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ4KGroupScales + 16 * (2 * k + 1))));
      for (int r = 0; r < R; ++r) {
        p[r] = _mm512_add_epi32(p[r], _mm512_add_epi32(_mm512_mullo_epi32(dot_lo[r], sc_lo),
                                                       _mm512_mullo_epi32(dot_hi[r], sc_hi)));
      }
    }
    __m512i m[R];
    for (int r = 0; r < R; ++r) m[r] = _mm512_setzero_si512();
    for (int i = 0; i < 4; ++i) {
      const __m512i mins = _mm512_cvtepu8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ4KGroupMins + 32 * i)));
      for (int r = 0; r < R; ++r)
        m[r] = _mm512_dpwssd_epi32(m[r], mins, _mm512_set1_epi32(LoadInt32(t[r] + 8 * b + 2 * i)));
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kGroupD)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ4KGroupDmin)));
    for (int r = 0; r < R; ++r) {
      const __m512 dxv = _mm512_set1_ps(dx[r][b]);
      const __m512 s = _mm512_mul_ps(d, dxv);
      const __m512 sm = _mm512_xor_ps(_mm512_mul_ps(dmin, dxv), sign);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[r]), s, acc[r]);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m[r]), sm, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) StoreGroupRow(a, r0 + r, g, o_end, acc[r]);
}

// Runs Tile<R'>::Run for the R' = min(rows, R) x rows at r0 and group g.
template <int R, template <int> class Tile>
__attribute__((always_inline)) inline void RunGroupTile(int rows, const WeightMatmulArgs& a, int r0, int g,
                                                        int o_end) {
  if constexpr (R > 1) {
    if (rows < R) return RunGroupTile<R - 1, Tile>(rows, a, r0, g, o_end);
  }
  Tile<R>::Run(a, r0, g, o_end);
}

template <int R>
struct Q8_0Tile {
  static void Run(const WeightMatmulArgs& a, int r0, int g, int o_end) {
    TileBlocks32Group<R, Q8_0Group>(a, r0, g, o_end);
  }
};
template <int R>
struct Q4_0Tile {
  static void Run(const WeightMatmulArgs& a, int r0, int g, int o_end) {
    TileBlocks32Group<R, Q4_0Group>(a, r0, g, o_end);
  }
};
template <int R>
struct Q4_KTile {
  static void Run(const WeightMatmulArgs& a, int r0, int g, int o_end) { TileQ4_KGroup<R>(a, r0, g, o_end); }
};

// W rows [o_begin, o_end) (o_begin a multiple of 16) a group at a time, every x row
// kTileRows at a time under each.
template <template <int> class Tile>
void GroupRange(const WeightMatmulArgs& a, int o_begin, int o_end) {
  for (int g = o_begin / kInterleaveRows; g * kInterleaveRows < o_end; ++g) {
    for (int r = 0; r < a.n; r += kTileRows)
      RunGroupTile<kTileRows, Tile>(a.n - r < kTileRows ? a.n - r : kTileRows, a, r, g, o_end);
  }
}

}  // namespace

void WeightRangeQ8_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end) {
  GroupRange<Q8_0Tile>(a, o_begin, o_end);
}
void WeightRangeQ4_0Avx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end) {
  GroupRange<Q4_0Tile>(a, o_begin, o_end);
}
void WeightRangeQ4_KAvx512Vnni(const WeightMatmulArgs& a, int o_begin, int o_end) {
  GroupRange<Q4_KTile>(a, o_begin, o_end);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
