// CreateGpuBackend: the ForwardBackend of a worker whose config says `device: cuda:N`:
// its CUDA stream, its NCCL communicator (tensor parallelism; the unique id travels
// through the coordinator's rendezvous store) and the CudaBackend, owned together and
// destroyed in the right order. In a build without CUDA it returns Unavailable saying so.
#pragma once

#include <memory>
#include <string>

#include "common/cluster_config.h"
#include "common/status.h"
#include "worker/comm/kv_store.h"
#include "worker/engine/forward_backend.h"

namespace flover {

struct GpuBackend {
  std::unique_ptr<ForwardBackend> backend;
  std::string description;  // the model and device, for logs and WorkerReady
};

// `device` is the worker's "cuda:N"; `store` the rendezvous store (the control channel).
Result<GpuBackend> CreateGpuBackend(const ClusterConfig& config, int replica, int rank, const std::string& device,
                                    KvStore& store);

}  // namespace flover
