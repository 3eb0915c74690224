// The security section of the cluster config (SecuritySettings): read with paths
// relative to the file, every rule with its key path, written and read back, never on
// the wire; and the coordinator's start-up rule as far as the config tells
// (CheckEndpointExposure, IsLoopbackEndpoint).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/cluster_config_proto.h"
#include "common/cluster_config_writer.h"
#include "tests/common/cluster_config_test_util.h"

namespace flover {
namespace {

using ::testing::HasSubstr;
using namespace config_testing;

const char* kCurve = R"(
security:
  mode: curve
  coordinator_key: keys/coordinator.key
  coordinator_public_key: keys/coordinator.pub
  worker_key: /etc/flover/worker.key
  client_key: keys/up.key
  worker_keys: keys/workers
  client_keys: keys/clients/
  admin_keys: ${KEYS_DIR:-keys}/admins
)";

TEST(SecurityConfig, AbsentSectionIsNone) {
  Result<ClusterConfig> config = Parse(kMinimal);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->security, SecuritySettings{});
  EXPECT_EQ(config->security.mode, SecurityMode::kNone);
}

TEST(SecurityConfig, CurvePathsAreResolvedAgainstTheConfigFolder) {
  Result<ClusterConfig> config = Parse(With(kCurve), "/etc/flover");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const SecuritySettings& s = config->security;
  EXPECT_EQ(s.mode, SecurityMode::kCurve);
  EXPECT_EQ(s.coordinator_key, "/etc/flover/keys/coordinator.key");
  EXPECT_EQ(s.coordinator_public_key, "/etc/flover/keys/coordinator.pub");
  EXPECT_EQ(s.worker_key, "/etc/flover/worker.key");
  EXPECT_EQ(s.client_key, "/etc/flover/keys/up.key");
  EXPECT_EQ(s.worker_keys, "/etc/flover/keys/workers");
  EXPECT_EQ(s.client_keys, "/etc/flover/keys/clients/");
  EXPECT_EQ(s.admin_keys, "/etc/flover/keys/admins");
  ScopedEnv keys_dir("KEYS_DIR", "/run/credentials");
  EXPECT_EQ(Parse(With(kCurve), "/etc/flover")->security.admin_keys, "/run/credentials/admins");
}

