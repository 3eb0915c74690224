// NcclCommunicator: a DeviceCommunicator (device_communicator.h) over NCCL, for tensor
// parallelism on CUDA GPUs (one rank per GPU, in one process or several, on one host or
// several).
//
// DEVICE MEMORY, STREAM ORDER. Every pointer passed to AllReduceSum and AllGather is
// CUDA device memory on this rank's device, and the collectives are enqueued on the
// compute stream given to Create: they return as soon as NCCL has enqueued the work,
// without waiting for the GPU. Barrier and Synchronize are the only calls that wait for
// the GPU.
//
// Rendezvous: rank 0 creates an NCCL unique id and publishes it in the KvStore under
// "<prefix>/nccl_unique_id"; the other ranks read it (waiting up to `timeout`). All
// ranks of one group pass the same prefix; a new group (after a failure) needs a new
// prefix. The communicator is created non-blocking and watched: a peer that never joins
// within `timeout` gives Unavailable (the half-made communicator is aborted), never a
// hang. Likewise each collective's enqueue and Barrier/Synchronize's wait are bounded by
// `timeout`.
//
// Errors: NCCL results become Statuses naming the call, the error and NCCL's last error
// message; asynchronous errors (a peer that failed) are checked on every call. After the
// first error the communicator is aborted and broken: every later call returns that
// error (communicator.h); the group must be rebuilt with a new prefix. A rank whose peer
// died in the middle of a collective may only find out at its next Barrier/Synchronize
// (the GPU waits for the peer; the host does not), which then fails after `timeout`.
//
// Every call makes this rank's device current for its duration and restores the
// caller's current device before returning.
// Thread-safety: not thread-safe; one thread drives a communicator. The ranks of one
// process each need their own thread (NCCL's creation is collective).
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <memory>
#include <string>

#include "worker/comm/device_communicator.h"
#include "worker/comm/kv_store.h"

namespace flover {

class NcclCommunicator final : public DeviceCommunicator {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{30000};

  // Joins the group `prefix` as `rank` of `world` on CUDA device `device`, blocking
  // until every rank has joined (or `timeout` passes: Unavailable). Collectives are
  // enqueued on `stream`, a stream of `device` (nullptr: the legacy default stream) that
  // must outlive the communicator. InvalidArgument for a bad rank, world, device or
  // timeout (checked before anything touches a GPU); Unavailable when no GPU is
  // visible. `store` is only used during Create.
  static Result<std::unique_ptr<DeviceCommunicator>> Create(int rank, int world, int device, KvStore& store,
                                                            const std::string& prefix, cudaStream_t stream,
                                                            std::chrono::milliseconds timeout = kDefaultTimeout);

  // Finalises and destroys the NCCL communicator (waiting up to `timeout` for the peers,
  // then aborting), or aborts it when broken. Does not synchronise or destroy `stream`.
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  // data: device [n], in place. Enqueued on the stream; see the header comment.
  Status AllReduceSum(float* data, size_t n) override;
  // in: device [n], out: device [world_size * n], rank-major. Enqueued on the stream.
  Status AllGather(const float* in, size_t n, float* out) override;
  // An all-reduce of one float, then Synchronize: returns once every rank has reached
  // it and everything enqueued on the stream so far has finished.
  Status Barrier() override;

  // Waits for everything enqueued on the stream so far, polling NCCL's asynchronous
  // error state: a peer that died gives an error after at most `timeout` (instead of a
  // cudaStreamSynchronize that never returns). Use it where a step waits for its output.
  Status Synchronize() override;

  int device() const override { return device_; }
  cudaStream_t stream() const override { return stream_; }

 private:
  struct Impl;  // NCCL objects; keeps nccl.h out of this header
  NcclCommunicator(int rank, int world, int device, cudaStream_t stream, std::unique_ptr<Impl> impl);

  // Constant after construction.
  const int rank_;
  const int world_;
  const int device_;
  cudaStream_t const stream_;  // not owned
  std::unique_ptr<Impl> impl_;
};

}  // namespace flover
