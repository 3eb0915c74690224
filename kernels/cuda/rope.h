// Rotary position embedding on the CUDA backend, in place on the fp32 QKV rows, with
// kernels/cpu/rope.h's interleaved layout: each adjacent pair (v[2i], v[2i+1]) of the
// first rotary_dim values of every head is rotated by the angle of position pos and
// pair i; the rest of each head (partial rotary, GPT-J) is left as it is.
//
// The angles are not recomputed on the device: the launcher reads device copies of
// cpu::RopeTable's cos/sin tables (UploadRopeTable), so they are bit-identical to the
// CPU's, and the rotation uses unfused IEEE multiplies and adds, so fp32 results equal
// the CPU reference's (where the host compiler does not contract them into FMAs either).
//
// Positions are not trusted: a token whose position is outside [0, max_positions) is left
// unrotated rather than reading outside the tables (the device cannot report it; the
// scheduler keeps positions below the model's context length, which sizes the table).
// Thread-safety: the launchers are reentrant; they only enqueue work on `stream`.
// DeviceRopeTable is immutable after UploadRopeTable.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/device.h"

namespace flover::cuda {

// cpu::RopeTable's tables on the device (the model's frequencies, LLaMA 3 scaling
// included, are already in them).
struct DeviceRopeTable {
  DeviceBuffer cos;  // fp32 [max_positions, rotary_dim / 2]
  DeviceBuffer sin;  // fp32 [max_positions, rotary_dim / 2]
  int rotary_dim = 0;
  int max_positions = 0;
};

// Copies `table` to the device (synchronously on `stream`). Allocates: call at load.
Result<DeviceRopeTable> UploadRopeTable(const cpu::RopeTable& table, cudaStream_t stream);

// Rotates the first rotary_dim floats of each of n_heads heads of head_dim floats,
// contiguous from the start of each of the n_tokens rows of x (row_stride floats
// apart), token t at positions[t].
// x: device fp32 [n_tokens, row_stride]; positions: device int [n_tokens];
// cos_table, sin_table: device fp32 [max_positions, rotary_dim / 2].
// Returns InvalidArgument, before touching the device, for null pointers, a
// non-positive head_dim, an odd or non-positive rotary_dim or one above head_dim,
// n_heads * head_dim > row_stride, or max_positions <= 0.
Status ApplyRope(float* x, int n_tokens, int64_t row_stride, int n_heads, int head_dim, int rotary_dim,
                 const int* positions, const float* cos_table, const float* sin_table, int max_positions,
                 cudaStream_t stream);

// The same with an uploaded table, rotating its rotary_dim floats of each head.
Status ApplyRope(float* x, int n_tokens, int64_t row_stride, int n_heads, int head_dim, const int* positions,
                 const DeviceRopeTable& table, cudaStream_t stream);

}  // namespace flover::cuda
