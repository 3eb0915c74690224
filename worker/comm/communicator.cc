#include "worker/comm/communicator.h"

#include <cstring>
#include <string>

namespace flover {

Status CheckCommunicator(const Communicator* comm, int rank, int world) {
  if (world > 1 && comm == nullptr)
    return InvalidArgument("tensor parallel size " + std::to_string(world) + " needs a communicator");
  if (comm && (comm->rank() != rank || comm->world_size() != world))
    return InvalidArgument("communicator is rank " + std::to_string(comm->rank()) + " of " +
                           std::to_string(comm->world_size()) + ", the shard is rank " + std::to_string(rank) + " of " +
                           std::to_string(world));
  return Status::Ok();
}

Status LocalCommunicator::AllReduceSum(float* /*data*/, size_t /*n*/) { return Status::Ok(); }

Status LocalCommunicator::AllGather(const float* in, size_t n, float* out) {
  if (n > 0) std::memcpy(out, in, n * sizeof(float));
  return Status::Ok();
}

Status LocalCommunicator::Barrier() { return Status::Ok(); }

}  // namespace flover
