// The prefill path of PagedAttention: FlashAttention-2-style tiles for entries with
// more than one row (prefill chunks), causal over the entry's cached keys.
//
// Grid (tile bound, n_kv_heads), kThreads threads. An entry with n rows is cut into
// ceil(n / R) tiles of R consecutive rows (R = PrefillRowsPerTile: R x G <= 64 query
// vectors, G = n_heads / n_kv_heads). Block (t, kvh) finds its tile t by a warp scan
// over the entries' tile counts (blocks past the last tile exit), stages the tile's
// R x G query vectors of kv head kvh in shared memory and streams the entry's keys
// 0 .. (largest position in the tile) through shared memory in tiles of kKeyTile
// (AttendKeyRange, attention_common.cuh), masking keys after each row's position.
// The grid's x size (PrefillTileBound) bounds the number of tiles without reading the
// device arrays on the host; the tensor-core kernel (attention_prefill_mma.cu) finds
// its tiles the same way (FindPrefillTile).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda::attention_internal {
namespace {

template <typename T>
__global__ void __launch_bounds__(kThreads)
    PrefillCudaCoreKernel(KvArgs<T> kv, const int* __restrict__ row_pos, const int* __restrict__ entry_first_row,
                  const int* __restrict__ entry_n_rows, const int* __restrict__ entry_table,
                  const int* __restrict__ block_tables, int n_entries, const float* __restrict__ qkv,
                  int64_t qkv_stride, int n_heads, T* __restrict__ out, int64_t out_stride, int rows_per_tile,
                  float scale) {
  __shared__ int tile_entry, tile_row0, tile_k_end;
  const int tile = blockIdx.x, kv_head = blockIdx.y;
  FindPrefillTile(tile, rows_per_tile, entry_n_rows, n_entries, &tile_entry, &tile_row0);
  const int e = tile_entry;
  if (e < 0) return;

  const int group = n_heads / kv.n_kv_heads, d_len = kv.head_dim;
  const int first_row = entry_first_row[e] + tile_row0;
  const int n_valid = min(rows_per_tile, entry_n_rows[e] - tile_row0);
  const SmemLayout layout(rows_per_tile * group, d_len);
  extern __shared__ __align__(16) unsigned char smem[];
  const SmemPtrs sm(smem, layout);

  // Query vector m = r * group + g is head kv_head * group + g of row first_row + r;
  // a row's group heads are contiguous, so consecutive threads read consecutive floats.
  {
    RowColWalker w(d_len);
    for (int idx = threadIdx.x; idx < layout.m * d_len; idx += kThreads, w.Next()) {
      const int r = w.row / group, g = w.row - r * group;
      sm.q[idx] = r < n_valid ? qkv[static_cast<int64_t>(first_row + r) * qkv_stride +
                                    static_cast<int64_t>(kv_head * group + g) * d_len + w.col]
                              : 0.0f;
    }
  }
  for (int m = threadIdx.x; m < layout.m; m += kThreads) {
    const int r = m / group;
    sm.q_pos[m] = r < n_valid ? row_pos[first_row + r] : -1;
  }
  if (threadIdx.x == 0) {
    int last = -1;
    for (int r = 0; r < n_valid; ++r) last = max(last, row_pos[first_row + r]);
    tile_k_end = last + 1;
  }
  ResetAccumulators(sm, layout);
  __syncthreads();

  AttendKeyRange(kv, block_tables + entry_table[e], kv_head, 0, tile_k_end, sm, layout, scale);

  RowColWalker w(d_len);
  for (int idx = threadIdx.x; idx < layout.m * d_len; idx += kThreads, w.Next()) {
    const int r = w.row / group, g = w.row - r * group;
    if (r >= n_valid) continue;
    out[static_cast<int64_t>(first_row + r) * out_stride + static_cast<int64_t>(kv_head * group + g) * d_len + w.col] =
        FromFloat<T>(sm.o[idx] / sm.run_sum[w.row]);
  }
}

}  // namespace

Status LaunchPrefillAttention(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
                              const MatrixView& out, cudaStream_t stream) {
  const int group = n_heads / kv.n_kv_heads;
  const int rows_per_tile = PrefillRowsPerTile(group, kv.head_dim);
  const size_t smem = SmemLayout(rows_per_tile * group, kv.head_dim).bytes;
  const int max_tiles = PrefillTileBound(batch, rows_per_tile);
  const float scale = 1.0f / sqrtf(static_cast<float>(kv.head_dim));
  cudaError_t attr = cudaSuccess;
  FLOVER_DISPATCH_DTYPE(kv.dtype, [&]<typename T>() {
    if (smem > 48 * 1024) {
      attr = cudaFuncSetAttribute(PrefillCudaCoreKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem));
      if (attr != cudaSuccess) return;
    }
    const KvArgs<T> args{static_cast<T*>(kv.k), static_cast<T*>(kv.v), kv.n_blocks, kv.block_size, kv.n_kv_heads,
                         kv.head_dim};
    const dim3 grid(static_cast<unsigned>(max_tiles), static_cast<unsigned>(kv.n_kv_heads));
    PrefillCudaCoreKernel<T><<<grid, kThreads, smem, stream>>>(
        args, batch.row_pos, batch.entry_first_row, batch.entry_n_rows, batch.entry_table, batch.block_tables,
        batch.n_entries, qkv.as<const float>(), qkv.stride, n_heads, out.as<T>(), out.stride, rows_per_tile, scale);
  });
  FLOVER_CUDA_RETURN_IF_ERROR(attr);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda::attention_internal
