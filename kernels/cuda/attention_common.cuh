// Internals shared by the decode and prefill attention kernels (not part of the API).
//
// Both kernels run the same inner loop, AttendKeyRange: a thread block holds M query
// vectors of one kv head in shared memory (decode: the G = n_heads / n_kv_heads query
// heads of one row; prefill: R rows x G heads of one entry, so a K/V tile staged once
// serves every query head that shares it) and streams the keys of a position range
// through shared memory in tiles of kKeyTile, with an online softmax per query vector:
//   1. the tile's slot offsets (block table lookups), once per key;
//   2. K and V tiles, converted to float (coalesced: a key's head_dim values are
//      contiguous, and so are consecutive slots of a block);
//   3. scores S[m, j] = q_m . k_j / sqrt(head_dim), -inf where masked (causal:
//      position > the query's, or outside the range);
//   4. per query vector (one warp, one lane per key): new running max, P = exp(S - max),
//      rescale factor of the old accumulator, running sum;
//   5. O[m, :] = O[m, :] * rescale + P[m, :] . V.
// Every query vector's arithmetic depends only on its own q, position and keys, and
// key tiles start at fixed positions, which is what makes the results batch invariant.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda::attention_internal {

inline constexpr int kThreads = 128;  // per block, both kernels
inline constexpr int kWarps = kThreads / 32;
inline constexpr int kKeyTile = 32;  // keys per tile: one per lane in the softmax step
static_assert(kDecodePartitionTokens % kKeyTile == 0, "decode splits must hold whole key tiles");
// Dynamic shared memory one block may use; the launchers reject shapes above it.
inline constexpr size_t kMaxSmemBytes = 96 * 1024;
// Query vectors per prefill tile (rows x group), before the shared-memory limit.
inline constexpr int kPrefillQueryVectors = 64;

// Shared memory of a block with M query vectors of head_dim D, in this order:
//   key_off  int64 [kKeyTile]      element offset of each key's slot, -1 when masked
//   q_pos    int   [M]             position of each query vector, -1 for padding
//   q        float [M, D]          queries
//   o        float [M, D]          unnormalised output accumulators
//   k        float [kKeyTile, ks]  K tile, row stride ks = D rounded up to odd (no bank
//                                  conflicts when lanes read different keys)
//   v        float [kKeyTile, D]   V tile
//   s        float [M, kKeyTile+1] scores, then probabilities (padded row, as k)
//   run_max, run_sum, rescale  float [M]
struct SmemLayout {
  int m, d, k_stride;
  size_t q_pos, q, o, k, v, s, run_max, run_sum, rescale, bytes;  // byte offsets

  __host__ __device__ SmemLayout(int n_query, int head_dim) : m(n_query), d(head_dim), k_stride(head_dim | 1) {
    const size_t mf = static_cast<size_t>(n_query), df = static_cast<size_t>(head_dim);
    q_pos = sizeof(int64_t) * kKeyTile;
    q = q_pos + sizeof(int) * mf;
    o = q + sizeof(float) * mf * df;
    k = o + sizeof(float) * mf * df;
    v = k + sizeof(float) * kKeyTile * static_cast<size_t>(k_stride);
    s = v + sizeof(float) * kKeyTile * df;
    run_max = s + sizeof(float) * mf * (kKeyTile + 1);
    run_sum = run_max + sizeof(float) * mf;
    rescale = run_sum + sizeof(float) * mf;
    bytes = rescale + sizeof(float) * mf;
  }
};

// The layer's cache as the kernels see it.
template <typename T>
struct KvArgs {
  T* k;
  T* v;
  int n_blocks, block_size, n_kv_heads, head_dim;
};

// Pointers into a block's shared memory, per SmemLayout.
struct SmemPtrs {
  int64_t* key_off;
  int* q_pos;
  float *q, *o, *k, *v, *s, *run_max, *run_sum, *rescale;

  __device__ SmemPtrs(unsigned char* base, const SmemLayout& l)
      : key_off(reinterpret_cast<int64_t*>(base)),
        q_pos(reinterpret_cast<int*>(base + l.q_pos)),
        q(reinterpret_cast<float*>(base + l.q)),
        o(reinterpret_cast<float*>(base + l.o)),
        k(reinterpret_cast<float*>(base + l.k)),
        v(reinterpret_cast<float*>(base + l.v)),
        s(reinterpret_cast<float*>(base + l.s)),
        run_max(reinterpret_cast<float*>(base + l.run_max)),
        run_sum(reinterpret_cast<float*>(base + l.run_sum)),
        rescale(reinterpret_cast<float*>(base + l.rescale)) {}
};

