#include "worker/comm/cpu_communicator.h"

#include <utility>

#include "worker/comm/gloo_communicator.h"
#include "worker/comm/shm_communicator.h"

namespace flover {

Result<CpuCommunicator> CreateCpuCommunicator(int rank, int world, KvStore& store, const std::string& prefix,
                                              const CpuCommunicatorOptions& options) {
  const CpuTransport t = options.transport;
  CpuCommunicator out;
  if (t != CpuTransport::kTcp) {
    ShmCommunicatorOptions shm;
    shm.timeout = options.timeout;
    Result<std::unique_ptr<HostCommunicator>> comm = ShmCommunicator::Create(rank, world, store, prefix, shm);
    if (comm.ok()) {
      out.comm = std::move(comm).value();
      out.transport = CpuTransport::kShm;
      return out;
    }
    if (t == CpuTransport::kShm || comm.status().code() != StatusCode::kFailedPrecondition) return comm.status();
    out.note = comm.status().message();
  }
  FLOVER_ASSIGN_OR_RETURN(out.comm, GlooCommunicator::Create(rank, world, store, prefix, options.bind_host,
                                                             options.timeout));
  out.transport = CpuTransport::kTcp;
  return out;
}

}  // namespace flover
