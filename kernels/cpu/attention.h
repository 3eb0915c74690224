// Attention over a paged KV cache, with grouped-query heads.
//
// KV layout of one layer (PagedKvLayer): a pool of fixed-size blocks, each holding
// `block_size` token slots for every kv head:
//   k, v: [n_blocks, n_kv_heads, block_size, head_dim]
// A sequence's tokens live in the blocks listed in its block table, in order: token at
// position p is in block table[p / block_size], slot p % block_size. Blocks are never
// moved or compacted.
//
// Thread-safety: WriteKv and PagedAttention on different (sequence, head) ranges may
// run concurrently; a sequence's writes must finish before its attention reads them.
#pragma once

namespace flover::cpu {

struct PagedKvLayer {
  float* k = nullptr;  // [n_blocks, n_kv_heads, block_size, head_dim]
  float* v = nullptr;  // same shape as k
  int n_blocks = 0;
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// Stores K and V of n_tokens consecutive tokens at positions start_pos.. into their
// slots. k_rows/v_rows: row t holds the n_kv_heads*head_dim values of token t; row
// stride `row_stride` floats. REQUIRES: block_table covers start_pos + n_tokens - 1.
void WriteKv(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens,
             const float* k_rows, const float* v_rows, int row_stride);

// Causal attention for n_tokens query tokens of one sequence at positions
// start_pos.. start_pos+n_tokens-1, over that sequence's cached keys/values at
// positions 0..(own position) (the tokens' own K/V must already be written).
// Computes query heads [head_begin, head_end); query head h reads kv head
// h / (n_heads / n_kv_heads). Scores are scaled by 1/sqrt(head_dim), softmax as run.c.
//   q:   row t at q + t * q_stride, heads contiguous ([n_heads, head_dim])
//   out: row t at out + t * out_stride, same layout as q
void PagedAttention(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens,
                    const float* q, int q_stride, float* out, int out_stride, int n_heads,
                    int head_begin, int head_end);

}  // namespace flover::cpu
