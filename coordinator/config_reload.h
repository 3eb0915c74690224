// What a running cluster may change when its cluster file is read again (`flover
// reload`, SIGHUP to the coordinator), and a one-line account of a change.
//
// Live: parallel.replicas (replicas added or removed, with their workers[] entries) and
// every scheduler.* setting. Everything else (the model, parallel.tensor and
// cpu_transport, endpoints, kv_cache, heartbeat, limits, http, security, the name, and
// the workers[] entries of the replicas that stay) shapes processes, sockets or memory
// that already exist, so a change there is refused as a whole and nothing changes.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <string>

#include "common/cluster_config.h"
#include "common/status.h"

namespace flover {

// OK when `next` differs from `current` only where a running cluster can follow it; else
// InvalidArgument "<next.source>: <key>: cannot change while the cluster runs (was X,
// now Y); restart the cluster to change it, or put it back: nothing was changed" for
// the first such key in file order. Both configs valid.
Status CheckLiveChange(const ClusterConfig& current, const ClusterConfig& next);

// "replicas 1 -> 2 (added 1), scheduler.max_running 64 -> 32" or "no change".
std::string DescribeLiveChange(const ClusterConfig& current, const ClusterConfig& next);

}  // namespace flover
