// Live reconfiguration with real daemons (docs/deploy.md): the cluster file edited and
// read again while streamed requests run. Replicas are added (their workers started
// here, as `flover up` does) and removed (their requests finish or move on from their
// generated tokens), and every request still ends with the in-process engine's tokens,
// each streamed exactly once. A change that cannot apply live is refused and changes
// nothing.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "client/request_session.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::EngineGreedy;
using testing::kStatusWait;
using testing::TestCluster;
using testing::TestClusterOptions;
using testing::TokenRequest;

TestClusterOptions Stories(int replicas) {
  TestClusterOptions o;
  o.model = testing::Stories260kBin();
  o.tokenizer = testing::Tok512Bin();
  o.replicas = replicas;
  o.tensor_parallel = 1;
  o.pipeline_depth = 2;
  return o;
}

// Waits (a generous bound: nothing here depends on speed) until the status satisfies
// `done`; the last status.
proto::ClusterStatus WaitForStatus(Client& client, const std::function<bool(const proto::ClusterStatus&)>& done) {
  proto::ClusterStatus last;
  for (auto deadline = std::chrono::steady_clock::now() + 120s; std::chrono::steady_clock::now() < deadline;) {
    Result<proto::ClusterStatus> s = client.FetchStatus(kStatusWait);
    if (s.ok()) {
      last = *s;
      if (done(last)) return last;
    }
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "the cluster did not get there: " << last.DebugString();
  return last;
}

bool AllReady(const proto::ClusterStatus& s, int replicas) {
  if (s.replicas_size() != replicas) return false;
  for (const proto::ReplicaStatus& r : s.replicas())
    if (r.state() != "ready") return false;
  return true;
}

TEST(ReloadTest, ReplicasComeAndGoWhileStreamsRunAndEveryTokenArrivesOnce) {
  TestClusterOptions o = Stories(1);
  auto cluster = TestCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  auto watcher = (*cluster)->Connect();  // status on its own connection: the session's carries the streams
  ASSERT_TRUE(client.ok() && watcher.ok());
  RequestSession session(**client);

  // 64 greedy requests, 16 before each change and 16 after the last, each long enough
  // to be running while the next change lands.
  std::vector<RequestParams> requests;
  std::vector<std::string> ids;
  auto submit_wave = [&] {
    for (int i = 0; i < 16; ++i) {
      const int n = static_cast<int>(requests.size());
      RequestParams r;
      r.prompt = {1, 300 + n % 150, 260 + (7 * n) % 200};
      r.stop.max_tokens = 150 + n % 40;
      r.stop.ignore_eos = true;
      ids.push_back("r" + std::to_string(n));
      ASSERT_TRUE(session.Submit(TokenRequest(ids.back(), r.prompt, r.stop)).ok());
      requests.push_back(r);
    }
    // The wave's first request is streaming: the wave runs when the change comes.
    const Status streaming =
        session.WaitUntil([&] { return session.record(ids[ids.size() - 16]).streamed.size() >= 3; }, 60s);
    ASSERT_TRUE(streaming.ok()) << streaming.ToString();
  };

  submit_wave();
  uint64_t generation = 1;
  for (const int replicas : {2, 3, 1}) {
    SCOPED_TRACE("to " + std::to_string(replicas) + " replica(s)");
    o.replicas = replicas;
    Result<proto::ReloadReply> reply = (*cluster)->Reload(o);
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->config_generation(), ++generation);
    EXPECT_NE(reply->summary().find("replicas"), std::string::npos) << reply->summary();
    const proto::ClusterStatus s =
        WaitForStatus(**watcher, [&](const proto::ClusterStatus& st) { return AllReady(st, replicas); });
    EXPECT_EQ(s.config_generation(), generation);
    submit_wave();
  }

  const Status waited = session.WaitAll(300s);
  ASSERT_TRUE(waited.ok()) << waited.ToString();
  const std::vector<testing::EngineResult> expected = EngineGreedy(requests);
  std::map<int, int> by_replica;
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(ids[i]);
    const RequestRecord& r = session.record(ids[i]);
    EXPECT_EQ(r.finish, "length") << r.error_code << ": " << r.error;
    EXPECT_EQ(r.tokens, expected[i].tokens);
    EXPECT_EQ(r.streamed, expected[i].tokens) << "every token streamed once, in order, across the changes";
    ++by_replica[r.replica];
  }
  EXPECT_GE(by_replica.size(), 3u) << "requests were accepted by each of the three replicas";
  // The removed replicas' workers were told to stop and exited 0 (not restarted).
  for (int replica : {1, 2}) {
    ChildProcess* w = (*cluster)->worker(replica, 0);
    ASSERT_NE(w, nullptr);
    for (auto deadline = std::chrono::steady_clock::now() + 60s; !w->PollExit() && std::chrono::steady_clock::now() < deadline;)
      std::this_thread::sleep_for(20ms);
    EXPECT_EQ(w->PollExit().value_or("running"), "exit 0") << "worker " << replica << "/0";
  }
}

