// The coordinator's limits (the config's `limits:`, docs/limits.md) in simulated time:
// sizes refused at admission with nothing stored, requests in flight per connection, a
// client that does not read cut off, the status rate and its snapshot, and log lines
// that peers trigger (harness: core_harness.h).
#include <algorithm>

#include "tests/captured_log.h"
#include "tests/coordinator/core_harness.h"

namespace flover {
namespace {

using namespace coordinator_testing;
using testing::CapturedLog;

proto::ClientMessage StatusMessage() {
  proto::ClientMessage m;
  m.mutable_status();
  return m;
}

TEST_F(CoreTest, AnOversizedRequestIdIsRefusedStoredNowhereAndEchoedOnlyInPart) {
  Options o;
  o.limits.max_request_id_bytes = 16;
  Start(o);
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  const std::string huge(100000, 'x');
  c.Submit(huge, {1, 2}, 3);
  proto::ServerMessage m = Reply(c);
  ASSERT_TRUE(m.has_error()) << m.DebugString().substr(0, 200);
  EXPECT_EQ(m.error().code(), "InvalidArgument");
  EXPECT_EQ(m.error().message(), "client_request_id has 100000 bytes, more than limits.max_request_id_bytes = 16");
  EXPECT_EQ(m.error().client_request_id(), std::string(16, 'x')) << "only the start of the id is echoed";
  EXPECT_EQ(sim().core().n_requests(), 0);
  EXPECT_FALSE(QuietPlan(w).has_value()) << "a refused request never reaches a worker";

  // A cancel of such an id, and a message that fails to parse while carrying one.
  c.Cancel(huge);
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().code(), "NotFound");
  EXPECT_EQ(m.error().client_request_id(), std::string(16, 'x'));
  EXPECT_LT(m.error().message().size(), 100u) << m.error().message();
  proto::ClientMessage wrong_version = SubmitMessage(huge, {1, 2}, 3, false);
  wrong_version.set_protocol_version(kProtocolVersion + 1);
  c.SendRaw(wrong_version.SerializeAsString());
  m = Reply(c);
  ASSERT_TRUE(m.has_error());
  EXPECT_EQ(m.error().client_request_id(), std::string(16, 'x'));
}

TEST_F(CoreTest, SizesOverTheLimitsAreRefusedAtOnceAndStoredNowhere) {
  Options o;
  o.limits.max_prompt_tokens = 4;
  o.limits.max_stop_ids = 2;
  Start(o);
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& c = AddClient();
  c.Submit("long", {1, 2, 3, 4, 5}, 3);
  proto::ClientMessage stops = SubmitMessage("stops", {1, 2}, 3, true);
  for (int id : {3, 4, 5}) stops.mutable_submit()->mutable_stop()->add_stop_token_ids(id);
  c.Send(stops);
  for (const char* expected : {"the prompt has 5 token ids, more than limits.max_prompt_tokens = 4",
                               "stop has 3 stop token ids, more than limits.max_stop_ids = 2"}) {
    proto::ServerMessage m = Reply(c);
    ASSERT_TRUE(m.has_error()) << m.DebugString();
    EXPECT_EQ(m.error().code(), "InvalidArgument");
    EXPECT_EQ(m.error().message(), expected);
  }
  EXPECT_EQ(sim().core().n_requests(), 0);
  EXPECT_FALSE(QuietPlan(w).has_value());
  c.Submit("fits", {1, 2, 3, 4}, 3);
  ExpectAccepted(c, "fits");
}

// Queued (no replica ready yet) and running requests both count, per connection.
TEST_F(CoreTest, AConnectionGetsAtMostMaxRequestsPerClientInFlight) {
  Options o;
  o.limits.max_requests_per_client = 2;
  Start(o);
  SimClient& a = AddClient();
  SimClient& b = AddClient();
  SimWorker& w = AddWorker();
  const proto::RegisterReply reply = w.Register();  // starting: submissions wait in the queue
  ASSERT_TRUE(reply.accepted());
  a.Submit("a1", {1, 2}, 3);
  a.Submit("a2", {1, 2}, 3);
  a.Submit("a3", {1, 2}, 3);
  proto::ServerMessage m = Reply(a);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().client_request_id(), "a3");
  EXPECT_EQ(m.error().code(), "ResourceExhausted");
  EXPECT_EQ(m.error().message(), "this connection has 2 requests in flight, as many as "
                                 "limits.max_requests_per_client = 2 allows; wait for some to finish");
  b.Submit("b1", {1, 2}, 3);  // another connection has its own count
  EXPECT_FALSE(b.TryRecv().has_value()) << "b1 waits for a ready replica like a1 and a2";

  w.Subscribe(reply);
  w.Ready(TestModel(), 16);
  ExpectAccepted(a, "a1");
  ExpectAccepted(a, "a2");
  ExpectAccepted(b, "b1");
  a.Submit("a4", {1, 2}, 3);
  m = Reply(a);
  ASSERT_TRUE(m.has_error()) << m.DebugString();
  EXPECT_EQ(m.error().code(), "ResourceExhausted") << "running requests count too";
  a.Cancel("a1");
  m = Reply(a);
  ASSERT_TRUE(m.has_done()) << m.DebugString();
  EXPECT_EQ(m.done().client_request_id(), "a1");
  a.Submit("a4", {1, 2}, 3);
  ExpectAccepted(a, "a4");
}

