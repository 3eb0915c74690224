// LocalAddress: which address of this host a worker's collectives bind and the
// coordinator shows for it. A worker whose --host is not given takes the one the cluster
// file names for it, else the local address of this host's route to the coordinator's
// control endpoint: the address its peers on that network reach it at (loopback when the
// coordinator is on loopback). So a cluster spread over hosts works without --host.
//
// Thread-safety: pure functions, except LocalAddressToward (a socket and, for a name,
// the resolver; nothing is sent).
#pragma once

#include <optional>
#include <string>

#include "common/status.h"

namespace flover {

// A ZeroMQ "tcp://host:port" endpoint split: host without IPv6 brackets ("::1" of
// "tcp://[::1]:5556"), port as written ("5556", "*"). nullopt for ipc://, inproc:// and
// anything not of that form.
struct TcpEndpoint {
  std::string host;
  std::string port;
};
std::optional<TcpEndpoint> ParseTcpEndpoint(const std::string& endpoint);

// True for "localhost", 127.0.0.0/8 and ::1 (IP literals as inet_pton reads them).
bool IsLoopbackHost(const std::string& host);

// The host a worker was told to use: `flag` (--host) when not empty; else `file_host`
// (the cluster file's workers[].host for this worker; "" when it has no file or the file
// does not list it) unless it is a loopback address: the reader gives an entry without a
// host 127.0.0.1, which names no network. nullopt: LocalAddressToward decides.
std::optional<std::string> ConfiguredWorkerHost(const std::string& flag, const std::string& file_host);

// The local address of this host's route to `endpoint`'s host, as the kernel picks it
// for a UDP socket connect()ed there (getsockname(); no packet is sent): "10.0.0.2"
// toward tcp://10.0.0.1:5556 on a host whose route there leaves from 10.0.0.2,
// "127.0.0.1" toward tcp://127.0.0.1:5556. ipc:// and inproc:// endpoints give
// "127.0.0.1". A host name is resolved (the first address with a route wins).
// Unavailable naming the endpoint when the name does not resolve or no route leads
// there; InvalidArgument for an endpoint that is not tcp://host:port, ipc:// or inproc://,
// or whose host is a wildcard (*, 0.0.0.0, ::).
Result<std::string> LocalAddressToward(const std::string& endpoint);

}  // namespace flover
