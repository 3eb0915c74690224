// LocalAddress (common/local_address.h): endpoint parsing, the host a worker was told to
// use, and the local address of a real route.
#include "common/local_address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <optional>
#include <string>
#include <vector>

namespace flover {
namespace {

TEST(LocalAddressTest, ParseTcpEndpoint) {
  struct Case {
    std::string endpoint;
    std::optional<std::string> host;
    std::string port;
  };
  const std::vector<Case> cases = {
      {"tcp://10.0.0.1:5556", "10.0.0.1", "5556"},
      {"tcp://127.0.0.1:*", "127.0.0.1", "*"},
      {"tcp://[::1]:5556", "::1", "5556"},
      {"tcp://node-a.example:80", "node-a.example", "80"},
      {"tcp://*:5556", "*", "5556"},
      {"ipc:///tmp/x", std::nullopt, ""},
      {"inproc://x", std::nullopt, ""},
      {"tcp://10.0.0.1", std::nullopt, ""},
      {"tcp://:5556", std::nullopt, ""},
      {"tcp://10.0.0.1:", std::nullopt, ""},
      {"tcp://::1:5556", std::nullopt, ""},  // IPv6 without brackets
      {"tcp://[]:5556", std::nullopt, ""},
      {"tcp://[::1:5556", std::nullopt, ""},
      {"", std::nullopt, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.endpoint);
    const std::optional<TcpEndpoint> parsed = ParseTcpEndpoint(c.endpoint);
    ASSERT_EQ(parsed.has_value(), c.host.has_value());
    if (!parsed) continue;
    EXPECT_EQ(parsed->host, *c.host);
    EXPECT_EQ(parsed->port, c.port);
  }
}

TEST(LocalAddressTest, IsLoopbackHost) {
  for (const char* host : {"localhost", "127.0.0.1", "127.1.2.3", "::1"}) EXPECT_TRUE(IsLoopbackHost(host)) << host;
  for (const char* host : {"10.0.0.1", "0.0.0.0", "::", "128.0.0.1", "node-a", "", "*", "fe80::1"})
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
}

TEST(LocalAddressTest, ConfiguredWorkerHostPrefersTheFlagThenANonLoopbackFileHost) {
  struct Case {
    std::string flag;
    std::string file_host;
    std::optional<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"", "", std::nullopt},                      // no --host, no file: the route decides
      {"", "127.0.0.1", std::nullopt},             // the reader's default names no network
      {"", "localhost", std::nullopt},
      {"", "::1", std::nullopt},
      {"", "10.0.0.2", "10.0.0.2"},                // the file names this worker's address
      {"", "node-b", "node-b"},
      {"10.0.0.3", "10.0.0.2", "10.0.0.3"},        // --host overrides
      {"127.0.0.1", "10.0.0.2", "127.0.0.1"},      // even with loopback
      {"10.0.0.3", "", "10.0.0.3"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("flag '" + c.flag + "', file '" + c.file_host + "'");
    EXPECT_EQ(ConfiguredWorkerHost(c.flag, c.file_host), c.expected);
  }
}

TEST(LocalAddressTest, TheRouteToLoopbackLeavesFromLoopback) {
  for (const char* endpoint : {"tcp://127.0.0.1:5556", "tcp://127.0.0.1:*"}) {
    Result<std::string> local = LocalAddressToward(endpoint);
    ASSERT_TRUE(local.ok()) << endpoint << ": " << local.status().ToString();
    EXPECT_EQ(*local, "127.0.0.1") << endpoint;
  }
  Result<std::string> named = LocalAddressToward("tcp://localhost:5556");
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  EXPECT_TRUE(IsLoopbackHost(*named)) << *named;
  for (const char* endpoint : {"ipc:///tmp/flover-control", "inproc://control"}) {
    Result<std::string> local = LocalAddressToward(endpoint);
    ASSERT_TRUE(local.ok()) << endpoint << ": " << local.status().ToString();
    EXPECT_EQ(*local, "127.0.0.1") << endpoint;
  }
}

TEST(LocalAddressTest, TheRouteToThisHostsOwnAddressLeavesFromIt) {
  // Each non-loopback IPv4 address of this host's interfaces: the kernel's route to it
  // leaves from that address, not from 127.0.0.1.
  ifaddrs* interfaces = nullptr;
  ASSERT_EQ(getifaddrs(&interfaces), 0);
  std::vector<std::string> addresses;
  for (const ifaddrs* i = interfaces; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof(text));
    if (!IsLoopbackHost(text)) addresses.push_back(text);
  }
  freeifaddrs(interfaces);
  if (addresses.empty()) GTEST_SKIP() << "no non-loopback IPv4 address on this host";
  for (const std::string& address : addresses) {
    Result<std::string> local = LocalAddressToward("tcp://" + address + ":5556");
    ASSERT_TRUE(local.ok()) << address << ": " << local.status().ToString();
    EXPECT_EQ(*local, address);
  }
}

TEST(LocalAddressTest, BadEndpointsAreErrorsThatNameThem) {
  Result<std::string> bad = LocalAddressToward("udp://10.0.0.1:5556");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().ToString().find("udp://10.0.0.1:5556"), std::string::npos) << bad.status().ToString();
  for (const char* wildcard : {"tcp://*:5556", "tcp://0.0.0.0:5556", "tcp://[::]:5556"}) {  // nothing to connect to
    Result<std::string> local = LocalAddressToward(wildcard);
    ASSERT_FALSE(local.ok()) << wildcard;
    EXPECT_EQ(local.status().code(), StatusCode::kInvalidArgument) << wildcard;
    EXPECT_NE(local.status().ToString().find(wildcard), std::string::npos) << local.status().ToString();
  }
}

}  // namespace
}  // namespace flover
