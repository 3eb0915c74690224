#include "common/handshake_monitor.h"

#include <utility>

namespace flover {

void HandshakeMonitor::Watch(zmq::socket_t& socket, const std::string& name, Options options) {
  options_ = std::move(options);
  monitor_.Watch(socket, name,
                 ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
}

Result<bool> HandshakeMonitor::Drain() {
  if (refusal_) return *refusal_;
  Result<bool> result = ReadEvents();
  if (!result.ok()) refusal_ = result.status();
  return result;
}

Result<bool> HandshakeMonitor::ReadEvents() {
  const Options& o = options_;
  const std::string coordinator = "the coordinator at " + o.endpoint;
  // What a handshake that ends without a reason means: with CURVE, the coordinator could
  // not read our HELLO (a wrong server key); without, it speaks CURVE (it closes before
  // our side has read its greeting, or our side fails on it: a mismatch).
  const Status dropped = o.curve ? PermissionDenied(coordinator +
                                                    " dropped the connection during the CURVE handshake: is the server "
                                                    "key this " +
                                                    o.who + " pins (" + o.key_flags +
                                                    ") the coordinator's public key (security.coordinator_public_key)?")
                                 : FailedPrecondition(coordinator + " requires CURVE: give this " + o.who +
                                                      " its key pair and the coordinator's public key (" + o.key_flags +
                                                      "; docs/security.md)");
  bool closed = false;
  for (const DisconnectMonitor::Event& e : monitor_.DrainEvents()) {
    switch (e.event) {
      case ZMQ_EVENT_CONNECTED: handshaking_ = true; break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        handshaking_ = false;
        established_ = true;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        if (e.value == 500) {
          return ResourceExhausted(coordinator + " refused the connection: it has as many client connections as it " +
                                   "allows (limits.max_client_connections); try again later");
        }
        return PermissionDenied(coordinator + " refused this " + o.who + "'s key (ZAP status " +
                                std::to_string(e.value) + "): its public key is not among the " + o.who +
                                " keys the coordinator admits (security." + o.who + "_keys" +
                                (o.who == "client" ? " or admin_keys" : "") + "; docs/security.md)");
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if (e.value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH && o.curve) {
          return FailedPrecondition(coordinator + " does not use CURVE (its config has no security mode curve): " +
                                    "connect without " + o.key_flags);
        }
        return dropped;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return dropped;
      case ZMQ_EVENT_DISCONNECTED:
        if (handshaking_) return dropped;
        closed = true;
        break;
      default: break;
    }
  }
  return closed;
}

bool IsHandshakeRefusal(const Status& status) {
  return status.code() == StatusCode::kPermissionDenied || status.code() == StatusCode::kResourceExhausted ||
         status.code() == StatusCode::kFailedPrecondition;
}

}  // namespace flover
