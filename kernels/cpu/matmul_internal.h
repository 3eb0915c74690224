// Private to the Matmul implementation: the per-ISA kernels Matmul dispatches to.
//
// Every kernel computes each element of y with the same "canonical" arithmetic, which is
// what makes Matmul batch-invariant. For y[r, o] = dot(x[r, :], w[o, :]):
//   1. sixteen lane accumulators a[0..15] = +0.0f;
//   2. for each chunk c = 0, 1, ... of 16 consecutive k (the last chunk zero-padded):
//        a[l] = fma(x[16c + l], w[16c + l], a[l])   (padding lanes add 0 * 0)
//   3. fixed pairwise tree: b[i] = a[i] + a[i+8], c[i] = b[i] + b[i+4],
//      d[i] = c[i] + c[i+2], s = d[0] + d[1];
//   4. y = s, or y = y + s when accumulating.
// Only the tiling (how many x rows and w rows share a pass over k) and the thread split
// differ with n and the thread count; neither changes the operations above.
//
// The AVX-512 and AVX2 kernels implement exactly these steps (AVX2 runs the two 8-lane
// halves of each accumulator as separate passes), so they give identical bits, which
// matmul_test checks. The portable kernel uses the same lanes and tree but a separate
// multiply and add (x86-64 without FMA has no fast fused multiply-add), so it rounds
// differently from the SIMD kernels; it is still batch-invariant on its own.
#pragma once

namespace flover::cpu::internal {

// Computes y[r, o] for all rows r in [0, n) and columns o in [o_begin, o_end).
// x: [n, in], row r at x + r * x_stride (x_stride >= in); w: [out, in]; y: [n, out].
// Single-threaded.
using MatmulRangeFn = void (*)(const float* x, int x_stride, const float* w, float* y, int n, int in, int out,
                               int o_begin, int o_end, bool accumulate);

void MatmulRangeGeneric(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                        int o_end, bool accumulate);
// REQUIRES: the CPU supports AVX2 and FMA.
void MatmulRangeAvx2(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                     int o_end, bool accumulate);
// REQUIRES: the CPU supports AVX-512 F/VL/BW/DQ and FMA.
void MatmulRangeAvx512(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                       int o_end, bool accumulate);

// A kernel and how Matmul splits `out` between threads for it.
struct MatmulKernel {
  const char* name = nullptr;  // "avx512", "avx2", "generic"
  MatmulRangeFn fn = nullptr;
  int col_align = 1;  // thread ranges start at multiples of this (the kernel's tile width)
};

// The kernel called `name` if this CPU can run it, else nullopt-like {} (fn == nullptr).
MatmulKernel FindMatmulKernel(const char* name);

// The kernel Matmul uses in this process (chosen once, from the CPU and
// FLOVER_MATMUL_KERNEL). Other kernels (attention scores) reuse it single-threaded.
const MatmulKernel& SelectedMatmulKernel();

// Matmul through a given kernel (Matmul itself uses the one chosen for the process).
// For tests that compare kernels. REQUIRES: kernel.fn != nullptr.
void MatmulWithKernel(const MatmulKernel& kernel, const float* x, const float* w, float* y, int n, int in, int out,
                      bool accumulate);

}  // namespace flover::cpu::internal
