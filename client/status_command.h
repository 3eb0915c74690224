// `flover status`: prints a cluster's replicas, workers, in-flight requests, KV-block
// use and step rate (or, with --json, one JSON object: status_json.h). With
// --wait-ready S it polls until every replica is ready (exit 0) or S seconds pass (exit 1). With --probe it is a
// health check: one line, exit 0 when the coordinator answers and some replica is
// ready to serve, 1 otherwise.
#pragma once

#include <string>

#include "client/client.h"

namespace flover {

struct StatusOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  ClientKeyFiles keys;  // CURVE: --key / --server-key
  bool json = false;
  double wait_ready_s = 0;
  bool probe = false;
  double timeout_s = 5;
};

int StatusCommand(const StatusOptions& options);

}  // namespace flover
