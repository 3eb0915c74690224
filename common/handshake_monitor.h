// HandshakeMonitor: what became of a connecting socket's connections to the coordinator,
// from libzmq's socket monitor, so that a refused handshake is a clear error at once
// instead of a silent wait (libzmq neither reports it on the socket nor, after a ZAP
// refusal, connects again):
//   ZMQ_EVENT_HANDSHAKE_FAILED_AUTH 400   the coordinator does not admit this key
//                                   500   the coordinator is at its client-connection limit
//   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL   the two sides disagree on CURVE (a mismatch)
//   a connection closed during the        with CURVE: the coordinator could not decrypt our
//   handshake (or _FAILED_NO_DETAIL)      HELLO, the server key we pin is not its public
//                                         key; without: the coordinator requires CURVE
//                                         (it closed before our side saw the mismatch)
// and whether an established connection closed (the coordinator stopped or crashed).
//
// Thread-safety: none; it belongs to the thread that owns the watched socket.
#pragma once

#include <optional>
#include <string>

#include <zmq.hpp>

#include "common/disconnect_monitor.h"
#include "common/status.h"

namespace flover {

class HandshakeMonitor {
 public:
  struct Options {
    std::string endpoint;   // for messages
    bool curve = false;     // this side is a CURVE client
    std::string who;        // "client", "worker": whose key it is, for messages
    std::string key_flags;  // how this side is given its keys, for messages ("--key and --server-key")
  };

  explicit HandshakeMonitor(zmq::context_t& context) : monitor_(context) {}

  // Starts watching `socket` (before it connects); `name` is unique in the context.
  // Throws zmq::error_t.
  void Watch(zmq::socket_t& socket, const std::string& name, Options options);

  void* handle() { return monitor_.handle(); }

  // True once a handshake succeeded (something answers at the endpoint: with CURVE, the
  // coordinator whose key is pinned, admitting ours), as of the last Drain; it stays true
  // when that connection closes later.
  bool established() const { return established_; }

  // Reads the pending events. A refused handshake is an error: PermissionDenied (a key
  // that is not admitted; a CURVE handshake dropped, which a wrong server key causes),
  // ResourceExhausted (the connection limit) or FailedPrecondition (one side uses CURVE,
  // the other not); libzmq does not try that connection again, so the refusal stays:
  // every later call returns it too. Otherwise true when an established connection
  // closed since the last call.
  Result<bool> Drain();

  void Close() { monitor_.Close(); }

 private:
  Result<bool> ReadEvents();

  DisconnectMonitor monitor_;
  Options options_;
  std::optional<Status> refusal_;  // the first refusal
  bool handshaking_ = false;       // connected, handshake not done yet
  bool established_ = false;       // a handshake succeeded
};

// True for the codes of Drain's refusals: waiting longer on that socket will not help.
bool IsHandshakeRefusal(const Status& status);

}  // namespace flover
