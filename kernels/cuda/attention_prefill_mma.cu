// The tensor-core prefill path of PagedAttention (PrefillKernel::kTensorCores):
// FlashAttention-2 on mma.sync.aligned.m16n8k16 (fp16/bf16 inputs, fp32 accumulators)
// for fp16/bf16 caches with head_dim 64 or 128 (CheckTensorCorePrefill).
//
// Grid (tile bound, n_heads), 128 threads (4 warps). Block (b, h) finds its tile
// t = bound - 1 - b as the CUDA-core kernel does (FindPrefillTile, tiles of
// kTensorCorePrefillRows = 64 rows at fixed offsets inside the entry) and computes
// query head h of those rows, reading kv head h / (n_heads / n_kv_heads):
//   - warp w owns rows 16w .. 16w + 15 of the tile; their query vectors stay in
//     registers for the whole kernel as MMA A fragments, converted from the fp32 qkv
//     buffer to T when loaded (the documented precision choice, attention.h);
//   - the entry's keys 0 .. (tile's last position) stream through shared memory in
//     tiles of kTensorCorePrefillKeys = 64 positions, double-buffered with cp.async:
//     each key's head_dim values are one contiguous run of its block's slot (16-byte
//     copies; a slot whose block id is out of range is zero-filled, never read);
//   - per key tile and warp: S = Q K^T (ldmatrix for K), scale and causal mask, online
//     softmax in fp32 in the log2 domain (each thread keeps its two rows' running max
//     and a partial row sum; the sum is reduced across the row's four threads and O
//     divided by it once, at the end), P rounded to T straight from the S accumulators
//     into A fragments, O += P V (ldmatrix.trans for V);
//   - causality: the block reads only key tiles up to its last row's position; a warp
//     skips a key tile whose first key is after all of its rows, and masks only tiles
//     that reach past its first row (the diagonal).
// No inter-warp reduction: a row lives in one warp from start to end. Every row's
// arithmetic depends only on its entry (tile offsets, key tiles at fixed positions, the
// warp's rows), so results are batch invariant like the CUDA-core kernel's.
//
// Shared memory per stage: K and V tiles [64 keys][head_dim + 8] of T; the 8-element
// (16-byte) row padding puts the 8 rows an ldmatrix phase reads in distinct banks.
// Two stages: 36,864 bytes for head_dim 64, 69,632 for 128.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/check.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda::attention_internal {
namespace {

constexpr int kMmaWarps = kTensorCorePrefillRows / 16;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kKeys = kTensorCorePrefillKeys;
static_assert(kKeys % 16 == 0, "P V takes keys 16 at a time");

template <int D>
struct MmaSmem {
  static constexpr int kStride = D + 8;  // elements per K/V row in shared memory
  static constexpr int kTileElems = kKeys * kStride;
  static constexpr size_t kBytes = 2 /*stages*/ * 2 /*K, V*/ * sizeof(uint16_t) * kTileElems;
  static_assert((kStride * sizeof(uint16_t)) % 16 == 0, "rows must stay 16-byte aligned for cp.async and ldmatrix");
};

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; both addresses 16-byte aligned.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(SharedAddress(smem)),
               "l"(static_cast<uint64_t>(__cvta_generic_to_global(gmem)))
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most one committed group of this thread is still in flight.
__device__ __forceinline__ void CpAsyncWaitAllButOne() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

// Four 8x8 b16 matrices; lanes 8i .. 8i + 7 give the row addresses of matrix i, and
// r[i] receives, in lane l, matrix i's row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1
// (.trans: rows 2 (l % 4) and 2 (l % 4) + 1 of column l / 4).
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(row)));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(row)));
}

// c += a b for one 16x8x16 tile: a the 16x16 A fragment (4 registers of 2 T), b0/b1 the
// 16x8 B fragment, c the 16x8 fp32 accumulator fragment. In lane l (g = l / 4,
// t = l % 4): a = {A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..]},
// b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g], c = {C[g][2t], C[g][2t+1], C[g+8][2t],
// C[g+8][2t+1]}; the lower-indexed element of a pair is in the low 16 bits.
template <typename T>
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void Mma<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void Mma<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to T (to nearest even), `lo` in the low 16 bits.
template <typename T>
__device__ __forceinline__ uint32_t Pack(float lo, float hi);

template <>
__device__ __forceinline__ uint32_t Pack<__half>(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &h, sizeof(u));
  return u;
}

