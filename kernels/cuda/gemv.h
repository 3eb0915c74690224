// Gemv: the weight product of a small step, y[n, out] (+)= x[n, in] · w[out, in]ᵀ for
// n <= kGemvMaxRows, as a bandwidth-bound kernel: at batch 1-8 a decode step only
// streams the weights once, and cuBLAS's GEMM kernels reach ~3.4 TB/s there on an
// H200; this kernel is meant to come close to the copy bandwidth. Gemm::Matmul
// dispatches to it when GemmOptions::gemv_max_rows asks (gemm.h); the operands and semantics are Matmul's, restricted to what it supports:
//   - w and x fp16 or bf16 (fp32 storage stays on cuBLAS), y fp32 or w's dtype;
//   - in, and the row strides of x and w, multiples of 8, x and w 16-byte aligned
//     (128-bit loads).
//
// Each block of kGemvThreads threads computes kGemvRowsPerBlock output columns for all
// n rows of x: every thread streams 8 weights per 128-bit load, multiplies them with
// the same 8 elements of each x row in fp32 (FMA), and the partial sums are reduced by
// warp shuffles, then across the block's warps in a fixed order. So y[j, o] is the same
// float for a given x row j whatever the other rows and whatever n: the product is
// batch-invariant for n <= kGemvMaxRows (unlike cuBLAS). Deterministic (no atomics).
//
// Thread-safety: reentrant; it only enqueues work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

inline constexpr int kGemvMaxRows = 8;

// True when Gemv can run these (CheckMatmul-valid) operands: 1 <= n <= kGemvMaxRows,
// fp16/bf16 storage, and the vector-load conditions above. Needs no GPU.
bool GemvSupports(const MatrixView& x, const MatrixView& w, const MatrixView& y);

// accumulate=false: y = x·wᵀ (y's previous contents not read); true: y = y + x·wᵀ,
// summed in fp32 and rounded to y's dtype once. InvalidArgument, before anything is
// enqueued, when CheckMatmul fails or GemvSupports is false.
Status Gemv(const MatrixView& x, const MatrixView& w, const MatrixView& y, bool accumulate, cudaStream_t stream);

// The feed-forward's first product with SiluMul (activation.h) fused in:
//   out[j, o] = SiLU(g) * u,  g = x[j]·w[o], u = x[j]·w[hidden + o],  hidden = out.cols,
// w = [W1; W3] ([2 * hidden, in]), out of w's dtype. g and u are the floats Gemv computes
// for those rows, and the epilogue is SiluMul's, so the result equals Gemv into an fp32
// [n, 2 * hidden] buffer followed by SiluMul, bit for bit, without that buffer and one
// launch. InvalidArgument unless GemvSupports(x, w, fp32 y) and the shapes match.
Status GemvSiluMul(const MatrixView& x, const MatrixView& w, const MatrixView& out, cudaStream_t stream);

}  // namespace flover::cuda
