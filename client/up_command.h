// `flover up --config FILE`: starts a whole cluster on this host as child processes
// (the coordinator, then every worker of the file whose host is local), waits until
// every replica is ready, and keeps it running until Ctrl-C / SIGTERM / SIGHUP. The
// first such signal drains, as the coordinator does on its own: the coordinator refuses
// new requests and lets those in flight finish (up to --drain-timeout, 10 s), then shuts
// the workers down; flover up waits for it, stops any worker left and exits 0. A second
// signal stops everything at once (requests still in flight fail). No process is left
// behind. With --exec CMD it runs CMD (via /bin/sh, with $FLOVER_ENDPOINT set to
// the client endpoint, and for a cluster with security mode curve $FLOVER_KEY and
// $FLOVER_SERVER_KEY set to security.client_key and coordinator_public_key) once the
// cluster is ready, tears down when CMD ends, and returns CMD's exit code; a signal's
// drain lets CMD run on (its requests may be those in flight) and stops it after.
#pragma once

#include <string>

namespace flover {

struct UpOptions {
  std::string config;
  std::string exec;              // optional command to run against the ready cluster
  double ready_timeout_s = 300;  // loading big models takes a while
  std::string bin_dir;           // where flover-coordinator / flover-worker are; default: found beside flover
  bool no_restart = false;       // leave failed workers stopped (default: restart them)
  double drain_timeout_s = 10;   // on the first signal, how long requests in flight may run; 0: stop at once
};

int UpCommand(const UpOptions& options);

}  // namespace flover
