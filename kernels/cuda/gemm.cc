#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>
#include <library_types.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "common/check.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/gemv.h"

namespace flover::cuda {
namespace {

constexpr const char* kOp = "Matmul";

cudaDataType CudaType(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
  }
  FLOVER_CHECK(false) << "unknown DType " << static_cast<int>(t);
  return CUDA_R_32F;
}

// Bytes from the first to one past the last element of `m` (0 when empty).
uint64_t SpanBytes(const MatrixView& m) {
  if (m.rows <= 0 || m.cols <= 0) return 0;
  return (static_cast<uint64_t>(m.rows - 1) * static_cast<uint64_t>(m.stride) + static_cast<uint64_t>(m.cols)) *
         DTypeSize(m.dtype);
}

bool Overlap(const MatrixView& a, const MatrixView& b) {
  const uint64_t a_bytes = SpanBytes(a), b_bytes = SpanBytes(b);
  if (a_bytes == 0 || b_bytes == 0) return false;
  const auto a0 = reinterpret_cast<uintptr_t>(a.data), b0 = reinterpret_cast<uintptr_t>(b.data);
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

// What cuBLAS additionally needs of a view CheckMatrix accepted: an `int` leading
// dimension and element-aligned data.
Status CheckForCublas(const MatrixView& m, const char* name) {
  if (m.stride > INT_MAX)
    return InvalidArgument(std::string(kOp) + ": " + name + " has stride " + std::to_string(m.stride) +
                           ", more than cuBLAS's int leading dimension allows");
  if (reinterpret_cast<uintptr_t>(m.data) % DTypeSize(m.dtype) != 0)
    return InvalidArgument(std::string(kOp) + ": " + name + " is not aligned to its " +
                           std::to_string(DTypeSize(m.dtype)) + "-byte elements");
  return Status::Ok();
}

}  // namespace

Status CheckMatmul(const MatrixView& x, const MatrixView& w, const MatrixView& y) {
  const DType storage = w.dtype;
  FLOVER_RETURN_IF_ERROR(CheckMatrix(w, storage, -1, -1, kOp, "w"));
  if (w.rows == 0 || w.cols == 0)
    return InvalidArgument(std::string(kOp) + ": w is " + DTypeName(storage) + " [" + std::to_string(w.rows) + ", " +
                           std::to_string(w.cols) + "]; a weight matrix must not be empty");
  FLOVER_RETURN_IF_ERROR(CheckMatrix(x, storage, -1, w.cols, kOp, "x"));
  // y's dtype: fp32, or the storage dtype; name fp32 as the expectation otherwise.
  const DType y_dtype = y.dtype == storage ? storage : DType::kF32;
  FLOVER_RETURN_IF_ERROR(CheckMatrix(y, y_dtype, x.rows, w.rows, kOp, "y"));
  FLOVER_RETURN_IF_ERROR(CheckForCublas(w, "w"));
  FLOVER_RETURN_IF_ERROR(CheckForCublas(x, "x"));
  FLOVER_RETURN_IF_ERROR(CheckForCublas(y, "y"));
  if (Overlap(y, x)) return InvalidArgument(std::string(kOp) + ": y overlaps x");
  if (Overlap(y, w)) return InvalidArgument(std::string(kOp) + ": y overlaps w");
  return Status::Ok();
}

Result<Gemm> Gemm::Create(cudaStream_t stream, const GemmOptions& options) {
  int device = 0;
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  Gemm gemm;
  gemm.stream_ = stream;
  gemm.allow_tf32_ = options.allow_tf32;
  gemm.gemv_max_rows_ = std::clamp(options.gemv_max_rows, 0, kGemvMaxRows);
  FLOVER_ASSIGN_OR_RETURN(gemm.workspace_, DeviceBuffer::Allocate(options.workspace_bytes));
  FLOVER_CUBLAS_RETURN_IF_ERROR(cublasCreate(&gemm.handle_));
  // The stream before the workspace: cublasSetStream resets the workspace to cuBLAS's
  // own pool (which allocates on first use).
  FLOVER_CUBLAS_RETURN_IF_ERROR(cublasSetStream(gemm.handle_, stream));
  FLOVER_CUBLAS_RETURN_IF_ERROR(
      cublasSetWorkspace(gemm.handle_, gemm.workspace_.data(), gemm.workspace_.bytes()));
  FLOVER_CUBLAS_RETURN_IF_ERROR(cublasSetPointerMode(gemm.handle_, CUBLAS_POINTER_MODE_HOST));
  FLOVER_CUBLAS_RETURN_IF_ERROR(cublasSetAtomicsMode(gemm.handle_, CUBLAS_ATOMICS_NOT_ALLOWED));
  // fp16/bf16 outputs: split-K partial sums stay fp32 (the compute type), never fp16.
  FLOVER_CUBLAS_RETURN_IF_ERROR(
      cublasSetMathMode(gemm.handle_, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                                                 CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  return gemm;
}

Gemm& Gemm::operator=(Gemm&& o) noexcept {
  if (this != &o) {
    if (handle_) cublasDestroy(handle_);
    handle_ = std::exchange(o.handle_, nullptr);
    stream_ = std::exchange(o.stream_, nullptr);
    workspace_ = std::move(o.workspace_);
    allow_tf32_ = o.allow_tf32_;
    gemv_max_rows_ = o.gemv_max_rows_;
  }
  return *this;
}

Gemm::~Gemm() {
  // The handle before the workspace it uses (members are destroyed after this body).
  if (handle_) cublasDestroy(handle_);
}

Status Gemm::Matmul(const MatrixView& x, const MatrixView& w, const MatrixView& y, bool accumulate) {
  FLOVER_RETURN_IF_ERROR(CheckMatmul(x, w, y));
  if (x.rows == 0) return Status::Ok();
  FLOVER_CHECK(handle_ != nullptr) << "Matmul on an empty Gemm (moved from, or never created)";
  if (x.rows <= gemv_max_rows_ && GemvSupports(x, w, y)) return Gemv(x, w, y, accumulate, stream_);

  // Row-major [r, c] with stride s is column-major [c, r] with leading dimension s, so
  // yᵀ[out, n] = w[out, in] · xᵀ[in, n] in column-major terms: A = w (stored as a
  // column-major [in, out], op T), B = x (column-major [in, n], op N), C = y
  // (column-major [out, n]).
  const int m = w.rows, n = x.rows, k = w.cols;
  const cublasComputeType_t compute = w.dtype == DType::kF32 && allow_tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                             : CUBLAS_COMPUTE_32F;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  FLOVER_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w.data,
                                             CudaType(w.dtype), static_cast<int>(w.stride), x.data,
                                             CudaType(x.dtype), static_cast<int>(x.stride), &beta, y.data,
                                             CudaType(y.dtype), static_cast<int>(y.stride), compute,
                                             CUBLAS_GEMM_DEFAULT));
  return Status::Ok();
}

}  // namespace flover::cuda
