// AVX-512 Matmul kernel: register tiles of R x rows by C w rows, one 16-lane accumulator
// per output element (the canonical arithmetic of matmul_internal.h), in
// matmul_avx512_tiles.h.
//
// Only <immintrin.h> is included and everything is compiled for AVX-512 through a
// function-level target pragma, so no inline library function is emitted with AVX-512
// instructions (which could be picked by the linker for non-AVX-512 callers).
#include <immintrin.h>

#include "kernels/cpu/isa_region.h"
#include "kernels/cpu/matmul_internal.h"

FLOVER_ISA_REGION_BEGIN("avx512f,avx512vl,avx512bw,avx512dq,fma")

#include "kernels/cpu/matmul_avx512_tiles.h"

namespace flover::cpu::internal {

void MatmulRangeAvx512(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                       int o_end, bool accumulate) {
  avx512_tiles::Range<avx512_tiles::F32Weights>(x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace flover::cpu::internal

FLOVER_ISA_REGION_END()
