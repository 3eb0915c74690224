// Filling device tensors of the storage dtype at load time: converting uploaded fp32
// weights, and generating the seeded dummy weights directly on the device.
//
// FillUniform generates exactly worker/model/dummy_model.cc's values: element i of
// tensor number `tensor_id` is
//   r = SplitMix64(SplitMix64(SplitMix64(seed) ^ tensor_id * 0xD1B54A32D192ED03) + i)
//   u = float(r >> 40) / 2^24;  value = (2u - 1) * scale   (float arithmetic)
// then rounded to the dtype (round to nearest even), so fp32 dummy weights made on the
// GPU equal the CPU's bit for bit and fp16/bf16 ones equal the CPU's values rounded.
// Both launchers index with 64 bits (tensors may exceed 2^31 elements).
// Thread-safety: the launchers are reentrant; they only enqueue work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"
#include "common/status.h"

namespace flover::cuda {

// dst[i] = dtype(src[i]) for i < n (round to nearest even; a copy for fp32).
// src: device fp32 [n]; dst: device [n] of `dtype`. REQUIRES: src and dst do not
// overlap, except src == dst with dtype fp32. Returns InvalidArgument, before touching
// the device, for n < 0 or a null pointer with n > 0.
Status ConvertFromF32(const float* src, void* dst, DType dtype, int64_t n, cudaStream_t stream);

// dst[i] = dtype(dummy weight i of (seed, tensor_id, scale)) for i < n, as above.
// dst: device [n] of `dtype`. Returns InvalidArgument, before touching the device, for
// n < 0 or a null dst with n > 0.
Status FillUniform(void* dst, DType dtype, int64_t n, uint64_t seed, uint64_t tensor_id, float scale,
                   cudaStream_t stream);

}  // namespace flover::cuda
