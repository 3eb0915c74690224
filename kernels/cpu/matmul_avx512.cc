// AVX-512 Matmul kernel: register tiles of R x rows by C w rows, one 16-lane accumulator
// per output element (the canonical arithmetic of matmul_internal.h), in
// matmul_avx512_tiles.h.
//
// Only <immintrin.h> is included and everything is compiled for AVX-512 through a
// function-level target pragma, so no inline library function is emitted with AVX-512
// instructions (which could be picked by the linker for non-AVX-512 callers).
#include <immintrin.h>

#include "kernels/cpu/matmul_internal.h"

// GCC takes a target pragma; clang applies the same target attribute to every function.
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

void MatmulRangeAvx512(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                       int o_end, bool accumulate) {
  avx512_tiles::Range<avx512_tiles::F32Weights>(x, x_stride, w, y, n, in, out, o_begin, o_end, accumulate);
}

}  // namespace flover::cpu::internal

#pragma GCC diagnostic pop
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
