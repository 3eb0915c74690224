// CreateGpuBackend in a build without CUDA (FLOVER_CUDA=OFF, or no nvcc at build time).
#include "worker/gpu_backend.h"

namespace flover {

Result<GpuBackend> CreateGpuBackend(const ClusterConfig&, int replica, int rank, const std::string& device,
                                    KvStore&) {
  return Unavailable("worker " + std::to_string(replica) + "/" + std::to_string(rank) + " is configured for " +
                     device + ", but this flover-worker was built without CUDA (build with FLOVER_CUDA=ON where "
                     "nvcc is installed)");
}

}  // namespace flover
