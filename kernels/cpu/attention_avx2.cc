// The AVX2 variant of attention over fp16 and bf16 caches (attention_internal.h): the
// arithmetic of attention_head.h in 256-bit registers, fp16 widened by F16C's vcvtph2ps,
// bf16 by a shift; and WriteKv's rounding to fp16 by vcvtps2ph.
//
// Only <immintrin.h> and the headers attention_head.h needs are included before the
// target pragma, so no inline library function is emitted with AVX2 instructions.
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/weight_matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx2,fma,f16c")
#pragma GCC diagnostic ignored "-Wpsabi"  // Vec16 never crosses a call (attention_head.h)

#include "kernels/cpu/attention_head.h"

namespace flover::cpu::internal {
namespace {

// 8 floats: one ymm register.
typedef float Vec8 __attribute__((vector_size(32)));

struct HalfValues {
  using Elem = unsigned short;
  using Vec = Vec8;
  __attribute__((always_inline)) static Vec8 Load(const unsigned short* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float Load1(const unsigned short* p) { return _cvtsh_ss(*p); }
};

struct Bf16Values {
  using Elem = unsigned short;
  using Vec = Vec8;
  __attribute__((always_inline)) static Vec8 Load(const unsigned short* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float Load1(const unsigned short* p) { return attention_head::Bf16Values::Load1(p); }
};

}  // namespace

void NarrowToHalfF16c(const float* src, uint16_t* dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = static_cast<uint16_t>(_cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

void AttendRowsF16Avx2(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows, const float* q,
                       int q_stride, const WeightKernel& score_kernel, float* scratch, float* out, int out_stride) {
  attention_head::AttendRows16<HalfValues>(kv, block_table, kv_head, n_pos, rows, q, q_stride, score_kernel, scratch,
                                           out, out_stride);
}

void AttendRowsBf16Avx2(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                        const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                        int out_stride) {
  attention_head::AttendRows16<Bf16Values>(kv, block_table, kv_head, n_pos, rows, q, q_stride, score_kernel, scratch,
                                           out, out_stride);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
