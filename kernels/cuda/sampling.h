// Sampling on the CUDA backend: one token per row of a batch of logits, each row with its
// own request's parameters, with the CPU Sampler's semantics (worker/engine/sampler.h):
// repetition penalty (CTRL-style, each distinct in-vocabulary history token once), then
// greedy argmax (lowest id on ties) when temperature is 0, otherwise softmax at
// temperature T, top-k, top-p (the smallest set of most likely tokens whose mass reaches
// p; candidates ordered by probability descending, id ascending) and one draw with
// UniformDraw(seed, draw_index).
//
// Parity with the CPU Sampler, for the same fp32 logits:
//   - the penalised logits, and for sampled rows the probabilities the row is turned
//     into, are bit-identical: the same float operations in the same order, and the
//     exponential is glibc's expf (its x86-64 FMA variant, which differs from the SSE2
//     variant at one argument) rather than CUDA's expf, which rounds differently;
//   - greedy tokens are identical;
//   - sampled tokens are identical except when the draw (or the top-p mass) falls within
//     double rounding of a cumulative-probability boundary: the CPU sums in one
//     sequential order, the device in 32 chunks (relative difference ~1e-16).
// One deliberate difference: when top-p alone with top_p < 1 / vocab leaves no candidate
// above the CPU's cutoff (a flat distribution), the CPU Sampler reads an empty vector;
// the device returns the argmax.
//
// Per step the launcher enqueues one kernel (penalty, greedy, softmax, the draw for rows
// without top-k/top-p, candidate selection for the others), a CUB segmented radix sort of
// the candidates of top-k/top-p rows, and one kernel for top-k, top-p and the draw. It
// allocates nothing, never synchronises and does no per-call host query (no CUB
// temp-size query), so a step's sampling can be captured in a CUDA graph.
//
// Thread-safety: the launchers are reentrant; they only enqueue work on `stream`. One
// workspace must not be used by two launches in flight at once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "common/request_params.h"
#include "common/status.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

// One row's sampling parameters, copied to the device by the caller each step.
struct SamplingRow {
  float temperature = 0.0f;         // 0 = greedy; REQUIRES >= 0 and finite
  int top_k = 0;                    // <= 0 or >= vocab = off
  float top_p = 1.0f;               // >= 1 = off; REQUIRES > 0
  float repetition_penalty = 1.0f;  // 1 = off; REQUIRES > 0
  uint64_t seed = 0;                // the request's RNG stream
  uint64_t draw_index = 0;          // tokens this request generated so far
  int history_offset = 0;           // this row's prompt + output tokens are
  int history_len = 0;              //   history[history_offset, history_offset + history_len)
};
static_assert(std::is_trivially_copyable_v<SamplingRow> && std::is_standard_layout_v<SamplingRow>);

inline SamplingRow MakeSamplingRow(const SamplingParams& params, uint64_t draw_index, int history_offset,
                                   int history_len) {
  return SamplingRow{params.temperature, params.top_k,   params.top_p,   params.repetition_penalty,
                     params.seed,        draw_index,     history_offset, history_len};
}

// Device bytes SampleTokens needs for up to `max_rows` rows of `vocab` logits: about
// 16 * max_rows * vocab (candidate keys and ids, double-buffered for the sort). Allocate
// once at the maximum batch; the same workspace serves any smaller batch.
size_t SamplingWorkspaceBytes(int max_rows, int vocab);

// logits: fp32 [n_rows, vocab] on the device, any row stride >= vocab, modified in place
//   as the CPU Sampler modifies its span: penalised, and for sampled rows (temperature >
//   0) replaced by the row's probabilities.
// rows: device [n_rows]. history: device, the flat token ids that rows[] index into; ids
//   outside [0, vocab) are ignored; may be null when no row has a penalty != 1 and a
//   non-empty history.
// tokens: device int [n_rows], the sampled token of each row.
// workspace: device, 256-byte aligned (cudaMalloc's are), >= SamplingWorkspaceBytes(n_rows,
//   vocab) bytes.
// REQUIRES: finite logits; every row's parameters as SamplingRow states and its history
//   range inside `history`.
// Returns InvalidArgument, before touching the device, for a wrong dtype, shape or
// stride, a null operand, a small or misaligned workspace, or n_rows * vocab >= 2^31.
Status SampleTokens(const MatrixView& logits, const SamplingRow* rows, const int* history, int* tokens,
                    void* workspace, size_t workspace_bytes, cudaStream_t stream);

// draws[i] = UniformDraw(seeds[i], indices[i]) computed on the device (all three device
// arrays of n); the draw SampleTokens uses, exposed so tests can check it bit for bit.
Status UniformDraws(const uint64_t* seeds, const uint64_t* indices, int n, float* draws, cudaStream_t stream);

}  // namespace flover::cuda
