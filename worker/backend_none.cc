// CreateCudaDeviceBackend in a build without CUDA (FLOVER_CUDA=OFF, or no nvcc at build
// time).
#include "worker/backend_cuda.h"

namespace flover {

Result<CreatedBackend> CreateCudaDeviceBackend(int, const BackendConfig& config, const BackendGroup&) {
  return Unavailable("device " + config.device +
                     " needs the CUDA backend, but this build has no CUDA (it was built without CUDA: build with "
                     "FLOVER_CUDA=ON where nvcc is installed), or use device cpu");
}

}  // namespace flover
