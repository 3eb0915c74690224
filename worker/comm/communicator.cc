#include "worker/comm/communicator.h"

#include <cstring>

namespace flover {

Status LocalCommunicator::AllReduceSum(float* /*data*/, size_t /*n*/) { return Status::Ok(); }

Status LocalCommunicator::AllGather(const float* in, size_t n, float* out) {
  if (n > 0) std::memcpy(out, in, n * sizeof(float));
  return Status::Ok();
}

Status LocalCommunicator::Barrier() { return Status::Ok(); }

}  // namespace flover
