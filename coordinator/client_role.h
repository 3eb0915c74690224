// ClientRole: what a client connection may see (docs/security.md, "Roles"). The shell
// takes it from the connection's ZAP user id (zap_handler.h) and passes it with each
// client message to the core.
//   kClient  submit, cancel, status without the workers' pids and hosts
//   kAdmin   the same, with pids, hosts and failure reasons in the status
// Without a security section (loopback only) every local peer is an admin; with
// `mode: insecure` nobody is.
#pragma once

namespace flover {

enum class ClientRole { kClient, kAdmin };

}  // namespace flover
