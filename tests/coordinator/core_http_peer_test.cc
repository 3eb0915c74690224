// The coordinator's own HTTP server as a client of the core (peer ids kHttpPeerPrefix +
// its routing id): exempt from the per-connection limits, which it enforces per HTTP
// connection itself (docs/http.md); a TCP client with the same limits is held to them
// (core_limits_test.cc).
#include <gtest/gtest.h>

#include "coordinator/client_limiter.h"
#include "tests/coordinator/core_harness.h"

namespace flover::coordinator_testing {
namespace {

using namespace std::chrono_literals;

const std::string kHttpPeer = std::string(kHttpPeerPrefix) + std::string("\0abcd", 5);

TEST(HttpPeer, OnlyThePrefixMarksIt) {
  EXPECT_TRUE(IsHttpPeer(kHttpPeer));
  EXPECT_FALSE(IsHttpPeer(std::string("\0abcd", 5)));  // a TCP client's routing id
  EXPECT_FALSE(IsHttpPeer("http:abc"));
  EXPECT_FALSE(IsHttpPeer(""));
}

TEST_F(CoreTest, TheHttpPeerIsExemptFromThePerConnectionLimits) {
  Options o;
  o.limits.max_requests_per_client = 2;
  o.limits.status_per_client_per_second = 1;
  Start(o);
  SimClient& http = AddClient(ClientRole::kClient, kHttpPeer);
  SimWorker& w = AddWorker();
  const proto::RegisterReply reply = w.Register();
  ASSERT_TRUE(reply.accepted());
  w.Subscribe(reply);
  w.Ready(TestModel(), 16);
  for (int i = 0; i < 5; ++i) {
    http.Submit("http-1-" + std::to_string(i), {1, 2}, 3);
    ExpectAccepted(http, "http-1-" + std::to_string(i));
  }
  proto::ClientMessage status;
  status.mutable_status();
  for (int i = 0; i < 3; ++i) http.Send(status);
  Advance(CoordinatorCore::kStatusEvery);
  int n_status = 0;
  while (std::optional<proto::ServerMessage> m = http.TryRecv()) {
    EXPECT_FALSE(m->has_error()) << m->DebugString();
    if (m->has_status()) ++n_status;
  }
  EXPECT_EQ(n_status, 3);
}

}  // namespace
}  // namespace flover::coordinator_testing
