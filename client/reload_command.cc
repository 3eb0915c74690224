#include "client/reload_command.h"

#include <chrono>
#include <cstdio>

namespace flover {

int ReloadCommand(const ReloadOptions& o) {
  Result<std::unique_ptr<Client>> client = ConnectWithKeys(o.endpoint, o.keys);
  if (!client.ok()) {
    std::fprintf(stderr, "flover reload: %s\n", client.status().ToString().c_str());
    return 1;
  }
  Result<proto::ReloadReply> reply =
      (*client)->Reload(std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  if (!reply.ok()) {
    std::fprintf(stderr, "flover reload: %s: %s\n", o.endpoint.c_str(), reply.status().ToString().c_str());
    return 1;
  }
  std::printf("config generation %llu: %s\n", static_cast<unsigned long long>(reply->config_generation()),
              reply->summary().c_str());
  return 0;
}

}  // namespace flover
