// AVX2+FMA Matmul kernel: the register tiles of matmul_avx2_tiles.h on fp32 weights, and
// the panels of matmul_avx2_panels.h on interleaved fp32 weights.
//
// Only <immintrin.h> is included and the AVX2 target is set after it, so no inline
// library function is emitted with AVX2 instructions.
#include <immintrin.h>

#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx2,fma")

#include "kernels/cpu/matmul_avx2_tiles.h"

namespace flover::cpu::internal {

void MatmulRangeAvx2(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                     int o_end, bool accumulate) {
  avx2_tiles::Range<avx2_tiles::F32Weights>(x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

void MatmulRangeAvx2Interleaved(const float* x, int x_stride, const void* w, float* y, int n, int in, int out,
                                int o_begin, int o_end, bool accumulate) {
  avx2_tiles::RangeInterleavedPanels<avx2_tiles::F32Panel>(x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
