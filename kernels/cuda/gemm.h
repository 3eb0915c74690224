// Gemm: the weight GEMM of the CUDA backend on cuBLAS, the CUDA counterpart of
// cpu::Matmul (kernels/cpu/matmul.h):
//
//   y[n, out] (+)= x[n, in] · w[out, in]ᵀ      row-major, weights stored [out, in]
//
// Storage: x and w share one dtype (fp32, fp16 or bf16); y is fp32 (the residual stream,
// QKV and gate/up rows kept in fp32) or that storage dtype. Products are accumulated in
// fp32 always (CUBLAS_COMPUTE_32F, reductions never in the output type); fp32 storage
// does not use TF32 unless GemmOptions::allow_tf32 asks for it, so by default it is at
// parity with the CPU reference. `accumulate` adds to y (beta = 1), which fuses the
// residual add into the O and down projections.
//
// Unlike cpu::Matmul this is not batch-invariant: cuBLAS picks its algorithm (tiling,
// split-K) from the shape, so a row's rounding may change with `n`. It is deterministic
// for a given shape, device and stream (atomics are disabled).
//
// Optionally, small steps (n <= GemmOptions::gemv_max_rows, fp16/bf16 storage,
// 128-bit-loadable operands) run on the bandwidth-bound Gemv kernel instead (gemv.h): same operands and
// accumulation, batch-invariant for those n.
//
// A Gemm owns one cuBLAS handle bound to one stream of the device that was current at
// Create, and a workspace allocated there once: Matmul does not allocate and does not
// synchronise; it only enqueues on the stream.
// Thread-safety: not thread-safe; one thread drives a Gemm (one per stream).
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "common/status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"

namespace flover::cuda {

struct GemmOptions {
  // cuBLAS's recommendation for Hopper (4 MiB suffices before it).
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;

  // fp32 storage only: CUBLAS_COMPUTE_32F_FAST_TF32 (inputs rounded to TF32's 10-bit
  // mantissa, fp32 accumulation). Off by default: parity with the CPU reference.
  bool allow_tf32 = false;
  size_t workspace_bytes = kDefaultWorkspaceBytes;
  // Products with at most this many rows of x go to Gemv when GemvSupports them (0:
  // always cuBLAS, the default until Gemv is verified on a GPU). Capped at kGemvMaxRows.
  int gemv_max_rows = 0;
};

// OK when x, w and y form a valid Matmul: w is a non-empty [out, in] fp32/fp16/bf16
// matrix, x is [n, in] of w's dtype, y is [n, out] of fp32 or w's dtype, every view has
// stride >= cols (and < 2^31), non-null data unless empty, data aligned to its element,
// and y overlaps neither x nor w. InvalidArgument naming the operand otherwise:
// "Matmul: y is fp16 [7, 768], expected fp32 [7, 768]". Needs no GPU.
Status CheckMatmul(const MatrixView& x, const MatrixView& w, const MatrixView& y);

class Gemm {
 public:
  // An empty Gemm (no handle); only a target for moves. Matmul on it still checks its
  // operands (and n == 0 is a no-op), but valid operands with n > 0 are a CHECK failure.
  Gemm() = default;

  // Creates the cuBLAS handle on the current device, binds it to `stream` (a stream of
  // that device; nullptr is the legacy default stream) and gives it a workspace of
  // options.workspace_bytes. Fails (Unavailable without a device) rather than aborting.
  static Result<Gemm> Create(cudaStream_t stream, const GemmOptions& options = {});

  Gemm(Gemm&& o) noexcept
      : handle_(std::exchange(o.handle_, nullptr)),
        stream_(std::exchange(o.stream_, nullptr)),
        workspace_(std::move(o.workspace_)),
        allow_tf32_(o.allow_tf32_),
        gemv_max_rows_(o.gemv_max_rows_) {}
  Gemm& operator=(Gemm&& o) noexcept;
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  ~Gemm();

  // accumulate=false: y = x·wᵀ (y's previous contents are not read, NaNs included);
  // accumulate=true:  y += x·wᵀ, the sum taken in fp32 before y is rounded to its dtype.
  // Operands as in CheckMatmul, which runs first: a bad operand is InvalidArgument
  // before anything is enqueued; n == 0 is a no-op. cuBLAS failures are Internal (or
  // ResourceExhausted). Enqueued on stream(); returns without waiting for the GPU.
  // REQUIRES: the device current at Create is current.
  Status Matmul(const MatrixView& x, const MatrixView& w, const MatrixView& y, bool accumulate = false);

  cudaStream_t stream() const { return stream_; }
  bool allow_tf32() const { return allow_tf32_; }
  int gemv_max_rows() const { return gemv_max_rows_; }

 private:
  // Constant after Create.
  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;  // not owned
  DeviceBuffer workspace_;
  bool allow_tf32_ = false;
  int gemv_max_rows_ = 0;
};

}  // namespace flover::cuda
