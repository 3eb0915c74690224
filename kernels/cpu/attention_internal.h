// Private to PagedAttention (attention.h): the instruction-set variants of attention over
// fp16 and bf16 caches, the choice between them, and entry points for tests that
// compare them.
//
// A 16-bit run has two parts, chosen separately: the scores (q · Kᵀ per block) by a
// MatmulWeights variant of the cache's format, run single-threaded on the K rows in
// place, and the rest (softmax, weighted sum of V: attention_head.h) by an attention
// variant, which widens V in registers with its instruction set. The attention variants
// give the same bits as each other (the widening is exact and the fp32 operations the
// same); the scores give the bits of their MatmulWeights variant, which are Matmul's on
// the widened K (weight_matmul_internal.h).
#pragma once

#include "kernels/cpu/attention.h"
#include "kernels/cpu/weight_matmul_internal.h"

namespace flover::cpu::internal {

// One query head of `rows` consecutive query tokens (1 <= rows <= kMaxQueryRows) of one
// sequence over a 16-bit cache: the first token over positions [0, n_pos), token r over
// [0, n_pos + r). Token r's query is the head's head_dim values at q + r * q_stride, its
// output at out + r * out_stride. scratch: AttendRowsScratch(n_pos, rows) floats. The scores come from score_kernel.
// REQUIRES: score_kernel.fn != nullptr, a variant of kv.dtype's format.
using AttendRows16Fn = void (*)(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                                const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch,
                                float* out, int out_stride);

// The most query tokens one call of an AttendRows16Fn takes.
constexpr int kMaxQueryRows = 4;

// Floats of scratch that attention over `rows` tokens needs, the first at n_pos positions.
constexpr long AttendRowsScratch(int n_pos, int rows) { return static_cast<long>(rows) * (n_pos + rows - 1); }

struct AttentionKernel {
  const char* name = nullptr;    // "avx512", "avx2", "generic"
  AttendRows16Fn f16 = nullptr;  // nullptr: this CPU cannot run the variant
  AttendRows16Fn bf16 = nullptr;
};

// The variant `name` if this CPU can run it, else one with nullptr functions.
AttentionKernel FindAttentionKernel(const char* name);

// The variant PagedAttention uses in this process: the best the CPU runs at the level of
// the Matmul kernel chosen for the process (FLOVER_MATMUL_KERNEL=avx2 or generic limits
// it too). Its scores come from SelectedWeightKernel of the cache's format.
const AttentionKernel& SelectedAttentionKernel();

// PagedAttention over a fp16 or bf16 cache through a given attention variant and score
// kernel. REQUIRES: kv.dtype is fp16 or bf16, `kernel` runs it on this CPU,
// score_kernel.fn != nullptr and a variant of kv.dtype's format.
void PagedAttention16WithKernels(const AttentionKernel& kernel, const WeightKernel& score_kernel,
                                 const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens,
                                 const float* q, int q_stride, float* out, int out_stride, int n_heads, int head_begin,
                                 int head_end);

// dst[i] = FloatToHalf(src[i]) for i < n, with F16C's vcvtps2ph (the same bits).
// REQUIRES: the CPU has F16C and AVX.
void NarrowToHalfF16c(const float* src, uint16_t* dst, int n);

// The variants (attention.cc, attention_avx2.cc, attention_avx512.cc). REQUIRES: the
// CPU features of the variant: none; AVX2, FMA and F16C; AVX-512 F/VL/BW/DQ and F16C.
void AttendRowsF16Generic(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                          const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                          int out_stride);
void AttendRowsBf16Generic(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                           const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                           int out_stride);
void AttendRowsF16Avx2(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows, const float* q,
                       int q_stride, const WeightKernel& score_kernel, float* scratch, float* out, int out_stride);
void AttendRowsBf16Avx2(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                        const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                        int out_stride);
void AttendRowsF16Avx512(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                         const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                         int out_stride);
void AttendRowsBf16Avx512(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                          const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                          int out_stride);

}  // namespace flover::cpu::internal
