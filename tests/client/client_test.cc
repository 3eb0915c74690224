// Client against a scripted coordinator: a real ROUTER socket in the test. A connection
// that closes is reported at once; replies that came before the close are read first;
// no coordinator at all is silence, not an error.
#include "client/client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

#include "tests/client/scripted_coordinator.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

using testing::AcceptedReply;
using testing::ScriptedCoordinator;

TEST(ClientTest, AConnectionThatClosesIsUnavailableAtOnceAfterTheRepliesBeforeIt) {
  ScriptedCoordinator coordinator;
  Result<std::unique_ptr<Client>> client = Client::Connect(coordinator.endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE((*client)->Submit("r", "hello", {}, {}, {}, true).ok());
  std::optional<ScriptedCoordinator::Received> submit = coordinator.Receive();
  ASSERT_TRUE(submit && submit->message.has_submit());
  coordinator.Reply(submit->identity, AcceptedReply("r"));
  coordinator.Close(/*flush=*/true);  // the coordinator crashes after its reply went out

  Result<std::optional<proto::ServerMessage>> m = (*client)->Receive(30s);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_TRUE(m->has_value() && (*m)->has_accepted()) << "the reply that came before the close comes first";
  m = (*client)->Receive(30s);
  ASSERT_FALSE(m.ok()) << "a closed connection must not look like silence";
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(m.status().message().find("the connection to the coordinator at " + coordinator.endpoint() + " closed"),
            std::string::npos)
      << m.status().message();
  // Reported once: afterwards it is silence again (the socket reconnects by itself).
  m = (*client)->Receive(100ms);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->has_value());
}

// A port that nothing listens on any more.
std::string GoneEndpoint() {
  ScriptedCoordinator gone;
  return gone.endpoint();
}

TEST(ClientTest, NoCoordinatorIsSilenceNotAnError) {
  const std::string endpoint = GoneEndpoint();
  Result<std::unique_ptr<Client>> client = Client::Connect(endpoint);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE((*client)->RequestStatus().ok());
  Result<std::optional<proto::ServerMessage>> m = (*client)->Receive(500ms);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->has_value());
}

TEST(ClientTest, WaitConnectedReturnsOnceTheCoordinatorAnswers) {
  ScriptedCoordinator coordinator;
  Result<std::unique_ptr<Client>> client = Client::Connect(coordinator.endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE((*client)->WaitConnected(60s).ok());
  EXPECT_TRUE((*client)->WaitConnected(0ms).ok()) << "connected stays connected";
}

TEST(ClientTest, WaitConnectedToNothingIsUnavailableNamingTheEndpoint) {
  const std::string endpoint = GoneEndpoint();
  Result<std::unique_ptr<Client>> client = Client::Connect(endpoint);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const Status s = (*client)->WaitConnected(200ms);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("nothing answered at " + endpoint), std::string::npos) << s.message();
}

TEST(ClientTest, TextThatIsNotUtf8IsRefusedAndNotSent) {
  ScriptedCoordinator coordinator;
  Result<std::unique_ptr<Client>> client = Client::Connect(coordinator.endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  StopParams stop;
  const Status prompt = (*client)->Submit("a", "caf\xff", {}, {}, stop, false);
  EXPECT_EQ(prompt.code(), StatusCode::kInvalidArgument) << prompt.ToString();
  EXPECT_NE(prompt.message().find("the prompt is not valid UTF-8"), std::string::npos) << prompt.message();
  stop.stop_strings = {"fine", "\xc3"};
  const Status stop_string = (*client)->Submit("b", "ok", {}, {}, stop, false);
  EXPECT_EQ(stop_string.code(), StatusCode::kInvalidArgument) << stop_string.ToString();
  EXPECT_NE(stop_string.message().find("stop string 1"), std::string::npos) << stop_string.message();
  // The next valid submit is the first message the coordinator gets.
  ASSERT_TRUE((*client)->Submit("c", "caf\xc3\xa9", {}, {}, {}, false).ok());
  std::optional<ScriptedCoordinator::Received> first = coordinator.Receive();
  ASSERT_TRUE(first && first->message.has_submit());
  EXPECT_EQ(first->message.submit().client_request_id(), "c");
}

}  // namespace
}  // namespace flover
