#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/cpu/matmul_internal.h"

namespace flover::cpu {
namespace {

size_t SlotOffset(const PagedKvLayer& kv, int block, int kv_head, int slot) {
  return ((static_cast<size_t>(block) * kv.n_kv_heads + kv_head) * kv.block_size + slot) *
         static_cast<size_t>(kv.head_dim);
}

// Asks for floats [i0, i0 + width) of every slot of `block`'s rows (of `base`: the K or
// V pool) to be brought into L2 while earlier blocks are being read: blocks lie anywhere
// in the pool, so the hardware prefetchers only catch on within a block. (Into L2, not
// L1: prefetches into L1 fill its few miss buffers and stall; measured by
// kernels_bench's BM_PagedAttentionFusedStep.)
constexpr int kPrefetchBlocks = 2;  // blocks ahead: reading one takes less time than DRAM takes to answer

inline void PrefetchBlock(const float* base, const PagedKvLayer& kv, int block, int kv_head, int i0, int width) {
  const float* rows = base + SlotOffset(kv, block, kv_head, 0) + i0;
  for (int s = 0; s < kv.block_size; ++s)
    for (int c = 0; c < width; c += 16) __builtin_prefetch(rows + static_cast<size_t>(s) * kv.head_dim + c, 0, 2);
}

// GCC vector types: lowered to whatever vector width each AttendHead clone has. The
// unaligned variant reads K/V rows at any float offset.
typedef float Vec16 __attribute__((vector_size(64)));
typedef float Vec16Unaligned __attribute__((vector_size(64), aligned(4), may_alias));

// out[0, 16 * NV) = sum over positions p < n_pos of probs[p] * V[p][i0, i0 + 16 * NV), in
// position order. The sums stay in registers (through memory, every position would wait
// for the previous one's store).
template <int NV>
__attribute__((always_inline)) inline void WeightedSumV(const PagedKvLayer& kv, const int* block_table, int kv_head,
                                                        int n_pos, const float* __restrict probs, int i0,
                                                        float* __restrict out) {
  Vec16 acc[NV] = {};
  for (int p0 = 0, b = 0; p0 < n_pos; p0 += kv.block_size, ++b) {
    const float* v = kv.v + SlotOffset(kv, block_table[b], kv_head, 0) + i0;
    const int count = std::min(kv.block_size, n_pos - p0);
    if (p0 + kPrefetchBlocks * kv.block_size < n_pos)
      PrefetchBlock(kv.v, kv, block_table[b + kPrefetchBlocks], kv_head, i0, 16 * NV);
    for (int s = 0; s < count; ++s) {
      const Vec16 a = Vec16{} + probs[p0 + s];
      const float* vs = v + static_cast<size_t>(s) * kv.head_dim;
      for (int j = 0; j < NV; ++j) acc[j] += a * *reinterpret_cast<const Vec16Unaligned*>(vs + 16 * j);
    }
  }
  for (int j = 0; j < NV; ++j) *reinterpret_cast<Vec16Unaligned*>(out + 16 * j) = acc[j];
}

// The same for head_dim % 16 trailing values (tiny heads such as stories260K's 8).
inline void WeightedSumVTail(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos,
                             const float* __restrict probs, int i0, float* __restrict out) {
  const int width = kv.head_dim - i0;
  for (int l = 0; l < width; ++l) out[l] = 0.0f;
  for (int p0 = 0, b = 0; p0 < n_pos; p0 += kv.block_size, ++b) {
    const float* v = kv.v + SlotOffset(kv, block_table[b], kv_head, 0) + i0;
    const int count = std::min(kv.block_size, n_pos - p0);
    for (int s = 0; s < count; ++s) {
      const float a = probs[p0 + s];
      const float* vs = v + static_cast<size_t>(s) * kv.head_dim;
      for (int l = 0; l < width; ++l) out[l] += a * vs[l];
    }
  }
}

// One query head of one token over positions [0, n_pos): scores, softmax as run.c
// (max subtraction, expf, sum, divide), then the probability-weighted sum of V rows.
// The scores of a block are a small matrix product q · K_blockᵀ (K rows are contiguous
// in a block), computed by the process's Matmul kernel. The rest is cloned per ISA for
// wider vectors; its lane-wise arithmetic gives the same bits in every clone.
__attribute__((target_clones("avx512f", "avx2", "default"))) void AttendHead(const PagedKvLayer& kv,
                                                                             const int* block_table, int kv_head,
                                                                             int n_pos, const float* __restrict q,
                                                                             float* __restrict scores,
                                                                             float* __restrict out) {
  const internal::MatmulKernel& dot = internal::SelectedMatmulKernel();
  const int head_dim = kv.head_dim, block_size = kv.block_size;
  for (int b = 0; b < kPrefetchBlocks && b * block_size < n_pos; ++b)
    PrefetchBlock(kv.k, kv, block_table[b], kv_head, 0, head_dim);
  for (int p0 = 0, b = 0; p0 < n_pos; p0 += block_size, ++b) {
    const int count = std::min(block_size, n_pos - p0);
    if (p0 + kPrefetchBlocks * block_size < n_pos)
      PrefetchBlock(kv.k, kv, block_table[b + kPrefetchBlocks], kv_head, 0, head_dim);
    dot.fn(q, head_dim, kv.k + SlotOffset(kv, block_table[b], kv_head, 0), scores + p0, 1, head_dim, count, 0, count,
           false);
  }
  for (int b = 0; b < kPrefetchBlocks && b * block_size < n_pos; ++b)
    PrefetchBlock(kv.v, kv, block_table[b], kv_head, 0, head_dim);  // read once the softmax is done
  const float scale = sqrtf(static_cast<float>(head_dim));
  float max_score = -INFINITY;
  for (int p = 0; p < n_pos; ++p) {
    scores[p] /= scale;
    max_score = std::max(max_score, scores[p]);
  }
  for (int p = 0; p < n_pos; ++p) scores[p] = expf(scores[p] - max_score);
  float sum = 0.0f;  // a separate loop, so the running sum is not spilled around expf calls
  for (int p = 0; p < n_pos; ++p) sum += scores[p];
  for (int p = 0; p < n_pos; ++p) scores[p] /= sum;

  // Every output value is the same sequence of a * v additions whichever path sums it.
  // Up to 64 values per pass over the positions (one pass for head_dim 16..64).
  int i0 = 0;
  for (; i0 + 64 <= head_dim; i0 += 64) WeightedSumV<4>(kv, block_table, kv_head, n_pos, scores, i0, out + i0);
  switch ((head_dim - i0) / 16) {
    case 3: WeightedSumV<3>(kv, block_table, kv_head, n_pos, scores, i0, out + i0); i0 += 48; break;
    case 2: WeightedSumV<2>(kv, block_table, kv_head, n_pos, scores, i0, out + i0); i0 += 32; break;
    case 1: WeightedSumV<1>(kv, block_table, kv_head, n_pos, scores, i0, out + i0); i0 += 16; break;
    default: break;
  }
  if (i0 < head_dim) WeightedSumVTail(kv, block_table, kv_head, n_pos, scores, i0, out + i0);
}

}  // namespace

void WriteKv(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens, const float* k_rows,
             const float* v_rows, int row_stride) {
  const size_t head_bytes = sizeof(float) * kv.head_dim;
  for (int t = 0; t < n_tokens; ++t) {
    const int pos = start_pos + t;
    const int block = block_table[pos / kv.block_size], slot = pos % kv.block_size;
    const float* k_src = k_rows + static_cast<size_t>(t) * row_stride;
    const float* v_src = v_rows + static_cast<size_t>(t) * row_stride;
    for (int h = 0; h < kv.n_kv_heads; ++h) {
      const size_t dst = SlotOffset(kv, block, h, slot);
      std::memcpy(kv.k + dst, k_src + static_cast<size_t>(h) * kv.head_dim, head_bytes);
      std::memcpy(kv.v + dst, v_src + static_cast<size_t>(h) * kv.head_dim, head_bytes);
    }
  }
}

void PagedAttention(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens, const float* q,
                    int q_stride, float* out, int out_stride, int n_heads, int head_begin, int head_end) {
  if (n_tokens <= 0 || head_begin >= head_end) return;
  const int group = n_heads / kv.n_kv_heads;
  // Scores of one head; grows to the longest context seen by this thread, then is reused.
  thread_local std::vector<float> scores;
  if (scores.size() < static_cast<size_t>(start_pos + n_tokens)) scores.resize(start_pos + n_tokens);
  for (int t = 0; t < n_tokens; ++t) {
    const int n_pos = start_pos + t + 1;
    for (int h = head_begin; h < head_end; ++h) {
      const size_t head_offset = static_cast<size_t>(h) * kv.head_dim;
      AttendHead(kv, block_table, h / group, n_pos, q + static_cast<size_t>(t) * q_stride + head_offset, scores.data(),
                 out + static_cast<size_t>(t) * out_stride + head_offset);
    }
  }
}

}  // namespace flover::cpu
