#include "kernels/cuda/rope.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "kernels/cuda/cuda_status.h"

namespace flover::cuda {
namespace {

// One block per token; the threads stride over the row's n_heads * half rotated pairs.
// Pair p is pair p % half of head p / half, at float 2 * (p % half) of that head.
__global__ void RopeKernel(float* __restrict__ x, int64_t row_stride, int n_pairs, int half, int head_dim,
                           const int* __restrict__ positions, const float* __restrict__ cos_table,
                           const float* __restrict__ sin_table, int max_positions) {
  const int64_t t = blockIdx.x;
  const int pos = positions[t];
  if (pos < 0 || pos >= max_positions) return;
  const float* fcr = cos_table + static_cast<int64_t>(pos) * half;
  const float* fci = sin_table + static_cast<int64_t>(pos) * half;
  float* row = x + t * row_stride;
  for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) {
    const int head = p / half, i = p - head * half;
    float* v = row + static_cast<int64_t>(head) * head_dim + 2 * i;
    const float v0 = v[0], v1 = v[1];
    const float c = fcr[i], s = fci[i];
    // __fmul_rn/__fadd_rn are never contracted into FMAs: the CPU reference's rounding.
    v[0] = __fsub_rn(__fmul_rn(v0, c), __fmul_rn(v1, s));
    v[1] = __fadd_rn(__fmul_rn(v0, s), __fmul_rn(v1, c));
  }
}

}  // namespace

Result<DeviceRopeTable> UploadRopeTable(const cpu::RopeTable& table, cudaStream_t stream) {
  DeviceRopeTable d;
  d.rotary_dim = table.rotary_dim();
  d.max_positions = table.max_positions();
  const size_t bytes = static_cast<size_t>(d.max_positions) * (d.rotary_dim / 2) * sizeof(float);
  if (bytes == 0) return InvalidArgument("UploadRopeTable: the table is empty");
  FLOVER_ASSIGN_OR_RETURN(d.cos, DeviceBuffer::Allocate(bytes));
  FLOVER_ASSIGN_OR_RETURN(d.sin, DeviceBuffer::Allocate(bytes));
  FLOVER_RETURN_IF_ERROR(CopyToDevice(d.cos.data(), table.cos(0), bytes, stream));
  FLOVER_RETURN_IF_ERROR(CopyToDevice(d.sin.data(), table.sin(0), bytes, stream));
  return Result<DeviceRopeTable>(std::move(d));  // explicit: nvcc does not move into the converting constructor
}

Status ApplyRope(float* x, int n_tokens, int64_t row_stride, int n_heads, int head_dim, int rotary_dim,
                 const int* positions, const float* cos_table, const float* sin_table, int max_positions,
                 cudaStream_t stream) {
  if (n_tokens < 0 || n_heads < 0)
    return InvalidArgument("ApplyRope: n_tokens " + std::to_string(n_tokens) + " and n_heads " +
                           std::to_string(n_heads) + " must be >= 0");
  if (head_dim <= 0) return InvalidArgument("ApplyRope: head_dim is " + std::to_string(head_dim) + ", expected > 0");
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim)
    return InvalidArgument("ApplyRope: rotary_dim is " + std::to_string(rotary_dim) +
                           ", expected a positive even number at most head_dim " + std::to_string(head_dim));
  if (static_cast<int64_t>(n_heads) * head_dim > std::min<int64_t>(row_stride, INT32_MAX))
    return InvalidArgument("ApplyRope: " + std::to_string(n_heads) + " heads of " + std::to_string(head_dim) +
                           " do not fit in rows of stride " + std::to_string(row_stride));
  if (max_positions <= 0)
    return InvalidArgument("ApplyRope: max_positions is " + std::to_string(max_positions) + ", expected > 0");
  if (n_tokens == 0 || n_heads == 0) return Status::Ok();
  if (x == nullptr || positions == nullptr || cos_table == nullptr || sin_table == nullptr)
    return InvalidArgument("ApplyRope: x, positions, cos_table or sin_table is null");
  const int half = rotary_dim / 2;
  const int n_pairs = n_heads * half;
  const int threads = std::clamp((n_pairs + 31) / 32 * 32, 32, 256);
  RopeKernel<<<n_tokens, threads, 0, stream>>>(x, row_stride, n_pairs, half, head_dim, positions, cos_table,
                                               sin_table, max_positions);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status ApplyRope(float* x, int n_tokens, int64_t row_stride, int n_heads, int head_dim, const int* positions,
                 const DeviceRopeTable& table, cudaStream_t stream) {
  return ApplyRope(x, n_tokens, row_stride, n_heads, head_dim, table.rotary_dim, positions,
                   table.cos.as<const float>(), table.sin.as<const float>(), table.max_positions, stream);
}

}  // namespace flover::cuda
