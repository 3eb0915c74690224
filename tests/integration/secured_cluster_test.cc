// A secured cluster (security.mode curve, docs/security.md) of the real daemons: started
// by LocalCluster (what flover up runs) with keys made by flover keygen's writer, it
// serves exact tokens to admitted client keys only, shows where the workers run only to
// admin keys, and flover up / flover bench --config wire the keys for their clients.
// Also `flover keygen` itself.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "common/tokenizer.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::ClusterKeys;
using testing::RunShell;
using testing::ShellRun;
using testing::TestCluster;
using testing::TestClusterOptions;

const std::string kSaraStory = " and Ben were playing in the park.";

class SecuredClusterTest : public testing::SecuredClusterFixture {
 protected:
  std::string WriteConfig(const TestClusterOptions& o) const {
    const std::string path = dir_ + "/cluster.yaml";
    std::ofstream(path) << testing::ClusterYaml(o);
    return path;
  }
};

TEST_F(SecuredClusterTest, ServesExactTokensToAdmittedKeysOnly) {
  Result<std::unique_ptr<TestCluster>> cluster = TestCluster::Start(Options());
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  const std::string& endpoint = (*cluster)->client_endpoint();

  Result<std::unique_ptr<Client>> alice = Client::Connect(endpoint, ClusterKeys(keys_, "clients/alice"));
  ASSERT_TRUE(alice.ok());
  Result<Tokenizer> tok = Tokenizer::LoadLlama2c(testing::Tok512Bin());
  ASSERT_TRUE(tok.ok());
  const std::vector<std::vector<int>> prompts = {tok->Encode("Once upon a time"), tok->Encode("The dog ran")};
  {
    RequestSession session(**alice);
    StopParams stop;
    stop.max_tokens = 61;
    ASSERT_TRUE(session.Submit(testing::TextRequest("sara", "Sara", stop)).ok());
    stop.max_tokens = 40;
    for (size_t i = 0; i < prompts.size(); ++i)
      ASSERT_TRUE(session.Submit(testing::TokenRequest("p" + std::to_string(i), prompts[i], stop)).ok());
    const Status waited = session.WaitAll(120s);
    ASSERT_TRUE(waited.ok()) << waited.ToString();
    std::map<std::string, RequestRecord> out;
    for (const RequestRecord& r : session.records()) out[r.id] = r;
    EXPECT_EQ(out["sara"].text.rfind(kSaraStory, 0), 0u) << out["sara"].text << out["sara"].error;
    const std::vector<std::vector<int>> expected = testing::EngineGreedy(prompts, 40);
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(out["p" + std::to_string(i)].tokens, expected[i]);
  }
  // A client key sees no pids or hosts; the admin key (flover up's) does.
  Result<proto::ClusterStatus> as_client = (*alice)->FetchStatus(testing::kStatusWait);
  ASSERT_TRUE(as_client.ok()) << as_client.status().ToString();
  EXPECT_EQ(as_client->replicas(0).workers(1).pid(), 0);
  EXPECT_EQ(as_client->replicas(0).workers(1).host(), "");
  Result<std::unique_ptr<Client>> admin = Client::Connect(endpoint, ClusterKeys(keys_, "admins/up"));
  ASSERT_TRUE(admin.ok());
  Result<proto::ClusterStatus> as_admin = (*admin)->FetchStatus(testing::kStatusWait);
  ASSERT_TRUE(as_admin.ok()) << as_admin.status().ToString();
  EXPECT_EQ(as_admin->replicas(0).workers(1).pid(), (*cluster)->worker(0, 1)->pid());

  // Refused, each with its reason: a key no list admits, a worker's key, plain text.
  auto refusal = [&](const std::optional<CurveClientKeys>& keys) {
    Result<std::unique_ptr<Client>> c = Client::Connect(endpoint, keys);
    EXPECT_TRUE(c.ok());
    return (*c)->FetchStatus(testing::kStatusWait).status();
  };
  EXPECT_EQ(refusal(ClusterKeys(keys_, "other/eve")).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(refusal(ClusterKeys(keys_, "workers/worker")).code(), StatusCode::kPermissionDenied);
  const Status plain = refusal(std::nullopt);
  EXPECT_EQ(plain.code(), StatusCode::kFailedPrecondition) << plain.ToString();
}

TEST_F(SecuredClusterTest, FloverUpGivesItsCommandTheKeysAndPlainClientsAreTurnedAway) {
  const std::string config = WriteConfig(Options());
  const std::string flover = testing::FloverBinary();
  const std::string exec = flover + " generate --prompt Sara --max-tokens 61 --json > " + dir_ + "/keyed.json; " +
                           "env -u FLOVER_KEY -u FLOVER_SERVER_KEY " + flover +
                           " generate --prompt Sara --max-tokens 61 > " + dir_ + "/plain.txt 2>&1; echo $? > " + dir_ +
                           "/plain_exit.txt; " + flover + " status --json > " + dir_ + "/status.json";
  const ShellRun up = RunShell(flover + " up --config " + config + " --exec '" + exec + "'");
  EXPECT_EQ(up.exit_code, 0) << up.output;
  auto read = [&](const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  EXPECT_NE(read("keyed.json").find(kSaraStory), std::string::npos) << read("keyed.json") << up.output;
  EXPECT_EQ(read("plain_exit.txt"), "1\n") << read("plain.txt");
  EXPECT_NE(read("plain.txt").find("requires CURVE"), std::string::npos) << read("plain.txt");
  // flover status --json: one object, numbers as numbers; the workers' pids, as flover
  // up's client key is an admin's.
  const nlohmann::json status = nlohmann::json::parse(read("status.json"), nullptr, false);
  ASSERT_TRUE(status.is_object()) << read("status.json");
  EXPECT_EQ(status["replicas_ready"], 1) << status.dump();
  EXPECT_GE(status["completed"].get<uint64_t>(), 1u) << status.dump();
  ASSERT_EQ(status["replicas"].size(), 1u) << status.dump();
  for (const nlohmann::json& w : status["replicas"][0]["workers"]) EXPECT_GT(w["pid"].get<int>(), 0) << status.dump();
}

TEST_F(SecuredClusterTest, FloverBenchStartsSecuredClusters) {
  TestClusterOptions o = Options();
  o.tensor_parallel = 1;
  const std::string config = WriteConfig(o);
  const ShellRun bench = RunShell(testing::FloverBinary() + " bench --config " + config +
                                  " --requests 3 --output-len 8 --ignore-eos --json " + dir_ + "/bench.json");
  EXPECT_EQ(bench.exit_code, 0) << bench.output;
  std::ifstream in(dir_ + "/bench.json");
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"completed\": 3"), std::string::npos) << json;
  // --key belongs to --endpoint.
  const ShellRun mixed = RunShell(testing::FloverBinary() + " bench --config " + config + " --key " + keys_ +
                                  "/clients/alice.key --server-key " + keys_ + "/coordinator.pub");
  EXPECT_EQ(mixed.exit_code, 2) << mixed.output;
}

