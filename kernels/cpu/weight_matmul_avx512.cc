// The AVX-512 variants of MatmulWeights for fp16 and bf16 weights: Matmul's AVX-512
// register tiles (matmul_avx512_tiles.h) with each 16 weights widened exactly in a
// register, so the result is Matmul's on the widened weights, bit for bit.
//
// Only <immintrin.h> and headers without intrinsics are included before the target
// pragma, so no inline library function is emitted with AVX-512 instructions.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_matmul_internal.h"

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
  avx512_tiles::Range<F16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                  o_begin, o_end, a.accumulate);
}

void WeightRangeBf16Avx512(const WeightMatmulArgs& a, int o_begin, int o_end) {
  avx512_tiles::Range<Bf16Weights>(a.x, a.x_stride, reinterpret_cast<const uint16_t*>(a.w), a.y, a.n, a.cols, a.rows,
                                   o_begin, o_end, a.accumulate);
}

}  // namespace flover::cpu::internal

#pragma GCC diagnostic pop
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
