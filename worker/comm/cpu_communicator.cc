#include "worker/comm/cpu_communicator.h"

#include <utility>

#include "common/cluster_config.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/shm_communicator.h"

namespace flover {

Result<CpuCommunicator> CreateCpuCommunicator(int rank, int world, KvStore& store, const std::string& prefix,
                                              const CpuCommunicatorOptions& options) {
  const std::string& t = options.transport;
  if (t != "auto" && t != "shm" && t != "tcp") {
    std::string names;
    for (const std::string& name : CpuTransportNames()) names += (names.empty() ? "" : ", ") + name;
    return InvalidArgument("CPU tensor-parallel transport '" + t + "' is not one of " + names);
  }
  CpuCommunicator out;
  if (t != "tcp") {
    ShmCommunicatorOptions shm;
    shm.timeout = options.timeout;
    Result<std::unique_ptr<HostCommunicator>> comm = ShmCommunicator::Create(rank, world, store, prefix, shm);
    if (comm.ok()) {
      out.comm = std::move(comm).value();
      out.transport = "shm";
      return out;
    }
    if (t == "shm" || comm.status().code() != StatusCode::kFailedPrecondition) return comm.status();
    out.note = comm.status().message();
  }
  FLOVER_ASSIGN_OR_RETURN(out.comm, GlooCommunicator::Create(rank, world, store, prefix, options.bind_host,
                                                             options.timeout));
  out.transport = "tcp";
  return out;
}

}  // namespace flover