TEST_F(SecuredClusterTest, WorkersWithAKeyTheCoordinatorDoesNotAdmitStopAtOnceWithTheReason) {
  // The worker key pair is replaced by one that is not in security.worker_keys.
  fs::remove(keys_ + "/workers/worker.key");
  fs::rename(keys_ + "/other/eve.key", keys_ + "/workers/worker.key");
  TestClusterOptions o = Options();
  o.tensor_parallel = 1;
  const ShellRun up =
      RunShell(testing::FloverBinary() + " up --no-restart --config " + WriteConfig(o) + " --exec true");
  EXPECT_EQ(up.exit_code, 1) << up.output;
  EXPECT_NE(up.output.find("stopped while starting (exit 2)"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("refused this worker's key"), std::string::npos) << up.output;
}

TEST(FloverKeygenTest, WritesAPrivateKeyPairAndNeverOverwrites) {
  char tmpl[] = "/tmp/flover-keygen-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string flover = testing::FloverBinary();
  const ShellRun made = RunShell(flover + " keygen --out " + dir + "/keys/node1");
  EXPECT_EQ(made.exit_code, 0) << made.output;
  EXPECT_NE(made.output.find("public key: "), std::string::npos) << made.output;
  struct stat st {};
  ASSERT_EQ(stat((dir + "/keys/node1.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Result<CurveKeyPair> pair = LoadCurveKeyPair(dir + "/keys/node1.key");
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  Result<CurvePublicKey> pub = LoadCurvePublicKey(dir + "/keys/node1.pub");
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(*pub, pair->public_key);
  EXPECT_NE(made.output.find(pub->Z85()), std::string::npos);
  const ShellRun again = RunShell(flover + " keygen --out " + dir + "/keys/node1");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("exists already"), std::string::npos) << again.output;
  EXPECT_EQ(LoadCurveKeyPair(dir + "/keys/node1.key")->public_key, pair->public_key) << "overwritten";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace flover
