// DeviceCommunicator: a Communicator (communicator.h) whose collectives work on CUDA
// device memory of this rank's device and are enqueued on a stream: they return as soon
// as the work is enqueued, without waiting for the GPU. The data is read after the
// kernels enqueued before the call on that stream and is ready for the kernels enqueued
// after it; the host sees it after Synchronize. The CUDA backend computes on the
// communicator's stream, so collectives and kernels are ordered without host waits.
// NcclCommunicator (nccl_communicator.h) implements it. CUDA builds only.
//
// Thread-safety: not thread-safe; one thread drives a communicator.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "common/status.h"
#include "worker/comm/communicator.h"

namespace flover {

class DeviceCommunicator : public Communicator {
 public:
  // data: device [n], in place, summed over the ranks. Enqueued on stream().
  virtual Status AllReduceSum(float* data, size_t n) = 0;
  // in: device [n], out: device [world_size * n], rank-major. Enqueued on stream().
  // REQUIRES: in and out do not overlap.
  virtual Status AllGather(const float* in, size_t n, float* out) = 0;

  // Waits for everything enqueued on stream() so far, with a bound: a peer that died
  // gives an error (Unavailable) instead of a wait that never returns. Use it where a
  // step waits for its output.
  virtual Status Synchronize() = 0;

  virtual int device() const = 0;            // the CUDA device of this rank
  virtual cudaStream_t stream() const = 0;   // where the collectives are enqueued
};

}  // namespace flover
