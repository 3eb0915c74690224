// Attention over a paged KV cache, with grouped-query heads.
//
// KV layout of one layer (PagedKvLayer): a pool of fixed-size blocks, each holding
// `block_size` token slots for every kv head:
//   k, v: [n_blocks, n_kv_heads, block_size, head_dim] values of `dtype`
// The values are fp32, or fp16 / bf16 (KvDType): WriteKv rounds fp32 K and V to the
// storage type (to nearest, ties to even: float16.h's conversions), and PagedAttention
// widens them exactly in registers and computes in fp32, so attention over a 16-bit
// cache is attention over the widened values (see PagedAttention for the exact contract).
// A sequence's tokens live in the blocks listed in its block table, in order: token at
// position p is in block table[p / block_size], slot p % block_size. Blocks are never
// moved or compacted.
//
// Thread-safety: WriteKv and PagedAttention on different (sequence, head) ranges may
// run concurrently; a sequence's writes must finish before its attention reads them.
#pragma once

#include <cstdint>

namespace flover::cpu {

// The element type of a KV cache: IEEE fp32, IEEE fp16 (binary16) or bf16.
enum class KvDType : uint8_t { kF32, kF16, kBF16 };

// "fp32", "fp16", "bf16"; "?" for a value outside the enum.
const char* KvDTypeName(KvDType dtype);
// Bytes of one value: 4, 2, 2.
constexpr int KvDTypeBytes(KvDType dtype) { return dtype == KvDType::kF32 ? 4 : 2; }

struct PagedKvLayer {
  void* k = nullptr;  // [n_blocks, n_kv_heads, block_size, head_dim] values of dtype
  void* v = nullptr;  // same shape and type as k
  int n_blocks = 0;
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  KvDType dtype = KvDType::kF32;
};

// Stores K and V of n_tokens consecutive tokens at positions start_pos.. into their
// slots, converted to kv.dtype (round to nearest even; exact for fp32). k_rows/v_rows: row t holds the n_kv_heads*head_dim values of token t; row
// stride `row_stride` floats. REQUIRES: block_table covers start_pos + n_tokens - 1.
void WriteKv(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens,
             const float* k_rows, const float* v_rows, int row_stride);

// Causal attention for n_tokens query tokens of one sequence at positions
// start_pos.. start_pos+n_tokens-1, over that sequence's cached keys/values at
// positions 0..(own position) (the tokens' own K/V must already be written).
// Computes query heads [head_begin, head_end); query head h reads kv head
// h / (n_heads / n_kv_heads). Scores are scaled by 1/sqrt(head_dim), softmax as run.c.
// Every output value is computed by the same operations whatever the other heads,
// tokens and sequences of the step are (batch invariance). For fp16 and bf16 caches the
// result equals, bit for bit, this function on an fp32 cache holding the widened values:
// the scores are the process's Matmul kernel on the widened K (MatmulWeights' fp16/bf16
// contract, weight_matmul.h), and the weighted sum of V rows is the same sequence of fp32
// multiplies and adds; every instruction-set variant gives these bits.
//   q:   row t at q + t * q_stride, heads contiguous ([n_heads, head_dim])
//   out: row t at out + t * out_stride, same layout as q
void PagedAttention(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens,
                    const float* q, int q_stride, float* out, int out_stride, int n_heads,
                    int head_begin, int head_end);

// The instruction-set variant PagedAttention runs for `dtype` in this process ("avx512",
// "avx2", "generic"), for logs and benchmarks.
const char* PagedAttentionKernelName(KvDType dtype);

}  // namespace flover::cpu
