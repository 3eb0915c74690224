// CURVE on a ZeroMQ socket: the options that make a socket a CURVE server (it proves
// its key pair to every peer and learns theirs; a ZAP handler decides who is admitted)
// or a CURVE client (it proves its own key pair and accepts only the server whose public
// key it pins). Set them before the socket binds or connects: libzmq copies a socket's
// options into each listener and connection when it is made.
//
// Thread-safety: call on the thread that owns the socket.
#pragma once

#include <string>

#include <zmq.hpp>

#include "common/curve_keys.h"
#include "common/status.h"

namespace flover {

// What a CURVE client needs: its own key pair and the server's public key.
struct CurveClientKeys {
  CurveKeyPair own;
  CurvePublicKey server;
};

// The server side, for peers authenticated in ZAP domain `zap_domain` (which every
// connection then needs: ZMQ_ZAP_ENFORCE_DOMAIN where libzmq has it, so that a missing
// ZAP handler refuses peers instead of admitting them). Internal on a libzmq error.
[[nodiscard]] Status ApplyCurveServer(zmq::socket_t& socket, const CurveKeyPair& own, const std::string& zap_domain);

// ZAP without CURVE (plain-text NULL mechanism): every connection still asks the ZAP
// handler of its context, in `zap_domain`, before it is admitted.
[[nodiscard]] Status ApplyZapDomain(zmq::socket_t& socket, const std::string& zap_domain);

// The client side.
[[nodiscard]] Status ApplyCurveClient(zmq::socket_t& socket, const CurveClientKeys& keys);

// Reads the key pair file and the server's public key file of a CURVE client (the
// readers' errors).
Result<CurveClientKeys> LoadCurveClientKeys(const std::string& key_file, const std::string& server_key_file);

}  // namespace flover
