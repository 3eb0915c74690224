// Client against a scripted coordinator: a real ROUTER socket in the test. A connection
// that closes is reported at once; replies that came before the close are read first;
// no coordinator at all is silence, not an error.
#include "client/client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <array>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/protocol.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

// A coordinator's client socket: receives one request, can answer and close.
class ScriptedCoordinator {
 public:
  ScriptedCoordinator() : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }
  const std::string& endpoint() const { return endpoint_; }

  // The next request's client identity (waits up to 5 s).
  std::string Receive() {
    std::vector<zmq::message_t> parts;
    socket_.set(zmq::sockopt::rcvtimeo, 5000);
    if (!zmq::recv_multipart(socket_, std::back_inserter(parts))) return "";
    return parts.size() == 2 ? parts[0].to_string() : "";
  }
  void Reply(const std::string& identity, const proto::ServerMessage& m) {
    const std::string payload = Serialize(m);
    const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(identity), zmq::buffer(payload)};
    zmq::send_multipart(socket_, frames);
  }
  void Close() { socket_.close(); }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string endpoint_;
};

proto::ServerMessage Accepted(const std::string& id) {
  proto::ServerMessage m;
  m.mutable_accepted()->set_client_request_id(id);
  m.mutable_accepted()->set_request_id(1);
  return m;
}

TEST(ClientTest, AConnectionThatClosesIsUnavailableAtOnceAfterTheRepliesBeforeIt) {
  ScriptedCoordinator coordinator;
  Result<std::unique_ptr<Client>> client = Client::Connect(coordinator.endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE((*client)->Submit("r", "hello", {}, {}, {}, true).ok());
  const std::string identity = coordinator.Receive();
  ASSERT_FALSE(identity.empty());
  coordinator.Reply(identity, Accepted("r"));
  std::this_thread::sleep_for(100ms);  // the reply is on the client's side
  coordinator.Close();                // the coordinator crashes

  Result<std::optional<proto::ServerMessage>> m = (*client)->Receive(5000ms);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(m->has_value() && (*m)->has_accepted()) << "the reply that came before the close comes first";
  const auto t0 = std::chrono::steady_clock::now();
  m = (*client)->Receive(10000ms);
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(m.ok()) << "a closed connection must not look like silence";
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(m.status().message().find("the connection to the coordinator at " + coordinator.endpoint() + " closed"),
            std::string::npos)
      << m.status().message();
  EXPECT_LT(waited, 2s);
  // Reported once: afterwards it is silence again (the socket reconnects by itself).
  m = (*client)->Receive(100ms);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->has_value());
}

TEST(ClientTest, NoCoordinatorIsSilenceNotAnError) {
  std::string endpoint;
  {
    ScriptedCoordinator gone;  // a port that nothing listens on any more
    endpoint = gone.endpoint();
  }
  Result<std::unique_ptr<Client>> client = Client::Connect(endpoint);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE((*client)->RequestStatus().ok());
  Result<std::optional<proto::ServerMessage>> m = (*client)->Receive(500ms);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->has_value());
}

}  // namespace
}  // namespace flover