TEST(ReloadTest, AChangeThatCannotApplyLiveIsRefusedAndNothingChanges) {
  TestClusterOptions o = Stories(1);
  auto cluster = TestCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  auto watcher = (*cluster)->Connect();
  ASSERT_TRUE(client.ok() && watcher.ok());
  TestClusterOptions other = o;
  other.replicas = 2;
  other.kv_memory_mib = 2 * o.kv_memory_mib;  // cannot change live: refused as a whole
  Result<proto::ReloadReply> reply = (*cluster)->Reload(other);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(reply.status().message().find("kv_cache: cannot change while the cluster runs"), std::string::npos)
      << reply.status().ToString();
  Result<proto::ClusterStatus> s = (*watcher)->FetchStatus(kStatusWait);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->config_generation(), 1u);
  EXPECT_EQ(s->replicas_size(), 1);
  EXPECT_EQ((*cluster)->worker(1, 0), nullptr) << "no worker was started for the refused replica";

  // The cluster still serves; putting the file back applies.
  RequestSession session(**client);
  StopParams stop;
  stop.max_tokens = 10;
  ASSERT_TRUE(session.Submit(TokenRequest("after", {1, 403, 407}, stop)).ok());
  ASSERT_TRUE(session.WaitAll(120s).ok());
  EXPECT_EQ(session.record("after").finish, "length");
  reply = (*cluster)->Reload(o);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->summary(), "no change");
}

// Under flover up, `flover reload` (here from its --exec command) adds a replica whose
// worker flover up starts itself, once the coordinator took the new file.
TEST(ReloadTest, FloverUpStartsTheWorkersOfAReplicaAddedByFloverReload) {
  char tmpl[] = "/tmp/flover-reload-up-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::ofstream(dir + "/cluster.yaml") << testing::ClusterYaml(Stories(1));
  std::ofstream(dir + "/two.yaml") << testing::ClusterYaml(Stories(2));
  const std::string flover = testing::FloverBinary();
  const std::string exec = "cp " + dir + "/two.yaml " + dir + "/cluster.yaml && " + flover + " reload && " + flover +
                           " status --wait-ready 120 && " + flover + " status --json > " + dir + "/status.json";
  const testing::ShellRun up =
      testing::RunShell(flover + " up --config " + dir + "/cluster.yaml --exec '" + exec + "'");
  EXPECT_EQ(up.exit_code, 0) << up.output;
  EXPECT_NE(up.output.find("config generation 2: replicas 1 -> 2 (added 1)"), std::string::npos) << up.output;
  EXPECT_NE(up.output.find("flover-worker 1/0 started for replica 1, added by a reload"), std::string::npos)
      << up.output;
  std::ifstream in(dir + "/status.json");
  const std::string status((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(status.find("\"replicas_ready\":2"), std::string::npos) << status;
  EXPECT_NE(status.find("\"config_generation\":2"), std::string::npos) << status;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flover
