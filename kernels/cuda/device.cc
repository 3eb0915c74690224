#include "kernels/cuda/device.h"

#include <cstdio>

#include "kernels/cuda/cuda_status.h"

namespace flover::cuda {

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

Result<std::string> DeviceDescription(int device) {
  cudaDeviceProp p{};
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&p, device));
  char text[384];
  std::snprintf(text, sizeof text, "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
                static_cast<double>(p.totalGlobalMem) / (1 << 30));
  return std::string(text);
}

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer b;
  if (bytes == 0) return b;
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMalloc(&b.data_, bytes));
  b.bytes_ = bytes;
  return b;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (data_) cudaFree(data_);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}

Result<Stream> Stream::Create() {
  Stream s;
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s.stream_, cudaStreamNonBlocking));
  return s;
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = std::exchange(o.stream_, nullptr);
  }
  return *this;
}

Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}

Status Stream::Synchronize() const {
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

Status CopyToDevice(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return Status::Ok();
}

Status CopyToHost(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return Status::Ok();
}

namespace {

std::string Gigabytes(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
  return buf;
}

}  // namespace

Status CheckFreeMemory(size_t bytes, const std::string& what) {
  size_t free_bytes = 0, total_bytes = 0;
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (bytes > free_bytes)
    return ResourceExhausted(what + " needs " + Gigabytes(static_cast<double>(bytes)) + " of device memory; the GPU has " +
                             Gigabytes(static_cast<double>(free_bytes)) + " free of " +
                             Gigabytes(static_cast<double>(total_bytes)));
  return Status::Ok();
}

}  // namespace flover::cuda
