#include "common/cpu_transport.h"

#include "common/enum_names.h"

namespace flover {
namespace {

constexpr EnumNames<CpuTransport, 3> kTransportNames = {
    {{{CpuTransport::kAuto, "auto"}, {CpuTransport::kShm, "shm"}, {CpuTransport::kTcp, "tcp"}}}};

}  // namespace

const char* CpuTransportName(CpuTransport transport) { return kTransportNames.Name(transport); }

std::optional<CpuTransport> CpuTransportFromName(std::string_view name) { return kTransportNames.FromName(name); }

const std::vector<std::string>& CpuTransportNames() {
  static const std::vector<std::string> names = kTransportNames.Names();
  return names;
}

}  // namespace flover
