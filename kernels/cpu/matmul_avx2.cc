// AVX2+FMA Matmul kernel: the register tiles of matmul_avx2_tiles.h on fp32 weights.
//
// Only <immintrin.h> is included and the AVX2 target is set after it, so no inline
// library function is emitted with AVX2 instructions.
#include <immintrin.h>

#include "kernels/cpu/matmul_internal.h"

// GCC takes a target pragma; clang applies the same target attribute to every function.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#include "kernels/cpu/matmul_avx2_tiles.h"

namespace flover::cpu::internal {

void MatmulRangeAvx2(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                     int o_end, bool accumulate) {
  avx2_tiles::Range<avx2_tiles::F32Weights>(x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace flover::cpu::internal

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
