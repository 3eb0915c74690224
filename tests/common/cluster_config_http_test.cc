// The HTTP settings of the cluster config: endpoints.http, the http: section,
// model.name and model.chat_template (reader, Validate, the exposure rule, the writer
// and the wire form), and what the coordinator derives from them (ServedModelName,
// CoordinatorFilesNeeded).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/cluster_config_proto.h"
#include "common/cluster_config_writer.h"
#include "common/file_limit.h"
#include "tests/common/cluster_config_test_util.h"

namespace flover {
namespace {

using config_testing::ExpectError;
using config_testing::kMinimal;
using config_testing::Parse;

TEST(ClusterConfigHttp, DefaultsAndEveryKeyRead) {
  Result<ClusterConfig> plain = Parse(kMinimal);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->endpoints.http, "");
  EXPECT_EQ(plain->http, HttpSettings{});
  EXPECT_EQ(plain->http.max_connections, 1024);
  EXPECT_EQ(plain->http.max_body_bytes, 1048576);
  EXPECT_EQ(plain->http.request_timeout_ms, 600000);

  const Result<ClusterConfig> c = [] {
    config_testing::ScopedEnv key("FLOVER_TEST_API_KEY", "sk-from-env");
    return Parse(std::string(kMinimal) + R"(
  name: my-model
  chat_template: chatml
http:
  api_keys: [sk-one, "${FLOVER_TEST_API_KEY}"]
  max_connections: 7
  max_body_bytes: 8
  header_timeout_ms: 9
  idle_timeout_ms: 10
  write_timeout_ms: 11
  request_timeout_ms: 0
  max_n: 13
)");
  }();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model.name, "my-model");
  EXPECT_EQ(c->model.chat_template, "chatml");
  EXPECT_EQ(c->http.api_keys, (std::vector<std::string>{"sk-one", "sk-from-env"}));
  EXPECT_EQ(c->http.max_connections, 7);
  EXPECT_EQ(c->http.max_body_bytes, 8);
  EXPECT_EQ(c->http.header_timeout_ms, 9);
  EXPECT_EQ(c->http.idle_timeout_ms, 10);
  EXPECT_EQ(c->http.write_timeout_ms, 11);
  EXPECT_EQ(c->http.request_timeout_ms, 0);
  EXPECT_EQ(c->http.max_n, 13);

  // The writer and the wire form keep it all (the keys stay off the wire).
  Result<ClusterConfig> again = Parse(ToYaml(*c));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *c);
  Result<ClusterConfig> wire = FromProto(ToProto(*c));
  ASSERT_TRUE(wire.ok()) << wire.status().ToString();
  ClusterConfig without_keys = *c;
  without_keys.http.api_keys.clear();
  EXPECT_EQ(*wire, without_keys);
}

TEST(ClusterConfigHttp, EndpointIsRead) {
  Result<ClusterConfig> c = Parse(R"(
endpoints:
  control: tcp://127.0.0.1:5556
  http: http://127.0.0.1:0
model:
  path: dummy:tiny
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->endpoints.http, "http://127.0.0.1:0");
  const std::optional<HttpAddress> a = ParseHttpEndpoint(c->endpoints.http);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 0);
  const std::optional<HttpAddress> v6 = ParseHttpEndpoint("http://[::1]:8000");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8000);
  for (const char* bad : {"tcp://127.0.0.1:8000", "http://127.0.0.1", "http://:80", "http://h:70000", "http://h:-1",
                          "http://::1:80", "http://h:80/path", "https://h:443"})
    EXPECT_FALSE(ParseHttpEndpoint(bad)) << bad;
}

