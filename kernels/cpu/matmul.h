// Weight GEMM for the fused step: y[n, out] (+)= x[n, in] · w[out, in]^T, fp32.
//
// Batch-invariant: every element of y is computed by the same sequence of floating-point
// operations whatever `n` is and whichever rows share the call, so a request's logits do
// not depend on what else is in its step. (BLAS libraries switch kernels and blocking
// with the matrix shape, which changes rounding; that is why this is not plain sgemm.)
// The kernel (AVX-512, AVX2+FMA or portable) is chosen once per process from the CPU;
// FLOVER_MATMUL_KERNEL=avx512|avx2|generic forces one the CPU supports. The AVX-512 and
// AVX2 kernels give identical bits; the portable one rounds differently (no FMA).
//
// Multi-threaded with OpenMP over `out`; call from outside any parallel region.
// Thread-safety: reentrant.
#pragma once

namespace flover::cpu {

// REQUIRES: n >= 0, in > 0, out > 0; x, w, y do not overlap.
// accumulate=false: y = x·wᵀ; accumulate=true: y += x·wᵀ (for the residual stream).
void Matmul(const float* x, const float* w, float* y, int n, int in, int out, bool accumulate = false);

// Name of the kernel Matmul dispatches to ("avx512", "avx2", "generic"), for logs.
const char* MatmulKernelName();

}  // namespace flover::cpu
