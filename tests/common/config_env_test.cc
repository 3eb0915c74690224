// Tests environment expansion (common/config_env.h): directly, and as every scalar of a
// YAML config gets it (errors name the file and the key).
#include "common/config_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/common/cluster_config_test_util.h"

namespace flover {
namespace {

using ::testing::HasSubstr;
using namespace config_testing;

// ---- environment expansion -------------------------------------------------------

TEST(ConfigEnv, ExpandEnvDirectly) {
  ScopedEnv set("FLOVER_TEST_HOST", "h1");
  ScopedEnv unset("FLOVER_TEST_UNSET", nullptr);
  ScopedEnv empty("FLOVER_TEST_EMPTY", "");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"plain", "plain"},
      {"${FLOVER_TEST_HOST}", "h1"},
      {"a${FLOVER_TEST_HOST}b${FLOVER_TEST_HOST}", "ah1bh1"},
      {"${FLOVER_TEST_UNSET:-d}", "d"},
      {"${FLOVER_TEST_EMPTY:-d}", "d"},
      {"${FLOVER_TEST_EMPTY}", ""},
      {"${FLOVER_TEST_HOST:-d}", "h1"},
      {"${FLOVER_TEST_UNSET:-}", ""},
      {"${FLOVER_TEST_UNSET:-a:-b}", "a:-b"},
      {"$$", "$"},
      {"$${FLOVER_TEST_HOST}", "${FLOVER_TEST_HOST}"},
      {"$x $", "$x $"},
  };
  for (const auto& [text, expected] : cases) {
    Result<std::string> out = ExpandEnv(text);
    ASSERT_TRUE(out.ok()) << text << ": " << out.status().ToString();
    EXPECT_EQ(*out, expected) << text;
  }
  for (const auto& [text, piece] : std::vector<std::pair<std::string, std::string>>{
           {"${FLOVER_TEST_UNSET}", "environment variable FLOVER_TEST_UNSET is not set"},
           {"${FLOVER_TEST_HOST", "unterminated '${'"},
           {"${9X}", "'${9X}' is not a variable reference"},
           {"${A-B}", "is not a variable reference"}}) {
    Result<std::string> out = ExpandEnv(text);
    ASSERT_FALSE(out.ok()) << text;
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(out.status().message(), HasSubstr(piece)) << text;
  }
}

TEST(ConfigEnv, EscapeEnvIsUndoneByExpandEnv) {
  ScopedEnv set("FLOVER_TEST_HOST", "h1");
  for (const std::string text : {"", "$", "$$", "${FLOVER_TEST_HOST}", "a$b$${X:-y}$", "no dollars"}) {
    Result<std::string> out = ExpandEnv(EscapeEnv(text));
    ASSERT_TRUE(out.ok()) << text << ": " << out.status().ToString();
    EXPECT_EQ(*out, text);
  }
  EXPECT_EQ(EscapeEnv("a$b"), "a$$b");
}


TEST(ClusterConfigEnv, ExpandsVariablesAndDefaults) {
  ScopedEnv host("FLOVER_TEST_HOST", "10.1.2.3");
  ScopedEnv unset("FLOVER_TEST_UNSET", nullptr);
  ScopedEnv empty("FLOVER_TEST_EMPTY", "");
  ScopedEnv depth("FLOVER_TEST_DEPTH", "4");
  Result<ClusterConfig> config = Parse(R"(
cluster: {name: "n-${FLOVER_TEST_EMPTY}-${FLOVER_TEST_UNSET:-fallback}-${FLOVER_TEST_EMPTY:-e}"}
endpoints:
  control: tcp://${FLOVER_TEST_HOST}:5556
  client: tcp://${FLOVER_TEST_UNSET:-127.0.0.1}:${FLOVER_TEST_UNSET:-*}
model:
  path: dummy:${FLOVER_TEST_UNSET:-llama-7b}
scheduler: {pipeline_depth: "${FLOVER_TEST_DEPTH}"}
workers:
  - {replica: 0, rank: 0, host: "${FLOVER_TEST_HOST}"}
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->name, "n--fallback-e");
  EXPECT_EQ(config->endpoints.control, "tcp://10.1.2.3:5556");
  EXPECT_EQ(config->endpoints.client, "tcp://127.0.0.1:*");
  EXPECT_EQ(config->model.path, "dummy:llama-7b");
  EXPECT_EQ(config->scheduler.pipeline_depth, 4);
  EXPECT_EQ(config->workers[0].host, "10.1.2.3");
}

TEST(ClusterConfigEnv, DollarEscapesAndLoneDollars) {
  ScopedEnv var("FLOVER_TEST_HOST", "h");
  Result<ClusterConfig> config = Parse(With("cluster: {name: \"a$$b $${FLOVER_TEST_HOST} $x $\"}\n"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->name, "a$b ${FLOVER_TEST_HOST} $x $");
}

TEST(ClusterConfigEnv, Errors) {
  ScopedEnv unset("FLOVER_TEST_UNSET", nullptr);
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556}\nmodel:\n  path: ${FLOVER_TEST_UNSET}/m.bin\n",
              {"x.yaml: model.path: environment variable FLOVER_TEST_UNSET is not set"});
  ExpectError(With("cluster: {name: \"${FLOVER_TEST_UNSET\"}\n"), {"x.yaml: cluster.name: unterminated '${'"});
  ExpectError(With("cluster: {name: \"${1X}\"}\n"), {"x.yaml: cluster.name: '${1X}' is not a variable reference"});
  ExpectError(With("cluster: {name: \"${}\"}\n"), {"x.yaml: cluster.name:", "not a variable reference"});
  ScopedEnv bad("FLOVER_TEST_DEPTH", "deep");
  ExpectError(With("scheduler: {pipeline_depth: \"${FLOVER_TEST_DEPTH}\"}\n"),
              {"x.yaml: scheduler.pipeline_depth: expected an integer, got 'deep'"});
}

}  // namespace
}  // namespace flover