TEST(ClusterConfigHttp, BadValuesNameTheirKey) {
  const std::string base = "endpoints:\n  control: tcp://127.0.0.1:5556\n";
  ExpectError(base + "  http: http://127.0.0.1\nmodel:\n  path: dummy:tiny\n",
              {"endpoints.http", "is not http://host:port"});
  ExpectError(std::string(kMinimal) + "http:\n  max_connections: 0\n", {"http.max_connections", "must be >= 1"});
  ExpectError(std::string(kMinimal) + "http:\n  request_timeout_ms: -1\n", {"http.request_timeout_ms", ">= 0"});
  ExpectError(std::string(kMinimal) + "http:\n  max_n: x\n", {"http.max_n", "expected an integer"});
  ExpectError(std::string(kMinimal) + "http:\n  api_keys: sk-one\n", {"http.api_keys", "expected a list"});
  ExpectError(std::string(kMinimal) + "http:\n  api_keys: [\"${FLOVER_TEST_UNSET_KEY:-}\"]\n",
              {"http.api_keys[0]", "is empty"});
  ExpectError(std::string(kMinimal) + "http:\n  api_key: [a]\n", {"http.api_key", "unknown key"});
}

TEST(ClusterConfigHttp, OffLoopbackNeedsApiKeys) {
  const auto with = [](const std::string& endpoint, const std::string& keys) {
    return "endpoints:\n  control: tcp://127.0.0.1:5556\n  http: " + endpoint + "\nmodel:\n  path: dummy:tiny\n" +
           (keys.empty() ? "" : "http:\n  api_keys: [" + keys + "]\n");
  };
  for (const char* endpoint : {"http://0.0.0.0:8000", "http://10.1.2.3:8000", "http://[::]:8000"}) {
    Result<ClusterConfig> open = Parse(with(endpoint, ""));
    ASSERT_TRUE(open.ok()) << open.status().ToString();
    const Status s = CheckEndpointExposure(*open);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << endpoint;
    EXPECT_THAT(s.message(), ::testing::HasSubstr("endpoints.http")) << endpoint;
    EXPECT_THAT(s.message(), ::testing::HasSubstr("http.api_keys is empty")) << endpoint;
    Result<ClusterConfig> keyed = Parse(with(endpoint, "sk-1"));
    ASSERT_TRUE(keyed.ok());
    EXPECT_TRUE(CheckEndpointExposure(*keyed).ok()) << endpoint;
  }
  for (const char* endpoint : {"http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:0"}) {
    Result<ClusterConfig> local = Parse(with(endpoint, ""));
    ASSERT_TRUE(local.ok());
    EXPECT_TRUE(CheckEndpointExposure(*local).ok()) << endpoint;
  }
}

TEST(ClusterConfigHttp, ServedModelNameDefaultsToTheFileStem) {
  EXPECT_EQ(ServedModelName({.path = "/m/stories260K/stories260K.bin"}), "stories260K");
  EXPECT_EQ(ServedModelName({.path = "dummy:llama-7b"}), "dummy-llama-7b");
  EXPECT_EQ(ServedModelName({.path = "/m/safetensors-folder/"}), "safetensors-folder");
  EXPECT_EQ(ServedModelName({.path = "/m/Qwen2-0.5B-Instruct"}), "Qwen2-0.5B-Instruct");  // a folder: kept whole
  EXPECT_EQ(ServedModelName({.path = "/m/qwen2-0_5b-instruct-q8_0.gguf"}), "qwen2-0_5b-instruct-q8_0");
  EXPECT_EQ(ServedModelName({.path = "/m/x.gguf", .name = "chosen"}), "chosen");
}

TEST(ClusterConfigHttp, OpenFilesCountHttpConnections) {
  Result<ClusterConfig> c = Parse(kMinimal);
  ASSERT_TRUE(c.ok());
  const int64_t without = CoordinatorFilesNeeded(*c);
  c->http.max_connections = 500;
  EXPECT_EQ(CoordinatorFilesNeeded(*c), without) << "no endpoints.http: no HTTP connections";
  c->endpoints.http = "http://127.0.0.1:0";
  EXPECT_EQ(CoordinatorFilesNeeded(*c), without + 500);
}

TEST(ClusterConfigHttp, LocalConfigServesHttp) {
  Result<ClusterConfig> c = LoadClusterConfig(config_testing::kSourceDir + "/configs/local.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->endpoints.http, "http://127.0.0.1:8000");
  EXPECT_EQ(c->model.chat_template, "chatml");
  EXPECT_EQ(ServedModelName(c->model), "stories260K");
}

}  // namespace
}  // namespace flover
