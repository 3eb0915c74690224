// `flover reload`: asks a running coordinator to read its cluster file again and apply
// what may change live (replicas added or removed, scheduler settings; docs/deploy.md),
// as SIGHUP to the coordinator does. Needs an admin key when the cluster is secured.
// Prints "config generation N: <what changed>" and exits 0; prints the coordinator's
// error (a change that cannot apply live is refused: nothing changes) and exits 1.
#pragma once

#include <string>

#include "client/client.h"

namespace flover {

struct ReloadOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  ClientKeyFiles keys;  // CURVE: --key / --server-key (an admin key)
  double timeout_s = 30;
};

int ReloadCommand(const ReloadOptions& options);

}  // namespace flover
