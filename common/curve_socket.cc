#include "common/curve_socket.h"

#include <cerrno>
#include <functional>

namespace flover {
namespace {

// ZMQ_ZAP_ENFORCE_DOMAIN is a draft option of libzmq 4.3 (zmq.h hides it without
// ZMQ_BUILD_DRAFT_API); Debian's libzmq accepts it. Where it does not, the ZAP handler
// is bound before any socket binds and closed after them, so it is never missing.
constexpr int kZapEnforceDomain = 93;

Status Apply(const char* what, const std::function<void()>& set) {
  try {
    set();
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot set ") + what + " on a socket: " + e.what());
  }
  return Status::Ok();
}

}  // namespace

Status ApplyZapDomain(zmq::socket_t& socket, const std::string& zap_domain) {
  return Apply("the ZAP domain", [&] {
    socket.set(zmq::sockopt::zap_domain, zap_domain);
    const int on = 1;
    if (zmq_setsockopt(socket.handle(), kZapEnforceDomain, &on, sizeof(on)) != 0 && zmq_errno() != EINVAL)
      throw zmq::error_t();
  });
}

Status ApplyCurveServer(zmq::socket_t& socket, const CurveKeyPair& own, const std::string& zap_domain) {
  FLOVER_RETURN_IF_ERROR(ApplyZapDomain(socket, zap_domain));
  return Apply("the CURVE server options", [&] {
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(own.secret_key.bytes.data(), kCurveKeyBytes));
  });
}

Status ApplyCurveClient(zmq::socket_t& socket, const CurveClientKeys& keys) {
  return Apply("the CURVE client options", [&] {
    socket.set(zmq::sockopt::curve_serverkey, zmq::const_buffer(keys.server.bytes.data(), kCurveKeyBytes));
    socket.set(zmq::sockopt::curve_publickey, zmq::const_buffer(keys.own.public_key.bytes.data(), kCurveKeyBytes));
    socket.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(keys.own.secret_key.bytes.data(), kCurveKeyBytes));
  });
}

Result<CurveClientKeys> LoadCurveClientKeys(const std::string& key_file, const std::string& server_key_file) {
  CurveClientKeys keys;
  FLOVER_ASSIGN_OR_RETURN(keys.own, LoadCurveKeyPair(key_file));
  FLOVER_ASSIGN_OR_RETURN(keys.server, LoadCurvePublicKey(server_key_file));
  return keys;
}

}  // namespace flover
