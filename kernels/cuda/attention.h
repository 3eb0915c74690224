// Paged attention on the CUDA backend, for every request of a fused step at once:
// decode tokens and prefill chunks, grouped-query heads, over the paged KV cache.
// The CPU reference is kernels/cpu/attention.h; the semantics are the same (causal,
// scores scaled by 1/sqrt(head_dim), softmax over positions 0..own position), computed
// in float with an online softmax, so parity with the CPU is by tolerance.
//
// KV layout of one layer (PagedKvView), identical to the CPU's but stored in `dtype`:
//   k, v: [n_blocks, n_kv_heads, block_size, head_dim]
// Token at position p of an entry lives in block block_tables[entry_table[e] + p /
// block_size], slot p % block_size.
//
// A step has n_rows query rows belonging to n_entries entries (requests). An entry is a
// contiguous run of rows at consecutive positions: one decode token or a prefill chunk.
// Q/K/V come from the fp32 QKV GEMM with RoPE applied, one row per token:
//   qkv: fp32 [n_rows, (n_heads + 2 * n_kv_heads) * head_dim], row = [q | k | v],
//        heads contiguous inside each part.
// Query head h reads kv head h / (n_heads / n_kv_heads).
//
// Per layer and step: WriteKv (one launch), then PagedAttention (at most three
// launches, whatever the number of entries: decode + split combine + prefill). Nothing
// is allocated; the split-K partials go to a caller-owned workspace.
//
// Prefill kernels (AttentionOptions::prefill): kCudaCores computes everything in fp32
// on CUDA cores, for every dtype and head_dim. kTensorCores (FlashAttention-2 on
// mma.sync m16n8k16, fp32 accumulators) runs fp16/bf16 caches with head_dim 64 or 128
// (CheckTensorCorePrefill) and falls back to kCudaCores for anything else. Its
// documented precision choice: the fp32 query is rounded to the storage dtype when it
// is loaded into the MMA fragments, and so are the softmax probabilities P before
// P . V (both products accumulate in fp32; the softmax max, sum and exponentials are
// fp32). So its scores differ from the CUDA-core path's by the query's rounding (about
// 2^-11 relative for fp16, 2^-8 for bf16) and the outputs agree within tolerance, not
// bit for bit. (A query element beyond fp16's range, |q| > 65504, would become inf in
// an fp16 layer; the cache already holds K and V in that type.)
//
// Determinism: a row's output depends only on its own entry (its rows, positions and
// cached K/V), never on the other entries of the step or on max_context: decode splits
// start at fixed multiples of kDecodePartitionTokens and prefill tiles at fixed row
// offsets inside the entry. So the batch-invariance contract of DESIGN.md holds for
// attention bit for bit (a decode row and the same token inside a prefill chunk take
// different paths and agree only within tolerance). This holds for both prefill
// kernels: which one runs depends on the layer and the options, never on the step.
//
// Thread-safety: the launchers are reentrant; they only enqueue work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

