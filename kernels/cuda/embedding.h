// Token embedding on the CUDA backend: gathers one row of the embedding table per token
// into the fp32 residual stream.
//
// Ids are not trusted: a token id outside [0, vocab) yields a row of zeros instead of
// reading outside the table (the device cannot report it; the worker validates ids
// against the vocabulary before a step, so zeros only ever mask a bug, never read junk).
// Thread-safety: the launcher is reentrant; it only enqueues work on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

// out[t, :] = float(table[ids[t], :]) for t < out.rows, or 0 where ids[t] is out of range.
// table: fp32/fp16/bf16 [vocab, dim]; ids: device int [out.rows]; out: fp32 [n, dim].
// Returns InvalidArgument, before touching the device, for a wrong dtype, shape or
// stride, or a null operand.
Status EmbeddingGather(const MatrixView& table, const int* ids, const MatrixView& out, cudaStream_t stream);

}  // namespace flover::cuda
