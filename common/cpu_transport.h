// CpuTransport: the value of parallel.cpu_transport, how the ranks of a CPU replica run
// their collectives (worker/comm/cpu_communicator.h). CUDA replicas always use NCCL.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flover {

enum class CpuTransport {
  kAuto,  // shared memory when every rank can map one segment, else TCP
  kShm,   // shared memory: every rank on one host
  kTcp,   // Gloo over TCP: any placement
};

// "auto", "shm", "tcp".
const char* CpuTransportName(CpuTransport transport);

// The transport of that name; nullopt for any other.
std::optional<CpuTransport> CpuTransportFromName(std::string_view name);

// Every name, in the order error messages list them: auto, shm, tcp.
const std::vector<std::string>& CpuTransportNames();

}  // namespace flover