// A client that leaves max_undelivered_per_client replies unread is cut off: its
// requests leave the batch (their blocks freed), nothing more is queued for it, it is
// counted once, and another client's request runs on to its exact end.
TEST_F(CoreTest, AClientThatDoesNotReadIsCutOffAndTheOthersAreServed) {
  Options o;
  o.limits.max_undelivered_per_client = 8;
  o.max_step_tokens = 64;
  Start(o);
  SimWorker& w = AddWorker();
  w.Start(TestModel(), /*kv_blocks=*/64);
  SimClient& slow = AddClient();
  SimClient& good = AddClient();
  slow.Submit("s1", {1, 2}, 40);
  slow.Submit("s2", {1, 2}, 40);
  const uint64_t s1 = ExpectAccepted(slow, "s1");
  const uint64_t s2 = ExpectAccepted(slow, "s2");
  slow.StopReading();
  good.Submit("g", {1, 2}, 20);
  const uint64_t g = ExpectAccepted(good, "g");

  std::vector<int> good_tokens;
  bool left = false;
  for (int step = 0; step < 40; ++step) {
    std::optional<proto::StepPlan> plan = PlanWithin(w, 1s);
    ASSERT_TRUE(plan.has_value()) << "step " << step;
    for (uint64_t id : plan->leaves()) left = left || id == s1 || id == s2;
    const bool last = std::any_of(plan->entries().begin(), plan->entries().end(), [&](const proto::PlanEntry& e) {
      return e.request_id() == g && good_tokens.size() + 1 == 20;
    });
    Outputs outs;
    for (const proto::PlanEntry& e : plan->entries())
      outs.emplace_back(e.request_id(), 30, e.request_id() == g && last ? proto::FINISH_LENGTH : proto::FINISH_NONE);
    w.Answer(*plan, outs);
    while (std::optional<proto::ServerMessage> m = good.TryRecv()) {
      if (m->has_token()) good_tokens.push_back(m->token().tokens(0));
      if (m->has_done()) {
        EXPECT_EQ(m->done().completion_tokens(), 20);
        EXPECT_EQ(m->done().finish_reason(), proto::FINISH_LENGTH);
      }
    }
    if (last) break;
  }
  EXPECT_TRUE(left) << "the slow client's requests left the batch";
  EXPECT_EQ(good_tokens, std::vector<int>(20, 30)) << "every token of the other client, once, in order";
  EXPECT_EQ(slow.n_waiting(), 8) << "what was queued before the cut stays queued; nothing after";
  const proto::ClusterStatus s = GetStatus(good);
  EXPECT_EQ(s.clients_cut_off(), 1u);
  EXPECT_EQ(s.replicas(0).running(), 0);
  EXPECT_EQ(s.replicas(0).kv_blocks_used(), 0);
  EXPECT_EQ(sim().core().n_requests(), 0);

  // Still not reading, it sends more: refused like any request that finds its queue
  // full, and counted once.
  slow.Send(StatusMessage());
  slow.Submit("s3", {1, 2}, 40);
  Advance(100ms);
  EXPECT_EQ(GetStatus(good).clients_cut_off(), 1u);
  EXPECT_EQ(sim().core().n_requests(), 0);
}

TEST_F(CoreTest, StatusRepliesPerConnectionAreBounded) {
  Options o;
  o.limits.status_per_client_per_second = 3;
  Start(o);
  SimClient& c = AddClient();
  SimClient& other = AddClient();
  for (int i = 0; i < 5; ++i) c.Send(StatusMessage());
  Advance(CoordinatorCore::kStatusEvery);
  int n_status = 0;
  int n_refused = 0;
  while (std::optional<proto::ServerMessage> m = c.TryRecv()) {
    if (m->has_status()) ++n_status;
    if (m->has_error()) {
      ++n_refused;
      EXPECT_EQ(m->error().code(), "ResourceExhausted");
      EXPECT_EQ(m->error().message(),
                "status: at most 3 per second per connection (limits.status_per_client_per_second); ask less often");
    }
  }
  EXPECT_EQ(n_status, 3);
  EXPECT_EQ(n_refused, 2);
  EXPECT_EQ(GetStatus(other).name(), "coordinator-test") << "another connection has its own rate";
  Advance(1s);
  EXPECT_EQ(GetStatus(c).name(), "coordinator-test") << "the next second";
}

