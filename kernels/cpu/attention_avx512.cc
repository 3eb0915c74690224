// The AVX-512 variant of attention over fp16 and bf16 caches (attention_internal.h): the
// arithmetic of attention_head.h in 512-bit registers, fp16 widened by vcvtph2ps, bf16
// by a shift.
//
// Only <immintrin.h> and the headers attention_head.h needs are included before the
// target pragma, so no inline library function is emitted with AVX-512 instructions.
#include <immintrin.h>

#include <cmath>
#include <cstddef>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/weight_matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,fma,f16c")

#include "kernels/cpu/attention_head.h"

namespace flover::cpu::internal {
namespace {

using attention_head::Vec16;

struct HalfValues {
  using Elem = unsigned short;
  using Vec = Vec16;
  __attribute__((always_inline)) static Vec16 Load(const unsigned short* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static float Load1(const unsigned short* p) { return _cvtsh_ss(*p); }
};

struct Bf16Values {
  using Elem = unsigned short;
  using Vec = Vec16;
  __attribute__((always_inline)) static Vec16 Load(const unsigned short* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static float Load1(const unsigned short* p) { return attention_head::Bf16Values::Load1(p); }
};

}  // namespace

void AttendRowsF16Avx512(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                         const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                         int out_stride) {
  attention_head::AttendRows16<HalfValues>(kv, block_table, kv_head, n_pos, rows, q, q_stride, score_kernel, scratch,
                                           out, out_stride);
}

void AttendRowsBf16Avx512(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                          const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                          int out_stride) {
  attention_head::AttendRows16<Bf16Values>(kv, block_table, kv_head, n_pos, rows, q, q_stride, score_kernel, scratch,
                                           out, out_stride);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