// Walks idx = threadIdx.x, threadIdx.x + kThreads, ... < n_rows * width as (row, col)
// without a division per step.
struct RowColWalker {
  int row, col, step_row, step_col, width;
  __device__ RowColWalker(int w) : width(w) {
    row = static_cast<int>(threadIdx.x) / w;
    col = static_cast<int>(threadIdx.x) % w;
    step_row = kThreads / w;
    step_col = kThreads % w;
  }
  __device__ void Next() {
    row += step_row;
    col += step_col;
    if (col >= width) {
      col -= width;
      ++row;
    }
  }
};

__device__ __forceinline__ float WarpMax(float x) {
  for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Sets the accumulators of the M query vectors to empty (run before AttendKeyRange;
// the caller fills sm.q and sm.q_pos and synchronises).
__device__ __forceinline__ void ResetAccumulators(const SmemPtrs& sm, const SmemLayout& l) {
  for (int i = threadIdx.x; i < l.m * l.d; i += kThreads) sm.o[i] = 0.0f;
  for (int i = threadIdx.x; i < l.m; i += kThreads) {
    sm.run_max[i] = -INFINITY;
    sm.run_sum[i] = 0.0f;
  }
}

// Accumulates, for the M query vectors in shared memory (queries sm.q, positions
// sm.q_pos), attention over the keys at positions [k_begin, k_end) of kv head `kv_head`
// of the entry whose block table is `table`; a key at position p counts for query
// vector m only when p <= q_pos[m]. On return (synchronised) sm.o holds the
// unnormalised sums, sm.run_max / sm.run_sum the softmax max and denominator
// (-inf / 0 for a query vector that saw no key). k_begin must be a multiple of
// kKeyTile, so tiles start at the same positions whatever the caller.
template <typename T>
__device__ void AttendKeyRange(const KvArgs<T>& kv, const int* __restrict__ table, int kv_head, int k_begin,
                               int k_end, const SmemPtrs& sm, const SmemLayout& l, float scale) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int d_len = l.d, n_query = l.m, k_stride = l.k_stride;
  constexpr int kSStride = kKeyTile + 1;
  for (int tile = k_begin; tile < k_end; tile += kKeyTile) {
    // 1. Slot offsets of the tile's keys.
    if (tid < kKeyTile) {
      const int p = tile + tid;
      int64_t off = -1;
      if (p < k_end) {
        const int block = table[p / kv.block_size];
        if (block >= 0 && block < kv.n_blocks)
          off = ((static_cast<int64_t>(block) * kv.n_kv_heads + kv_head) * kv.block_size + p % kv.block_size) *
                static_cast<int64_t>(d_len);
      }
      sm.key_off[tid] = off;
    }
    __syncthreads();

    // 2. K and V tiles in float; masked keys are zeros (so 0 * v stays finite).
    {
      RowColWalker w(d_len);
      for (int idx = tid; idx < kKeyTile * d_len; idx += kThreads, w.Next()) {
        const int64_t off = sm.key_off[w.row];
        float kval = 0.0f, vval = 0.0f;
        if (off >= 0) {
          kval = ToFloat(kv.k[off + w.col]);
          vval = ToFloat(kv.v[off + w.col]);
        }
        sm.k[w.row * k_stride + w.col] = kval;
        sm.v[idx] = vval;
      }
    }
    __syncthreads();

    // 3. Scores: a warp takes one query vector (broadcast reads of q) and 32 keys.
    for (int idx = tid; idx < n_query * kKeyTile; idx += kThreads) {
      const int m = idx / kKeyTile, j = idx % kKeyTile;
      float score = -INFINITY;
      if (sm.key_off[j] >= 0 && tile + j <= sm.q_pos[m]) {
        const float* q = sm.q + m * d_len;
        const float* k = sm.k + j * k_stride;
        float acc = 0.0f;
        for (int d = 0; d < d_len; ++d) acc = fmaf(q[d], k[d], acc);
        score = acc * scale;
      }
      sm.s[m * kSStride + j] = score;
    }
    __syncthreads();

    // 4. Online softmax, one warp per query vector, one lane per key.
    for (int m = warp; m < n_query; m += kWarps) {
      const float score = sm.s[m * kSStride + lane];
      const float old_max = sm.run_max[m];
      const float new_max = fmaxf(old_max, WarpMax(score));
      // new_max == -inf: nothing seen yet; keep the (empty) accumulator as it is.
      const float p = new_max == -INFINITY ? 0.0f : expf(score - new_max);
      sm.s[m * kSStride + lane] = p;
      const float tile_sum = WarpSum(p);
      if (lane == 0) {
        const float rescale = new_max == -INFINITY ? 1.0f : expf(old_max - new_max);
        sm.rescale[m] = rescale;
        sm.run_sum[m] = sm.run_sum[m] * rescale + tile_sum;
        sm.run_max[m] = new_max;
      }
    }
    __syncthreads();

    // 5. O = O * rescale + P . V; consecutive threads take consecutive dims.
    {
      RowColWalker w(d_len);
      for (int idx = tid; idx < n_query * d_len; idx += kThreads, w.Next()) {
        const float* p = sm.s + w.row * kSStride;
        const float* v = sm.v + w.col;
        float acc = sm.o[idx] * sm.rescale[w.row];
        for (int j = 0; j < kKeyTile; ++j) acc = fmaf(p[j], v[j * d_len], acc);
        sm.o[idx] = acc;
      }
    }
    __syncthreads();
  }
}

// Which prefill tile thread block `tile` handles: the prefill entries (more than one
// row) are cut into tiles of rows_per_tile consecutive rows, numbered entry by entry.
// Sets *entry to the tile's entry (-1 when `tile` is past the last tile) and *row0 to
// its first row inside the entry. Both point to shared memory; every thread of the
// block calls this (it synchronises), and warp 0 does the work: an exclusive scan of
// the entries' tile counts, 32 entries at a time.
__device__ __forceinline__ void FindPrefillTile(int tile, int rows_per_tile, const int* __restrict__ entry_n_rows,
                                                int n_entries, int* entry, int* row0) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) *entry = -1;
  __syncthreads();
  if (warp == 0) {
    int base = 0;  // tiles of the entries before e0; the same in every lane
    for (int e0 = 0; e0 < n_entries && base <= tile; e0 += 32) {
      const int e = e0 + lane;
      const int n = e < n_entries ? entry_n_rows[e] : 0;
      const int tiles = n > 1 ? (n + rows_per_tile - 1) / rows_per_tile : 0;
      int inclusive = tiles;
      for (int off = 1; off < 32; off <<= 1) {
        const int before = __shfl_up_sync(0xffffffffu, inclusive, off);
        if (lane >= off) inclusive += before;
      }
      const int begin = base + inclusive - tiles;
      if (tile >= begin && tile < begin + tiles) {
        *entry = e;
        *row0 = (tile - begin) * rows_per_tile;
      }
      base += __shfl_sync(0xffffffffu, inclusive, 31);
    }
  }
  __syncthreads();
}