template <>
__device__ __forceinline__ uint32_t Pack<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &h, sizeof(u));
  return u;
}

__device__ __forceinline__ int WarpMaxInt(int x) {
  for (int off = 16; off > 0; off >>= 1) x = max(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}
__device__ __forceinline__ int WarpMinInt(int x) {
  for (int off = 16; off > 0; off >>= 1) x = min(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}
// Reductions over the four lanes that hold one accumulator row (lanes 4g .. 4g + 3).
__device__ __forceinline__ float QuadMax(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float QuadSum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

template <typename T, int D>
__global__ void __launch_bounds__(kMmaThreads)
    PrefillMmaKernel(KvArgs<T> kv, const int* __restrict__ row_pos, const int* __restrict__ entry_first_row,
                     const int* __restrict__ entry_n_rows, const int* __restrict__ entry_table,
                     const int* __restrict__ block_tables, int n_entries, const float* __restrict__ qkv,
                     int64_t qkv_stride, int n_heads, T* __restrict__ out, int64_t out_stride, float scale_log2) {
  using Smem = MmaSmem<D>;
  constexpr int kStride = Smem::kStride;
  __shared__ int tile_entry, tile_row0;
  // Blocks take tiles in reverse order: an entry's last tiles, which read the most
  // keys, start first and the short ones fill the tail (the bound's spare blocks exit).
  FindPrefillTile(static_cast<int>(gridDim.x - 1 - blockIdx.x), kTensorCorePrefillRows, entry_n_rows, n_entries,
                  &tile_entry, &tile_row0);
  const int e = tile_entry;
  if (e < 0) return;

  const int head = blockIdx.y;
  const int kv_head = head / (n_heads / kv.n_kv_heads);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;  // fragment row group and column pair
  const int first_row = entry_first_row[e] + tile_row0;
  const int n_valid = min(kTensorCorePrefillRows, entry_n_rows[e] - tile_row0);
  const int* __restrict__ table = block_tables + entry_table[e];
  // Keys 0 .. the tile's last position (rows have increasing positions).
  const int k_end = row_pos[first_row + n_valid - 1] + 1;

  // This thread's two rows of the tile: fragment rows g and g + 8 of its warp. Padding
  // rows (past the entry) have a zero query and position -1; they are computed along
  // and never stored, and the warp's position range ignores them.
  const int r_lo = warp * 16 + g, r_hi = r_lo + 8;
  const bool valid_lo = r_lo < n_valid, valid_hi = r_hi < n_valid;
  const int pos_lo = valid_lo ? row_pos[first_row + r_lo] : -1;
  const int pos_hi = valid_hi ? row_pos[first_row + r_hi] : -1;
  // The warp's position range over its valid rows (max -1 / min INT_MAX when none).
  const int warp_max_pos = WarpMaxInt(max(pos_lo, pos_hi));
  const int warp_min_pos = WarpMinInt(min(valid_lo ? pos_lo : INT32_MAX, valid_hi ? pos_hi : INT32_MAX));

  // Q as A fragments, one per 16 dims: q[kk] covers dims 16 kk .. 16 kk + 15.
  uint32_t q[D / 16][4];
  {
    const float* q_lo = qkv + static_cast<int64_t>(first_row + r_lo) * qkv_stride + static_cast<int64_t>(head) * D;
    const float* q_hi = qkv + static_cast<int64_t>(first_row + r_hi) * qkv_stride + static_cast<int64_t>(head) * D;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c = 16 * kk + 2 * t4;
      q[kk][0] = valid_lo ? Pack<T>(q_lo[c], q_lo[c + 1]) : 0u;
      q[kk][1] = valid_hi ? Pack<T>(q_hi[c], q_hi[c + 1]) : 0u;
      q[kk][2] = valid_lo ? Pack<T>(q_lo[c + 8], q_lo[c + 9]) : 0u;
      q[kk][3] = valid_hi ? Pack<T>(q_hi[c + 8], q_hi[c + 9]) : 0u;
    }
  }

  // O accumulators: o[j] covers dims 8 j .. 8 j + 7 of rows g (o[j][0..1]) and g + 8
  // (o[j][2..3]). Running max (log2 domain) and this thread's partial sum per row.
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};

  extern __shared__ __align__(16) unsigned char smem_bytes[];
  T* const smem = reinterpret_cast<T*>(smem_bytes);

  // Stage `stage` <- the K/V slots of positions kt .. kt + kKeys - 1. A thread copies
  // 16-byte chunk `chunk` of keys key0, key0 + kKeysPerPass, ...
  auto load_tile = [&](int kt, int stage) {
    constexpr int kChunksPerKey = D / 8;
    constexpr int kKeysPerPass = kMmaThreads / kChunksPerKey;
    static_assert(kMmaThreads % kChunksPerKey == 0 && kKeys % kKeysPerPass == 0, "whole keys per pass");
    T* const k_dst = smem + stage * 2 * Smem::kTileElems;
    T* const v_dst = k_dst + Smem::kTileElems;
    const int chunk = static_cast<int>(threadIdx.x) % kChunksPerKey;
    const int key0 = static_cast<int>(threadIdx.x) / kChunksPerKey;
#pragma unroll
    for (int i = 0; i < kKeys / kKeysPerPass; ++i) {
      const int key = key0 + i * kKeysPerPass;
      const int p = kt + key;
      int64_t off = -1;
      if (p < k_end) {
        const int block = table[p / kv.block_size];
        if (block >= 0 && block < kv.n_blocks)
          off = ((static_cast<int64_t>(block) * kv.n_kv_heads + kv_head) * kv.block_size + p % kv.block_size) * D;
      }
      T* const kd = k_dst + key * kStride + chunk * 8;
      T* const vd = v_dst + key * kStride + chunk * 8;
      if (off >= 0) {
        CpAsync16(kd, kv.k + off + chunk * 8);
        CpAsync16(vd, kv.v + off + chunk * 8);
      } else {  // past the range (masked) or a bad block id: zeros keep 0 * v finite
        *reinterpret_cast<uint4*>(kd) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(vd) = make_uint4(0, 0, 0, 0);
      }
    }
  };

  const int n_key_tiles = (k_end + kKeys - 1) / kKeys;
  load_tile(0, 0);
  CpAsyncCommit();
  for (int tile = 0; tile < n_key_tiles; ++tile) {
    // Prefetch the next tile into the other stage (freed by the previous iteration's
    // trailing barrier), then wait for this one. The group is committed even when
    // empty, so "all but one" is always this tile.
    if (tile + 1 < n_key_tiles) load_tile((tile + 1) * kKeys, (tile + 1) & 1);
    CpAsyncCommit();
    CpAsyncWaitAllButOne();
    __syncthreads();

    const int kt = tile * kKeys;
    if (kt <= warp_max_pos) {  // warp-uniform: some row of the warp sees a key here
      const T* const ks = smem + (tile & 1) * 2 * Smem::kTileElems;
      const T* const vs = ks + Smem::kTileElems;

      // S = Q K^T: s[j] is keys kt + 8 j .. kt + 8 j + 7. B = K^T, so B's column n is
      // key n's row in shared memory: ldmatrix (no transpose) of 8 keys x 8 dims gives
      // b0 / b1. One x4 load covers 32 dims (k-steps kk and kk + 1) of 8 keys.
      float s[kKeys / 8][4];
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < D / 16; kk += 2) {
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j) {
          uint32_t b[4];
          LdMatrixX4(b, ks + (8 * j + (lane & 7)) * kStride + 16 * kk + 8 * (lane >> 3));
          Mma<T>(s[j], q[kk], b[0], b[1]);
          Mma<T>(s[j], q[kk + 1], b[2], b[3]);
        }
      }

      // Scale to the log2 domain; mask keys after the row's position, only where a
      // key of the tile can be after the warp's first row.
      const bool diagonal = kt + kKeys - 1 > warp_min_pos;
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          float x = s[j][i] * scale_log2;
          if (diagonal && kt + 8 * j + 2 * t4 + (i & 1) > (i < 2 ? pos_lo : pos_hi)) x = -INFINITY;
          s[j][i] = x;
          tile_max[i >> 1] = fmaxf(tile_max[i >> 1], x);
        }
      }
      // New running max; base is what exponents are taken against (0 while a row has
      // seen no key, so exp2(-inf - base) = 0 and no inf - inf arises).
      float base[2], alpha[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float new_max = fmaxf(row_max[h], QuadMax(tile_max[h]));
        base[h] = new_max == -INFINITY ? 0.0f : new_max;
        alpha[h] = exp2f(row_max[h] - base[h]);  // 0 on the first key seen, 1 if unchanged
        row_max[h] = new_max;
      }
      float tile_sum[2] = {0.0f, 0.0f};
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float p = exp2f(s[j][i] - base[i >> 1]);
          s[j][i] = p;
          tile_sum[i >> 1] += p;
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) row_sum[h] = row_sum[h] * alpha[h] + tile_sum[h];
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        o[j][0] *= alpha[0];
        o[j][1] *= alpha[0];
        o[j][2] *= alpha[1];
        o[j][3] *= alpha[1];
      }

      // O += P V, 16 keys per k-step. P's A fragment is the S accumulators of key
      // groups 2 kk and 2 kk + 1 (same rows and column pairs). B = V (keys x dims),
      // stored key-major, so ldmatrix.trans: matrices (keys +0..7, dims 8 j), (+8..15,
      // 8 j), (+0..7, 8 j + 8), (+8..15, 8 j + 8) are b0 / b1 of dim tiles j and j + 1.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const uint32_t a[4] = {Pack<T>(s[2 * kk][0], s[2 * kk][1]), Pack<T>(s[2 * kk][2], s[2 * kk][3]),
                               Pack<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                               Pack<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
        const int m = lane >> 3;
