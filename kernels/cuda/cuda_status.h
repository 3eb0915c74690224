// CUDA and cuBLAS errors as Status: every runtime or library call that can fail goes
// through FLOVER_CUDA_RETURN_IF_ERROR / FLOVER_CUBLAS_RETURN_IF_ERROR, so a failure
// reaches the caller as "Internal: cudaMalloc(&p, 1073741824) failed: out of memory
// (cudaErrorMemoryAllocation) at kernels/cuda/device_buffer.cc:20" instead of aborting.
//
// Kernel launches report configuration errors only through cudaGetLastError(); launch
// helpers end with FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError()).
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "common/status.h"

namespace flover::cuda {

Status CudaError(cudaError_t code, const char* call, const char* file, int line);
Status CublasError(cublasStatus_t code, const char* call, const char* file, int line);

}  // namespace flover::cuda

#define FLOVER_CUDA_RETURN_IF_ERROR(call)                                                  \
  do {                                                                                     \
    const cudaError_t flover_cuda_code_ = (call);                                          \
    if (flover_cuda_code_ != cudaSuccess)                                                  \
      return ::flover::cuda::CudaError(flover_cuda_code_, #call, __FILE__, __LINE__);      \
  } while (0)

#define FLOVER_CUBLAS_RETURN_IF_ERROR(call)                                                \
  do {                                                                                     \
    const cublasStatus_t flover_cublas_code_ = (call);                                     \
    if (flover_cublas_code_ != CUBLAS_STATUS_SUCCESS)                                      \
      return ::flover::cuda::CublasError(flover_cublas_code_, #call, __FILE__, __LINE__);  \
  } while (0)
