#include "kernels/cuda/cuda_status.h"

#include <cublas_v2.h>

#include <string>

namespace flover::cuda {

Status CudaError(cudaError_t code, const char* call, const char* file, int line) {
  const StatusCode kind = code == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted
                          : (code == cudaErrorNoDevice || code == cudaErrorInsufficientDriver)
                              ? StatusCode::kUnavailable
                              : StatusCode::kInternal;
  return Status(kind, std::string(call) + " failed: " + cudaGetErrorString(code) + " (" + cudaGetErrorName(code) +
                          ") at " + file + ":" + std::to_string(line));
}

Status CublasError(cublasStatus_t code, const char* call, const char* file, int line) {
  const StatusCode kind = code == CUBLAS_STATUS_ALLOC_FAILED ? StatusCode::kResourceExhausted : StatusCode::kInternal;
  return Status(kind, std::string(call) + " failed: " + cublasGetStatusString(code) + " (" +
                          cublasGetStatusName(code) + ") at " + file + ":" + std::to_string(line));
}

}  // namespace flover::cuda
