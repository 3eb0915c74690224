// Who may connect to the coordinator: ZAP (ZeroMQ RFC 27), decided from the security
// section (docs/security.md).
//
// libzmq asks the ZAP handler of a context (a REP socket on inproc://zeromq.zap.01) about
// every new connection of a socket that has a ZAP domain, before the connection carries a
// message: with CURVE after the peer proved its key pair, with plain text (NULL) too. The
// coordinator's sockets use two domains:
//   "client"  the client ROUTER: client and admin keys; at most
//             limits.max_client_connections open connections
//   "worker"  the control ROUTER and the plans PUB: worker keys only, so a client key can
//             neither register as a worker nor read the plans (prompts, sampling, seeds)
//
// DecideZap is the decision, a pure function. An admitted peer gets a user id that
// libzmq attaches to each of its messages ("User-Id"):
//   mode curve:          "<role>:<Z85 public key>"  role = worker | client | admin
//   no security section: "worker:loopback", "admin:loopback" (every local peer is an admin)
//   mode insecure:       "worker:insecure", "client:insecure" (nobody is an admin)
// A refused peer gets a status code, which its libzmq reports to it
// (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH with that value):
//   400  its key is not admitted in this domain (or a mechanism this mode does not take)
//   500  the client socket is at limits.max_client_connections. Not 300 ("try later"),
//        which would fit: libzmq 4.3 answers 300 with silence, and the client would hang
//        until its handshake timed out. 500 is used for nothing else, so a client can
//        say "the coordinator is at its connection limit".
//
// Since keys can be reloaded (SIGHUP) while connections stay open, each message's user
// id is checked against the keys of now (ClientRoleOf, IsAdmittedWorker): a key taken
// out of the lists stops working at once on connections it opened before.
//
// Thread-safety: AccessList and the functions are values / pure; a ZapHandler belongs to
// the thread that owns the coordinator's sockets.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "common/cluster_config.h"
#include "common/curve_keys.h"
#include "common/status.h"
#include "coordinator/client_role.h"

namespace flover {

inline constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
inline constexpr const char* kClientDomain = "client";
inline constexpr const char* kWorkerDomain = "worker";
inline constexpr const char* kZapRefused = "400";
inline constexpr const char* kZapAtConnectionLimit = "500";

enum class PeerRole { kWorker, kClient, kAdmin };
const char* PeerRoleName(PeerRole role);  // "worker", "client", "admin"

// The public keys admitted, each with its role and name (its .pub file's name).
class AccessList {
 public:
  struct Entry {
    PeerRole role;
    std::string name;
  };

  AccessList() = default;
  // Reads security.worker_keys, client_keys and admin_keys (LoadCurvePublicKeys' errors,
  // with the key path). A key listed as a worker's and as a client's or admin's is
  // InvalidArgument: a key has one side. One listed as a client's and an admin's is an
  // admin (so a key moves from clients to admins without a moment refused).
  static Result<AccessList> Load(const SecuritySettings& security);
  // The same from keys in memory (tests).
  static Result<AccessList> FromKeys(const std::vector<NamedCurveKey>& workers,
                                     const std::vector<NamedCurveKey>& clients,
                                     const std::vector<NamedCurveKey>& admins);

  const Entry* Find(const CurvePublicKey& key) const;
  int Count(PeerRole role) const;

 private:
  std::map<CurvePublicKey, Entry> keys_;
};

struct ZapRequest {
  std::string domain;
  std::string mechanism;   // "NULL", "CURVE", ...
  std::string public_key;  // CURVE: the peer's 32-byte public key; else empty
};

struct ZapDecision {
  bool admitted = false;
  std::string status_code;  // "200", or kZapRefused / kZapAtConnectionLimit
  std::string status_text;  // why (logged; libzmq sends the peer only the code)
  std::string user_id;      // admitted: see the header comment
};

struct ZapPolicy {
  SecurityMode mode = SecurityMode::kNone;
  const AccessList* keys = nullptr;  // mode curve; REQUIRES: not null then
  // Open connections of the client socket, the one asking included.
  int client_connections = 0;
  int max_client_connections = 0;
};

ZapDecision DecideZap(const ZapRequest& request, const ZapPolicy& policy);

// The role of a client message whose User-Id is `user_id` (nullptr: none), under the
// keys of now: kClient or kAdmin, or nullopt when it is not a client's or admin's id or
// its key is no longer admitted.
std::optional<ClientRole> ClientRoleOf(const char* user_id, SecurityMode mode, const AccessList& keys);
// True when `user_id` is a worker's and its key is still admitted as one.
bool IsAdmittedWorker(const char* user_id, SecurityMode mode, const AccessList& keys);

// The ZAP socket. Binds kZapEndpoint in `context`: create it before any socket with a
// ZAP domain binds, and close it after them. Throws zmq::error_t.
class ZapHandler {
 public:
  explicit ZapHandler(zmq::context_t& context);

  // What to poll for ZMQ_POLLIN.
  void* handle() { return socket_.handle(); }

  // Answers every waiting request with `decide`'s decision; a request that is not ZAP
  // 1.0 gets 400. Returns the decisions made, in order (for logging).
  std::vector<ZapDecision> Drain(const std::function<ZapDecision(const ZapRequest&)>& decide);

  void Close();

 private:
  zmq::socket_t socket_;
};

}  // namespace flover
