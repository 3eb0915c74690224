// CreateCpuCommunicator: the communicator of a CPU tensor-parallel group, over the
// transport that `parallel.cpu_transport` names:
//   shm   ShmCommunicator (shared memory): every rank on one host; FailedPrecondition
//         otherwise.
//   tcp   GlooCommunicator (TCP): any placement.
//   auto  shm when every rank can map one segment, else tcp. The choice is made alike on
//         every rank (ShmCommunicator's rendezvous gives every rank the same verdict),
//         so the group never splits between transports.
// All ranks pass the same `prefix`; the shared-memory rendezvous uses keys under
// `<prefix>/shm/`, Gloo's under `<prefix>/`.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/cpu_transport.h"
#include "worker/comm/communicator.h"
#include "worker/comm/kv_store.h"

namespace flover {

struct CpuCommunicatorOptions {
  CpuTransport transport = CpuTransport::kAuto;
  std::string bind_host = "127.0.0.1";  // tcp: the address Gloo binds
  std::chrono::milliseconds timeout{30000};
};

struct CpuCommunicator {
  std::unique_ptr<HostCommunicator> comm;
  CpuTransport transport = CpuTransport::kTcp;  // kShm or kTcp: what was chosen
  std::string note;       // with auto falling back to tcp: why shared memory was not used
};

// The errors of the chosen communicator's Create.
Result<CpuCommunicator> CreateCpuCommunicator(int rank, int world, KvStore& store, const std::string& prefix,
                                              const CpuCommunicatorOptions& options);

}  // namespace flover
