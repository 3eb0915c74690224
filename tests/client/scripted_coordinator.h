// ScriptedCoordinator: a coordinator's client endpoint played by a test: a real ROUTER
// socket bound to a free loopback port, that reads what clients send and answers what
// the test scripts. Helpers build the replies a coordinator sends.
// Thread-safety: none; one thread at a time uses it (it may be handed to another).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "flover.pb.h"

namespace flover::testing {

class ScriptedCoordinator {
 public:
  ScriptedCoordinator();
  const std::string& endpoint() const { return endpoint_; }

  struct Received {
    std::string identity;  // the client's, for Reply
    proto::ClientMessage message;
  };
  // The next message from a client; nullopt after `timeout` or for one that is not a
  // ClientMessage.
  std::optional<Received> Receive(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void Reply(const std::string& identity, const proto::ServerMessage& message);
  // The coordinator crashes: its socket closes, and replies not yet sent are lost. With
  // `flush`, the replies sent before go out first and then the connections close, as
  // those a crashed process had written to its TCP sockets.
  void Close(bool flush = false);

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string endpoint_;
};

proto::ServerMessage AcceptedReply(const std::string& id, int replica = 0, int prompt_tokens = 0);
proto::ServerMessage TokenReply(const std::string& id, const std::vector<int>& tokens, const std::string& text);
proto::ServerMessage DoneReply(const std::string& id, proto::FinishReason finish, const std::vector<int>& tokens,
                               const std::string& text);
proto::ServerMessage ErrorReply(const std::string& id, const std::string& code, const std::string& message);

}  // namespace flover::testing
