// The open-file limit (RLIMIT_NOFILE) of the daemons. Every client connection, worker
// connection and ZeroMQ socket costs the coordinator a file descriptor, and the usual
// soft limit (1024) is far below what limits.max_client_connections allows: at that
// limit the coordinator cannot accept a connection (a restarted worker's included) and
// cannot open files. So the coordinator and the workers raise their soft limit to the
// hard limit at start-up (the hard limit is the administrator's: LimitNOFILE= in a
// systemd unit, `ulimit -Hn`), and the coordinator warns when even the hard limit is
// below what its config needs.
//
// Thread-safety: call at start-up, before other threads open files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/cluster_config.h"
#include "common/status.h"

namespace flover {

struct FileLimit {
  uint64_t soft_before = 0;  // the soft limit this process started with
  uint64_t soft = 0;         // the soft limit now
  uint64_t hard = 0;         // RLIM_INFINITY: unlimited
};

// Raises this process's soft RLIMIT_NOFILE to its hard limit. Internal when the limit
// cannot be read or set.
Result<FileLimit> RaiseFileLimit();

// The descriptors the coordinator of `config` may need: each client connection
// (limits.max_client_connections), each HTTP connection (http.max_connections, when
// endpoints.http is set), two per worker (control, plans), and a reserve for its
// listening sockets, ZeroMQ's internals and files.
int64_t CoordinatorFilesNeeded(const ClusterConfig& config);

// The client connections the coordinator of `config` can hold under a soft open-file
// limit of `soft_limit` with the workers' descriptors and the reserve kept free:
// limits.max_client_connections when it fits (or the limit is RLIM_INFINITY), else what
// is left, at least 1. The coordinator refuses client connections beyond it (ZAP), so a
// client flood cannot take the descriptors a (restarted) worker needs.
int ClientConnectionsThatFit(const ClusterConfig& config, uint64_t soft_limit);

// RaiseFileLimit, logged: "<who>: open files (RLIMIT_NOFILE): soft limit 1024 raised to
// 524288, hard limit 524288" at info; at warning, a limit that cannot be raised, and a
// hard limit below `needed` (0: no check; `need_why` says what needs them).
// Returns the limit (nullopt when it could not be read).
std::optional<FileLimit> RaiseFileLimitAndLog(const std::string& who, int64_t needed = 0,
                                              const std::string& need_why = "");

}  // namespace flover
