// WriteKv, the argument checks, PagedAttention's dispatch (decode here, then the
// prefill kernel SelectPrefillKernel picks), and the decode path:
// FlashDecoding-style split-K over fixed key partitions plus a combine kernel.
//
// Decode kernel: grid (n_entries, n_kv_heads, n_splits), kThreads threads. Block
// (e, kvh, s) handles entry e if it has one row: the G query heads of kv head kvh
// against keys [s * P, min((s + 1) * P, pos + 1)), P = kDecodePartitionTokens (so the
// K/V tiles are read once for the whole group). Blocks of prefill entries, and splits
// past the row's context, exit at once. With one split per row (max_context <= P) it
// writes the output directly; otherwise it writes the split's unnormalised output,
// max and sum to the workspace and the combine kernel (grid (n_entries, n_heads))
// merges the splits a row used:
//   out = sum_s exp(m_s - M) o_s / sum_s exp(m_s - M) l_s,  M = max_s m_s.
// A row that used one split is finished as o / l, the same operations as the direct
// path, so its output does not depend on the other rows' contexts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"

namespace flover::cuda {
namespace {

using attention_internal::AttendKeyRange;
using attention_internal::KvArgs;
using attention_internal::kMaxSmemBytes;
using attention_internal::kThreads;
using attention_internal::ResetAccumulators;
using attention_internal::SmemLayout;
using attention_internal::SmemPtrs;

constexpr int kWriteThreads = 128;
constexpr int kMaxGridYZ = 65535;

int DecodeSplits(int max_context) { return (max_context + kDecodePartitionTokens - 1) / kDecodePartitionTokens; }

// Where the split partials live in the workspace, for n_entries x n_heads x n_splits.
struct Partials {
  float* o;    // [n_entries, n_heads, n_splits, head_dim]
  float* max;  // [n_entries, n_heads, n_splits]
  float* sum;  // [n_entries, n_heads, n_splits]
};

Partials SplitPartials(void* workspace, int n_entries, int n_heads, int head_dim, int n_splits) {
  if (workspace == nullptr) return Partials{nullptr, nullptr, nullptr};  // one split: unused
  const size_t n = static_cast<size_t>(n_entries) * n_heads * n_splits;
  float* base = static_cast<float*>(workspace);
  return Partials{base, base + n * head_dim, base + n * head_dim + n};
}

template <typename T>
__global__ void __launch_bounds__(kWriteThreads)
    WriteKvKernel(KvArgs<T> kv, const int* __restrict__ row_entry, const int* __restrict__ row_pos,
                  const int* __restrict__ entry_table, const int* __restrict__ block_tables, int n_entries,
                  const float* __restrict__ qkv, int64_t qkv_stride, int q_dim) {
  const int row = blockIdx.x;
  const int kv_dim = kv.n_kv_heads * kv.head_dim;
  const int i = blockIdx.y * kWriteThreads + threadIdx.x;
  if (i >= kv_dim) return;
  const int e = row_entry[row], pos = row_pos[row];
  if (e < 0 || e >= n_entries || pos < 0) return;
  const int block = block_tables[entry_table[e] + pos / kv.block_size];
  if (block < 0 || block >= kv.n_blocks) return;
  const int head = i / kv.head_dim, d = i - head * kv.head_dim;
  const int64_t dst =
      ((static_cast<int64_t>(block) * kv.n_kv_heads + head) * kv.block_size + pos % kv.block_size) * kv.head_dim + d;
  const float* src = qkv + static_cast<int64_t>(row) * qkv_stride + q_dim + i;
  kv.k[dst] = FromFloat<T>(src[0]);
  kv.v[dst] = FromFloat<T>(src[kv_dim]);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    DecodeKernel(KvArgs<T> kv, const int* __restrict__ row_pos, const int* __restrict__ entry_first_row,
                 const int* __restrict__ entry_n_rows, const int* __restrict__ entry_table,
                 const int* __restrict__ block_tables, const float* __restrict__ qkv, int64_t qkv_stride, int n_heads,
                 T* __restrict__ out, int64_t out_stride, Partials partials, int n_splits, float scale) {
  const int e = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z;
  if (entry_n_rows[e] != 1) return;
  const int row = entry_first_row[e];
  const int pos = row_pos[row];
  const int k_begin = split * kDecodePartitionTokens;
  if (pos < 0 || k_begin > pos) return;
  const int k_end = min(pos + 1, k_begin + kDecodePartitionTokens);

  const int group = n_heads / kv.n_kv_heads, d_len = kv.head_dim;
  const SmemLayout layout(group, d_len);
  extern __shared__ __align__(16) unsigned char smem[];
  const SmemPtrs sm(smem, layout);
  // The group's query heads are contiguous in the row: one coalesced run.
  const float* q = qkv + static_cast<int64_t>(row) * qkv_stride + static_cast<int64_t>(kv_head) * group * d_len;
  for (int i = threadIdx.x; i < group * d_len; i += kThreads) sm.q[i] = q[i];
  for (int i = threadIdx.x; i < group; i += kThreads) sm.q_pos[i] = pos;
  ResetAccumulators(sm, layout);
  __syncthreads();

  AttendKeyRange(kv, block_tables + entry_table[e], kv_head, k_begin, k_end, sm, layout, scale);

  const int first_head = kv_head * group;
  if (n_splits == 1) {
    T* dst = out + static_cast<int64_t>(row) * out_stride + static_cast<int64_t>(first_head) * d_len;
    for (int i = threadIdx.x; i < group * d_len; i += kThreads) dst[i] = FromFloat<T>(sm.o[i] / sm.run_sum[i / d_len]);
    return;
  }
  const size_t first = (static_cast<size_t>(e) * n_heads + first_head) * n_splits + split;  // (e, first_head, split)
  for (int i = threadIdx.x; i < group * d_len; i += kThreads) {
    const int g = i / d_len, d = i - g * d_len;
    partials.o[(first + static_cast<size_t>(g) * n_splits) * d_len + d] = sm.o[i];
  }
  for (int g = threadIdx.x; g < group; g += kThreads) {
    partials.max[first + static_cast<size_t>(g) * n_splits] = sm.run_max[g];
    partials.sum[first + static_cast<size_t>(g) * n_splits] = sm.run_sum[g];
  }
}

// Grid (n_entries, n_heads); dynamic shared memory: n_splits floats (split weights).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    CombineKernel(const int* __restrict__ row_pos, const int* __restrict__ entry_first_row,
                  const int* __restrict__ entry_n_rows, Partials partials, int n_heads, int n_splits, int head_dim,
                  T* __restrict__ out, int64_t out_stride) {
  const int e = blockIdx.x, head = blockIdx.y;
  if (entry_n_rows[e] != 1) return;
  const int row = entry_first_row[e];
  const int pos = row_pos[row];
  if (pos < 0) return;
  const int n_used = min(pos / kDecodePartitionTokens + 1, n_splits);
  const size_t first = (static_cast<size_t>(e) * n_heads + head) * n_splits;
  T* dst = out + static_cast<int64_t>(row) * out_stride + static_cast<int64_t>(head) * head_dim;
  const float* o = partials.o + first * head_dim;
  if (n_used == 1) {  // exactly the direct path's o / l
    const float sum = partials.sum[first];
    for (int d = threadIdx.x; d < head_dim; d += kThreads) dst[d] = FromFloat<T>(o[d] / sum);
    return;
  }
  extern __shared__ float weight[];  // [n_used]
  float max = -INFINITY;
  for (int s = 0; s < n_used; ++s) max = fmaxf(max, partials.max[first + s]);
  for (int s = threadIdx.x; s < n_used; s += kThreads) weight[s] = expf(partials.max[first + s] - max);
  __syncthreads();
  float denom = 0.0f;
  for (int s = 0; s < n_used; ++s) denom = fmaf(weight[s], partials.sum[first + s], denom);
  for (int d = threadIdx.x; d < head_dim; d += kThreads) {
    float acc = 0.0f;
    for (int s = 0; s < n_used; ++s) acc = fmaf(weight[s], o[static_cast<size_t>(s) * head_dim + d], acc);
    dst[d] = FromFloat<T>(acc / denom);
  }
}

std::string Str(long long v) { return std::to_string(v); }

Status CheckKvView(const PagedKvView& kv, const char* op) {
  const std::string p = std::string(op) + ": ";
  if (kv.n_blocks <= 0 || kv.block_size <= 0 || kv.n_kv_heads <= 0 || kv.head_dim <= 0)
    return InvalidArgument(p + "KV cache has n_blocks " + Str(kv.n_blocks) + ", block_size " + Str(kv.block_size) +
                           ", n_kv_heads " + Str(kv.n_kv_heads) + ", head_dim " + Str(kv.head_dim) +
                           "; all must be positive");
  if (kv.k == nullptr || kv.v == nullptr) return InvalidArgument(p + "KV cache k or v is null");
  const long long kv_dim = static_cast<long long>(kv.n_kv_heads) * kv.head_dim;
  if (kv.n_kv_heads > kMaxGridYZ || kv_dim > INT32_MAX / 4)
    return InvalidArgument(p + "n_kv_heads " + Str(kv.n_kv_heads) + " x head_dim " + Str(kv.head_dim) +
                           " is too large");
  return Status::Ok();
}

Status CheckHeads(const PagedKvView& kv, int n_heads, const char* op) {
  const std::string p = std::string(op) + ": ";
  if (n_heads <= 0 || n_heads % kv.n_kv_heads != 0)
    return InvalidArgument(p + "n_heads " + Str(n_heads) + " is not a positive multiple of n_kv_heads " +
                           Str(kv.n_kv_heads));
  if (n_heads > kMaxGridYZ || static_cast<long long>(n_heads) * kv.head_dim > INT32_MAX / 4)
    return InvalidArgument(p + "n_heads " + Str(n_heads) + " is too large");
  return Status::Ok();
}

Status CheckBatchShape(const AttentionBatch& b, const char* op) {
  const std::string p = std::string(op) + ": ";
  if (b.n_rows < 0 || b.n_entries < 0 || (b.n_rows > 0 && (b.n_entries < 1 || b.n_entries > b.n_rows)))
    return InvalidArgument(p + "batch has " + Str(b.n_rows) + " rows and " + Str(b.n_entries) +
                           " entries; every entry needs at least one row");
  return Status::Ok();
}

Status CheckQkv(const PagedKvView& kv, const AttentionBatch& b, const MatrixView& qkv, int n_heads, const char* op) {
  return CheckMatrix(qkv, DType::kF32, b.n_rows, (n_heads + 2 * kv.n_kv_heads) * kv.head_dim, op, "qkv");
}

}  // namespace

size_t AttentionWorkspaceBytes(int n_entries, int n_heads, int head_dim, int max_context) {
  if (n_entries <= 0 || n_heads <= 0 || head_dim <= 0 || max_context <= kDecodePartitionTokens) return 0;
  return sizeof(float) * static_cast<size_t>(n_entries) * n_heads * DecodeSplits(max_context) * (head_dim + 2);
}

Status CheckWriteKvArgs(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads) {
  constexpr const char* kOp = "WriteKv";
  FLOVER_RETURN_IF_ERROR(CheckKvView(kv, kOp));
  FLOVER_RETURN_IF_ERROR(CheckHeads(kv, n_heads, kOp));
  FLOVER_RETURN_IF_ERROR(CheckBatchShape(batch, kOp));
  FLOVER_RETURN_IF_ERROR(CheckQkv(kv, batch, qkv, n_heads, kOp));
  if (batch.n_rows > 0 && (batch.row_entry == nullptr || batch.row_pos == nullptr || batch.entry_table == nullptr ||
                           batch.block_tables == nullptr))
    return InvalidArgument("WriteKv: batch row_entry, row_pos, entry_table and block_tables must not be null");
  return Status::Ok();
}

Status CheckPagedAttentionArgs(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
                               const MatrixView& out, const void* workspace, size_t workspace_bytes) {
  constexpr const char* kOp = "PagedAttention";
  FLOVER_RETURN_IF_ERROR(CheckKvView(kv, kOp));
  FLOVER_RETURN_IF_ERROR(CheckHeads(kv, n_heads, kOp));
  FLOVER_RETURN_IF_ERROR(CheckBatchShape(batch, kOp));
  FLOVER_RETURN_IF_ERROR(CheckQkv(kv, batch, qkv, n_heads, kOp));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, kv.dtype, batch.n_rows, n_heads * kv.head_dim, kOp, "out"));
  const size_t smem = SmemLayout(n_heads / kv.n_kv_heads, kv.head_dim).bytes;
  if (smem > kMaxSmemBytes)
    return InvalidArgument(std::string(kOp) + ": " + Str(n_heads / kv.n_kv_heads) + " query heads per kv head x head_dim " +
                           Str(kv.head_dim) + " need " + Str(static_cast<long long>(smem)) +
                           " bytes of shared memory per block; the limit is " +
                           Str(static_cast<long long>(kMaxSmemBytes)));
  if (batch.n_rows == 0) return Status::Ok();
  if (batch.row_pos == nullptr || batch.entry_first_row == nullptr || batch.entry_n_rows == nullptr ||
      batch.entry_table == nullptr || batch.block_tables == nullptr)
    return InvalidArgument(std::string(kOp) +
                           ": batch row_pos, entry_first_row, entry_n_rows, entry_table and block_tables must not be "
                           "null");
  if (batch.max_context < 1 || batch.max_context > kMaxAttentionContext)
    return InvalidArgument(std::string(kOp) + ": max_context " + Str(batch.max_context) + " is outside [1, " +
                           Str(kMaxAttentionContext) + "]");
  const size_t need = AttentionWorkspaceBytes(batch.n_entries, n_heads, kv.head_dim, batch.max_context);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need))
    return InvalidArgument(std::string(kOp) + ": workspace has " + Str(static_cast<long long>(workspace_bytes)) +
                           " bytes" + (workspace == nullptr ? " (null)" : "") + "; " + Str(batch.n_entries) +
                           " entries x " + Str(n_heads) + " heads with max_context " + Str(batch.max_context) +
                           " need " + Str(static_cast<long long>(need)) + " (AttentionWorkspaceBytes)");
  if (need > 0 && reinterpret_cast<uintptr_t>(workspace) % alignof(float) != 0)
    return InvalidArgument(std::string(kOp) + ": workspace is not 4-byte aligned");
  return Status::Ok();
}