// Status requests that come within kStatusEvery of a build share the next one: a flood
// costs one build per kStatusEvery, and no reply is older than its request.
TEST_F(CoreTest, AStatusFloodIsAnsweredFromOneBuildPerInterval) {
  Start();
  std::vector<SimClient*> clients;
  for (int i = 0; i < 50; ++i) clients.push_back(&AddClient());
  const uint64_t builds = sim().core().n_status_builds();
  clients[0]->Send(StatusMessage());
  ASSERT_TRUE(clients[0]->TryRecv().has_value()) << "the first is answered at once";
  EXPECT_EQ(sim().core().n_status_builds(), builds + 1);
  // A worker registers after that build: the later requests must see it.
  SimWorker& w = AddWorker();
  ASSERT_TRUE(w.Register().accepted());
  for (size_t i = 1; i < clients.size(); ++i) clients[i]->Send(StatusMessage());
  EXPECT_FALSE(clients[1]->TryRecv().has_value()) << "waits for the next build";
  Advance(CoordinatorCore::kStatusEvery);
  for (size_t i = 1; i < clients.size(); ++i) {
    std::optional<proto::ServerMessage> m = clients[i]->TryRecv();
    ASSERT_TRUE(m && m->has_status()) << i;
    EXPECT_EQ(m->status().replicas(0).workers(0).state(), "registered") << i;
  }
  EXPECT_EQ(sim().core().n_status_builds(), builds + 2);
}

// Admins and clients waiting for the same build each get the status of their role: one
// build per role, never an admin's status for a client.
TEST_F(CoreTest, ACoalescedStatusIsBuiltForEachRoleWaiting) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimClient& first = AddClient(ClientRole::kAdmin);
  SimClient& admin = AddClient(ClientRole::kAdmin);
  SimClient& client = AddClient(ClientRole::kClient);
  first.Send(StatusMessage());
  ASSERT_TRUE(first.TryRecv().has_value()) << "the first is answered at once";
  const uint64_t builds = sim().core().n_status_builds();
  admin.Send(StatusMessage());
  client.Send(StatusMessage());
  Advance(CoordinatorCore::kStatusEvery);
  std::optional<proto::ServerMessage> to_admin = admin.TryRecv();
  std::optional<proto::ServerMessage> to_client = client.TryRecv();
  ASSERT_TRUE(to_admin && to_admin->has_status());
  ASSERT_TRUE(to_client && to_client->has_status());
  EXPECT_EQ(to_admin->status().replicas(0).workers(0).pid(), w.pid());
  EXPECT_EQ(to_client->status().replicas(0).workers(0).pid(), 0);
  EXPECT_EQ(to_client->status().replicas(0).workers(0).host(), "");
  EXPECT_EQ(sim().core().n_status_builds(), builds + 2);
}

// 10,000 bad messages of each kind a peer can send, all at once: at most kPeerLogLines
// log lines of each kind; a second later the next line says how many were held back.
TEST_F(CoreTest, BadMessagesInAFloodLogABoundedNumberOfLines) {
  Start();
  SimWorker& w = AddWorker();
  w.Start();
  SimWorker& stranger = AddWorker();
  SimClient& c = AddClient();
  CapturedLog log(spdlog::level::debug);  // debug lines count too
  for (int i = 0; i < 10000; ++i) {
    w.SendRaw("not a protobuf \xff\xff");                // unparsable control message
    stranger.Send(ReadyMessage(0, 0, TestModel(), 16));  // from a connection that is no worker
    stranger.SendRegister(7, 0);                         // a refused registration
    c.SendRaw("\xff\xff\xff");                           // unparsable client message
    c.Submit("", {1, 2}, 3);                             // a refused request
  }
  const std::vector<std::string> lines = log.Lines();
  // Five kinds, three limiters: worker messages rejected (unparsable, from a stranger),
  // registrations refused, client messages and requests refused.
  EXPECT_LE(lines.size(), 3u * CoordinatorCore::kPeerLogLines) << lines.size() << " lines, the first: " << lines[0];
  EXPECT_GE(lines.size(), 3u * CoordinatorCore::kPeerLogLines) << "every limiter still says something";
  Advance(1s);
  CapturedLog later(spdlog::level::debug);
  w.SendRaw("not a protobuf \xff\xff");
  const std::vector<std::string> after = later.Lines();
  ASSERT_FALSE(after.empty());
  EXPECT_NE(after.back().find("(19990 more like this suppressed)"), std::string::npos) << after.back();
}

// The coordinator says what a replica serves with the worker's own text of the model's
// shape (the architecture and its classifier, which ModelInfo's fields do not carry),
// and a worker cannot make that line longer than 256 characters of it.
TEST_F(CoreTest, AReadyReplicaIsLoggedWithTheWorkersShapeTextBounded) {
  Options o;
  o.replicas = 2;
  Start(o);
  CapturedLog log;
  proto::ModelInfo model = TestModel();
  model.set_description("test model");
  model.set_shape("qwen2 dim=8 separate_classifier");
  AddWorker().Start(model);
  SimWorker& hostile = AddWorker(1, 0);
  proto::ModelInfo long_shape = model;
  long_shape.set_shape(std::string(100000, 's'));
  hostile.Start(long_shape);
  bool logged = false;
  for (const std::string& line : log.Lines()) {
    if (line.find("replica 0 ready: test model (qwen2 dim=8 separate_classifier)") != std::string::npos) logged = true;
    EXPECT_EQ(line.find(std::string(257, 's')), std::string::npos) << line.size() << " characters";
  }
  EXPECT_TRUE(logged);
}

}  // namespace
}  // namespace flover