// One layer of the paged KV cache on the device.
struct PagedKvView {
  void* k = nullptr;  // [n_blocks, n_kv_heads, block_size, head_dim] of dtype
  void* v = nullptr;  // same shape as k
  DType dtype = DType::kF32;
  int n_blocks = 0;
  int block_size = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// The rows and entries of one step, as device int32 arrays the caller builds once per
// step (shared by all layers). REQUIRES (not checkable on the host, so not checked):
//   - entry e owns rows entry_first_row[e] .. entry_first_row[e] + entry_n_rows[e] - 1,
//     entry_n_rows[e] >= 1, entries do not overlap, and row_entry[r] == e for them;
//   - an entry's rows have consecutive positions row_pos (increasing), and
//     row_pos[r] < max_context for every row;
//   - an entry's block table covers positions 0 .. its last row's position, and every
//     block id in it is < n_blocks (an out-of-range id is neither read nor written, but
//     the rows that need it get unspecified values).
// Entries with one row run on the decode path, entries with more on the prefill path.
// Padding (a decode step padded to a fixed size, cuda_decoder.h): a row with row_entry
// -1 writes no K/V, and an entry with entry_n_rows 0 (when n_rows == n_entries, so no
// prefill launch) is skipped by the decode kernels and writes no output.
struct AttentionBatch {
  const int* row_entry = nullptr;        // [n_rows] entry of each row (WriteKv)
  const int* row_pos = nullptr;          // [n_rows] position of each row
  const int* entry_first_row = nullptr;  // [n_entries] (PagedAttention)
  const int* entry_n_rows = nullptr;     // [n_entries] (PagedAttention)
  const int* entry_table = nullptr;      // [n_entries] offset of the entry's table in block_tables
  const int* block_tables = nullptr;     // all entries' block tables, concatenated
  int n_rows = 0;
  int n_entries = 0;
  int max_context = 0;  // > every row_pos; sizes the decode splits (host-known bound)
};

// Decode rows attend in splits of this many key positions ([0, P), [P, 2P), ...), each
// split one thread block, combined afterwards. Fixed, so results never depend on the
// step's other entries.
inline constexpr int kDecodePartitionTokens = 256;
// Largest max_context PagedAttention accepts (bounds the splits per row).
inline constexpr int kMaxAttentionContext = 1 << 21;

// The kernel that runs PagedAttention's prefill entries (entries with more than one row).
enum class PrefillKernel : uint8_t {
  kCudaCores,    // fp32 arithmetic on CUDA cores, any dtype and head_dim (verified on an H200)
  kTensorCores,  // FlashAttention-2 on tensor cores where CheckTensorCorePrefill allows it,
                 // kCudaCores elsewhere (compiled; awaits its first GPU run)
};

struct AttentionOptions {
  // The CUDA-core path stays the default until scripts/gpu-check.sh has verified the
  // tensor-core one on a GPU; then flip it here (every caller takes the default).
  PrefillKernel prefill = PrefillKernel::kCudaCores;
};

// Tensor-core prefill tiles: 64 query rows of one (entry, query head) per thread block
// (4 warps x 16 rows), K/V streamed in tiles of 64 positions.
inline constexpr int kTensorCorePrefillRows = 64;
inline constexpr int kTensorCorePrefillKeys = 64;

// OK when the tensor-core prefill kernel can run this layer: kv.dtype fp16 or bf16,
// kv.head_dim 64 or 128, kv.k and kv.v 16-byte aligned. Otherwise InvalidArgument saying
// why (PagedAttention then runs the CUDA-core kernel instead). Never touches the device.
Status CheckTensorCorePrefill(const PagedKvView& kv);

// The kernel PagedAttention runs for prefill entries of this layer under `options`.
PrefillKernel SelectPrefillKernel(const PagedKvView& kv, const AttentionOptions& options);

// Bytes of workspace PagedAttention needs for a step of up to `n_entries` entries with
// positions < `max_context`: 0 when max_context <= kDecodePartitionTokens, else
// n_entries * n_heads * ceil(max_context / kDecodePartitionTokens) * (head_dim + 2)
// floats. Monotone in every argument: allocate once with the largest values (e.g.
// max running requests, local heads, head_dim, max_seq_len) and pass it every step.
size_t AttentionWorkspaceBytes(int n_entries, int n_heads, int head_dim, int max_context);

// The argument checks of WriteKv / PagedAttention, exposed so that a caller can
// validate a configuration once (and tests can check them without a GPU). OK or
// InvalidArgument naming the operand; they never touch the device.
Status CheckWriteKvArgs(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads);
Status CheckPagedAttentionArgs(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
                               const MatrixView& out, const void* workspace, size_t workspace_bytes);

// Stores the K and V parts of every row of `qkv` into the row's slot (rounded to
// kv.dtype), as cpu::WriteKv does per entry. Uses row_entry, row_pos, entry_table,
// block_tables. Must run before PagedAttention reads those slots (same stream).
Status WriteKv(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
               cudaStream_t stream);

// out[r, h * head_dim + d] = attention of query head h of row r over positions
// 0..row_pos[r] of its entry, stored as kv.dtype (out: [n_rows, n_heads * head_dim],
// any row stride >= cols; padding columns are not written). Uses row_pos,
// entry_first_row, entry_n_rows, entry_table, block_tables.
// workspace: device memory of at least AttentionWorkspaceBytes(batch.n_entries, n_heads,
// kv.head_dim, batch.max_context) bytes, 4-byte aligned (may be null when that is 0);
// it is scratch, overwritten by every call, so one call at a time per workspace.
// Returns InvalidArgument, before touching the device, for any inconsistent argument.
// options.prefill picks the prefill entries' kernel (SelectPrefillKernel); decode rows
// always take the FlashDecoding path.
Status PagedAttention(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
                      const MatrixView& out, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                      const AttentionOptions& options = {});

}  // namespace flover::cuda