// Upper bound on the prefill tiles of a step, from host-known sizes only: every prefill
// entry of n rows has ceil(n / rows_per_tile) tiles, at most n / rows_per_tile + 1, and
// there are at most min(n_entries, n_rows - n_entries) prefill entries.
inline int PrefillTileBound(const AttentionBatch& batch, int rows_per_tile) {
  return (batch.n_rows + rows_per_tile - 1) / rows_per_tile + std::min(batch.n_entries, batch.n_rows - batch.n_entries);
}

// Launches the CUDA-core prefill kernel for every entry with more than one row
// (attention_prefill.cu). REQUIRES: arguments passed CheckPagedAttentionArgs,
// batch.n_rows > batch.n_entries.
Status LaunchPrefillAttention(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
                              const MatrixView& out, cudaStream_t stream);

// The same on tensor cores (attention_prefill_mma.cu). REQUIRES: as above, and
// CheckTensorCorePrefill(kv) is OK.
Status LaunchPrefillAttentionMma(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv,
                                 int n_heads, const MatrixView& out, cudaStream_t stream);

// Query vectors (rows x group) per prefill tile: as many whole rows as fit under
// kPrefillQueryVectors and kMaxSmemBytes, at least one. Depends only on the shape.
inline int PrefillRowsPerTile(int group, int head_dim) {
  int rows = kPrefillQueryVectors / group;
  if (rows < 1) rows = 1;
  while (rows > 1 && SmemLayout(rows * group, head_dim).bytes > kMaxSmemBytes) --rows;
  return rows;
}

}  // namespace flover::cuda::attention_internal
