// The CUDA device, memory and streams as RAII types.
//
// DeviceCount() is safe on machines without a GPU or driver (it returns 0), so tests and
// the worker can decide at run time; everything else assumes a device.
// Thread-safety: DeviceBuffer and Stream are move-only owners; use each from one thread.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "common/status.h"

namespace flover::cuda {

// GPUs visible to this process; 0 without a driver or device (never fails).
int DeviceCount();
// "NVIDIA H200 (sm_90, 139.8 GiB)" for the current device, for logs and reports.
Result<std::string> DeviceDescription(int device);

// Owns one cudaMalloc'd allocation. Allocate once (at load), never per step.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static Result<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer(DeviceBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Owns one non-blocking cudaStream_t.
class Stream {
 public:
  Stream() = default;
  static Result<Stream> Create();
  Stream(Stream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  cudaStream_t get() const { return stream_; }
  Status Synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// ResourceExhausted ("<what> needs 14.2 GB of device memory; the GPU has 3.1 GB free of
// 80.0 GB"), before allocating, when `bytes` exceed the current device's free memory.
Status CheckFreeMemory(size_t bytes, const std::string& what);

// Host <-> device copies on `stream`, synchronous (for loading and tests, not steps).
Status CopyToDevice(void* dst, const void* src, size_t bytes, cudaStream_t stream);
Status CopyToHost(void* dst, const void* src, size_t bytes, cudaStream_t stream);

}  // namespace flover::cuda