Status CheckTensorCorePrefill(const PagedKvView& kv) {
  // Runs on every PagedAttention call that has prefill rows: strings only on failure.
  auto fail = [](const std::string& why) { return InvalidArgument("PagedAttention (tensor-core prefill): " + why); };
  if (kv.dtype != DType::kF16 && kv.dtype != DType::kBF16)
    return fail(std::string("the KV cache is ") + DTypeName(kv.dtype) + "; only fp16 and bf16 run on tensor cores");
  if (kv.head_dim != 64 && kv.head_dim != 128)
    return fail("head_dim " + Str(kv.head_dim) + " is not supported (64 or 128)");
  if (reinterpret_cast<uintptr_t>(kv.k) % 16 != 0 || reinterpret_cast<uintptr_t>(kv.v) % 16 != 0)
    return fail("KV cache k and v must be 16-byte aligned");
  return Status::Ok();
}

PrefillKernel SelectPrefillKernel(const PagedKvView& kv, const AttentionOptions& options) {
  if (options.prefill == PrefillKernel::kTensorCores && CheckTensorCorePrefill(kv).ok())
    return PrefillKernel::kTensorCores;
  return PrefillKernel::kCudaCores;
}

Status WriteKv(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
               cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(CheckWriteKvArgs(kv, batch, qkv, n_heads));
  if (batch.n_rows == 0) return Status::Ok();
  const int kv_dim = kv.n_kv_heads * kv.head_dim;
  const dim3 grid(static_cast<unsigned>(batch.n_rows), static_cast<unsigned>((kv_dim + kWriteThreads - 1) / kWriteThreads));
  FLOVER_DISPATCH_DTYPE(kv.dtype, [&]<typename T>() {
    const KvArgs<T> args{static_cast<T*>(kv.k), static_cast<T*>(kv.v), kv.n_blocks, kv.block_size, kv.n_kv_heads,
                         kv.head_dim};
    WriteKvKernel<T><<<grid, kWriteThreads, 0, stream>>>(args, batch.row_entry, batch.row_pos, batch.entry_table,
                                                         batch.block_tables, batch.n_entries, qkv.as<const float>(),
                                                         qkv.stride, n_heads * kv.head_dim);
  });
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status PagedAttention(const PagedKvView& kv, const AttentionBatch& batch, const MatrixView& qkv, int n_heads,
                      const MatrixView& out, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                      const AttentionOptions& options) {
  FLOVER_RETURN_IF_ERROR(CheckPagedAttentionArgs(kv, batch, qkv, n_heads, out, workspace, workspace_bytes));
  if (batch.n_rows == 0) return Status::Ok();

  const int n_splits = DecodeSplits(batch.max_context);
  const int group = n_heads / kv.n_kv_heads;
  const size_t smem = SmemLayout(group, kv.head_dim).bytes;
  const Partials partials = SplitPartials(workspace, batch.n_entries, n_heads, kv.head_dim, n_splits);
  const float scale = 1.0f / sqrtf(static_cast<float>(kv.head_dim));
  cudaError_t attr = cudaSuccess;
  FLOVER_DISPATCH_DTYPE(kv.dtype, [&]<typename T>() {
    if (smem > 48 * 1024) {
      attr = cudaFuncSetAttribute(DecodeKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      if (attr != cudaSuccess) return;
    }
    const KvArgs<T> args{static_cast<T*>(kv.k), static_cast<T*>(kv.v), kv.n_blocks, kv.block_size, kv.n_kv_heads,
                         kv.head_dim};
    const dim3 grid(static_cast<unsigned>(batch.n_entries), static_cast<unsigned>(kv.n_kv_heads),
                    static_cast<unsigned>(n_splits));
    DecodeKernel<T><<<grid, kThreads, smem, stream>>>(args, batch.row_pos, batch.entry_first_row, batch.entry_n_rows,
                                                      batch.entry_table, batch.block_tables, qkv.as<const float>(),
                                                      qkv.stride, n_heads, out.as<T>(), out.stride, partials, n_splits,
                                                      scale);
    if (n_splits > 1) {
      const dim3 combine_grid(static_cast<unsigned>(batch.n_entries), static_cast<unsigned>(n_heads));
      CombineKernel<T><<<combine_grid, kThreads, sizeof(float) * n_splits, stream>>>(
          batch.row_pos, batch.entry_first_row, batch.entry_n_rows, partials, n_heads, n_splits, kv.head_dim,
          out.as<T>(), out.stride);
    }
  });
  FLOVER_CUDA_RETURN_IF_ERROR(attr);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  // Every entry has at least one row, so more rows than entries means a prefill chunk.
  if (batch.n_rows > batch.n_entries) {
    if (SelectPrefillKernel(kv, options) == PrefillKernel::kTensorCores)
      return attention_internal::LaunchPrefillAttentionMma(kv, batch, qkv, n_heads, out, stream);
    return attention_internal::LaunchPrefillAttention(kv, batch, qkv, n_heads, out, stream);
  }
  return Status::Ok();
}

}  // namespace flover::cuda