#pragma unroll
        for (int j = 0; j < D / 8; j += 2) {
          uint32_t b[4];
          LdMatrixX4Trans(b, vs + (16 * kk + (lane & 7) + 8 * (m & 1)) * kStride + 8 * j + 8 * (m >> 1));
          Mma<T>(o[j], a, b[0], b[1]);
          Mma<T>(o[j + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  // Normalise once and store, as the CUDA-core path does: FromFloat(o / l).
  const float sum_lo = QuadSum(row_sum[0]), sum_hi = QuadSum(row_sum[1]);
  T* const out_lo = out + static_cast<int64_t>(first_row + r_lo) * out_stride + static_cast<int64_t>(head) * D;
  T* const out_hi = out + static_cast<int64_t>(first_row + r_hi) * out_stride + static_cast<int64_t>(head) * D;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    const int c = 8 * j + 2 * t4;
    if (valid_lo) {
      out_lo[c] = FromFloat<T>(o[j][0] / sum_lo);
      out_lo[c + 1] = FromFloat<T>(o[j][1] / sum_lo);
    }
    if (valid_hi) {
      out_hi[c] = FromFloat<T>(o[j][2] / sum_hi);
      out_hi[c + 1] = FromFloat<T>(o[j][3] / sum_hi);
    }
  }
}

template <typename T, int D>
Status Launch(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
              const MatrixView& out, cudaStream_t stream) {
  constexpr size_t kSmem = MmaSmem<D>::kBytes;
  if constexpr (kSmem > 48 * 1024) {
    FLOVER_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        PrefillMmaKernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem)));
  }
  const KvArgs<T> args{static_cast<T*>(kv.k), static_cast<T*>(kv.v), kv.n_blocks, kv.block_size, kv.n_kv_heads,
                       kv.head_dim};
  const float scale_log2 = 1.4426950408889634f / sqrtf(static_cast<float>(D));  // log2(e) / sqrt(D)
  const dim3 grid(static_cast<unsigned>(PrefillTileBound(batch, kTensorCorePrefillRows)),
                  static_cast<unsigned>(n_heads));
  PrefillMmaKernel<T, D><<<grid, kMmaThreads, kSmem, stream>>>(
      args, batch.row_pos, batch.entry_first_row, batch.entry_n_rows, batch.entry_table, batch.block_tables,
      batch.n_entries, qkv.as<const float>(), qkv.stride, n_heads, out.as<T>(), out.stride, scale_log2);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

template <typename T>
Status LaunchForHeadDim(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
                        const MatrixView& out, cudaStream_t stream) {
  return kv.head_dim == 64 ? Launch<T, 64>(kv, batch, qkv, n_heads, out, stream)
                           : Launch<T, 128>(kv, batch, qkv, n_heads, out, stream);
}

}  // namespace

Status LaunchPrefillAttentionMma(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv,
                                 int n_heads, const MatrixView& out, cudaStream_t stream) {
  FLOVER_CHECK(CheckTensorCorePrefill(kv).ok());
  return kv.dtype == DType::kF16 ? LaunchForHeadDim<__half>(kv, batch, qkv, n_heads, out, stream)
                                 : LaunchForHeadDim<__nv_bfloat16>(kv, batch, qkv, n_heads, out, stream);
}

}  // namespace flover::cuda::attention_internal
