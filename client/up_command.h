// `flover up --config FILE`: starts a whole cluster on this host as child processes
// (the coordinator, then every worker of the file whose host is local), waits until
// every replica is ready, and keeps it running until Ctrl-C / SIGTERM, when it stops
// the coordinator (which shuts the workers down) and then any worker left, leaving no
// process behind. With --exec CMD it runs CMD (via /bin/sh, with $FLOVER_ENDPOINT set to
// the client endpoint, and for a cluster with security mode curve $FLOVER_KEY and
// $FLOVER_SERVER_KEY set to security.client_key and coordinator_public_key) once the
// cluster is ready, tears down when CMD ends, and returns CMD's exit code.
#pragma once

#include <string>

namespace flover {

struct UpOptions {
  std::string config;
  std::string exec;              // optional command to run against the ready cluster
  double ready_timeout_s = 300;  // loading big models takes a while
  std::string bin_dir;           // where flover-coordinator / flover-worker are; default: found beside flover
  bool no_restart = false;       // leave failed workers stopped (default: restart them)
};

int UpCommand(const UpOptions& options);

}  // namespace flover