TEST(SecurityConfig, InsecureNeedsNoKeys) {
  Result<ClusterConfig> config = Parse(With("security: {mode: insecure}\n"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->security.mode, SecurityMode::kInsecure);
}

TEST(SecurityConfig, EveryRuleNamesTheKey) {
  ExpectError(With("security: {coordinator_key: a.key}\n"), {"x.yaml: security.mode: required key is missing"});
  ExpectError(With("security: {mode: tls}\n"), {"x.yaml: security.mode: 'tls' is not curve or insecure"});
  ExpectError(With("security: {mode: curve, keys: a}\n"), {"x.yaml: security.keys: unknown key"});
  ExpectError(With("security: {mode: insecure, worker_keys: w/}\n"),
              {"x.yaml: security.worker_keys: is only used with mode curve"});
  ExpectError(With("security: {mode: curve, coordinator_public_key: c.pub, worker_keys: w, client_keys: c}\n"),
              {"x.yaml: security.coordinator_key: required with mode curve", "flover keygen"});
  ExpectError(With("security: {mode: curve, coordinator_key: c.key, worker_keys: w, client_keys: c}\n"),
              {"x.yaml: security.coordinator_public_key: required with mode curve"});
  ExpectError(With("security: {mode: curve, coordinator_key: c.key, coordinator_public_key: c.pub, client_keys: c}\n"),
              {"x.yaml: security.worker_keys: required with mode curve"});
  ExpectError(With("security: {mode: curve, coordinator_key: c.key, coordinator_public_key: c.pub, worker_keys: w}\n"),
              {"x.yaml: security: mode curve needs client_keys or admin_keys"});
  // admin_keys alone is enough.
  EXPECT_TRUE(Parse(With("security: {mode: curve, coordinator_key: c.key, coordinator_public_key: c.pub, "
                         "worker_keys: w, admin_keys: a}\n"))
                  .ok());
}

TEST(SecurityConfig, WriterRoundTripsAndNeverWritesAnAbsentSection) {
  Result<ClusterConfig> config = Parse(With(kCurve), "/etc/flover");
  ASSERT_TRUE(config.ok());
  const std::string yaml = ToYaml(*config);
  Result<ClusterConfig> again = ParseClusterConfig(yaml, "x.yaml", "/elsewhere");
  ASSERT_TRUE(again.ok()) << again.status().ToString() << "\n" << yaml;
  EXPECT_EQ(again->security, config->security);  // absolute paths stay where they were
  EXPECT_THAT(ToYaml(*Parse(kMinimal)), ::testing::Not(HasSubstr("security")));
  Result<ClusterConfig> insecure = Parse(With("security: {mode: insecure}\n"));
  EXPECT_EQ(Parse(ToYaml(*insecure))->security.mode, SecurityMode::kInsecure);
}

TEST(SecurityConfig, NeverOnTheWire) {
  Result<ClusterConfig> config = Parse(With(kCurve), "/etc/flover");
  ASSERT_TRUE(config.ok());
  const std::string bytes = ToProto(*config).SerializeAsString();
  for (const char* piece : {"keys/", ".key", ".pub", "curve", "/etc/flover/worker"})
    EXPECT_THAT(bytes, ::testing::Not(HasSubstr(piece)));
  proto::ClusterConfig parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  Result<ClusterConfig> worker_side = FromProto(parsed);
  ASSERT_TRUE(worker_side.ok()) << worker_side.status().ToString();
  EXPECT_EQ(worker_side->security, SecuritySettings{});
}

TEST(EndpointExposure, WithoutSecurityOnlyLoopbackBinds) {
  struct Case {
    std::string client;
    bool ok;
  };
  const Case cases[] = {
      {"tcp://127.0.0.1:5555", true},
      {"tcp://127.0.0.2:*", true},
      {"tcp://localhost:5555", true},
      {"tcp://[::1]:5555", true},
      {"ipc:///tmp/x", true},
      {"inproc://x", true},
      {"tcp://coordinator.internal:5555", true},  // a name: the coordinator checks what it bound
      {"tcp://*:5555", false},
      {"tcp://0.0.0.0:5555", false},
      {"tcp://192.168.1.5:5555", false},
      {"tcp://[::]:5555", false},
      {"tcp://[fe80::1]:5555", false},
      {"tcp://10.0.0.1:*", false},
  };
  for (const Case& c : cases) {
    Result<ClusterConfig> config = Parse("endpoints:\n  control: tcp://127.0.0.1:5556\n  client: '" + c.client +
                                         "'\nmodel:\n  path: dummy:tiny\n");
    ASSERT_TRUE(config.ok()) << c.client << ": " << config.status().ToString();
    const Status exposure = CheckEndpointExposure(*config);
    EXPECT_EQ(exposure.ok(), c.ok) << c.client << ": " << exposure.ToString();
    if (!c.ok) {
      EXPECT_THAT(exposure.message(), HasSubstr("x.yaml: endpoints.client: '" + c.client + "' binds a non-loopback"));
      EXPECT_THAT(exposure.message(), HasSubstr("add a security section (docs/security.md) or bind 127.0.0.1"));
    }
    // With a security section, any address.
    config->security.mode = SecurityMode::kInsecure;
    EXPECT_TRUE(CheckEndpointExposure(*config).ok()) << c.client;
  }
}

TEST(EndpointExposure, BoundEndpoints) {
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:4000"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.1.2.3:4000"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::1]:4000"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::ffff:127.0.0.1]:4000"));
  EXPECT_TRUE(IsLoopbackEndpoint("ipc:///run/x"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://0.0.0.0:4000"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://192.168.1.5:4000"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://[::]:4000"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://host.example:4000"));  // bound endpoints are numeric
}

}  // namespace
}  // namespace flover
