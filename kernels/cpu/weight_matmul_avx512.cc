// The AVX-512 variants of MatmulWeights for fp16 and bf16 weights: Matmul's AVX-512
// register tiles (matmul_avx512_tiles.h) with each 16 weights widened exactly in a
// register, so the result is Matmul's on the widened weights, bit for bit. (Interleaved
// matrices, the AVX2 kernels' layout, are read through a widened copy of a few rows and
// Matmul's AVX-512 kernel, WeightRangeWidened: the same bits.)
//
// Only <immintrin.h> and headers without intrinsics are included before the target
// pragma, so no inline library function is emitted with AVX-512 instructions.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,fma")

#include "kernels/cpu/matmul_avx512_tiles.h"

namespace flover::cpu::internal {
namespace {

struct F16Weights {
  using Elem = uint16_t;
  static __m512 Load(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 LoadFirst(__mmask16 mask, const uint16_t* p) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p)); }
};

inline __m512 WidenBf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

struct Bf16Weights {
  using Elem = uint16_t;
  static __m512 Load(const uint16_t* p) { return WidenBf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 LoadFirst(__mmask16 mask, const uint16_t* p) { return WidenBf16(_mm256_maskz_loadu_epi16(mask, p)); }
};

}  // namespace

void WeightRangeF16Avx512(const WeightMatmulArgs& a, int o_begin, int o_end) {
  if (a.layout == WeightLayout::kInterleaved) return WeightRangeWidened(a, o_begin, o_end);
  avx512_tiles::Range<F16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                  o_begin, o_end, a.accumulate);
}

void WeightRangeBf16Avx512(const WeightMatmulArgs& a, int o_begin, int o_end) {
  if (a.layout == WeightLayout::kInterleaved) return WeightRangeWidened(a, o_begin, o_end);
  avx512_tiles::Range<Bf16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                   o_begin, o_end, a.accumulate);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
