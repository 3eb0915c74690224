// The "cuda:N" half of CreateBackend (backend.h), private to it: backend_cuda.cc in a
// build with CUDA, backend_none.cc (Unavailable, saying so) without.
#pragma once

#include "worker/backend.h"

namespace flover {

// REQUIRES: device_index >= 0; the group checked by CreateBackend.
Result<CreatedBackend> CreateCudaDeviceBackend(int device_index, const BackendConfig& config,
                                               const BackendGroup& group);

}  // namespace flover
