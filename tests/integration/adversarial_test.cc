// The attacks of an adversarial review, replayed against a secured cluster of the real
// daemons on loopback (security.mode curve, TP 2, stories260K), each by a peer with
// nothing but a ZeroMQ socket and the published .proto (docs/security.md, limits.md):
//   * an eavesdropper on the client connection's TCP stream (a relay in this process)
//     reads neither the prompt nor the completion (and does, as a check of the relay,
//     on a plain-text cluster);
//   * strangers (no key, a key nobody admitted, a client's key) can neither subscribe to
//     the plans, nor register as a rank, nor send step results or failures: their
//     handshakes are refused, the replica keeps its workers and serves exact tokens;
//   * a worker key's holder that never registered sends forged results, errors and
//     garbage: all rejected and counted, no replica fails;
//   * an admitted client sends what took memory before (oversized ids and stop lists,
//     replies it never reads, status floods) and bad bytes in a loop: the coordinator's
//     memory and log stay bounded, and another client is served exactly;
//   * a connection flood: client connections beyond limits.max_client_connections are
//     refused at once, workers still get in, and clients do again once it ends.
// Every test ends with a normal request checked token by token against the engine.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "client/client.h"
#include "client/request_session.h"
#include "common/curve_socket.h"
#include "common/handshake_monitor.h"
#include "common/protocol.h"
#include "common/tokenizer.h"
#include "flover.pb.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::ClusterKeys;
using testing::TestCluster;
using testing::TestClusterOptions;

// Long: a refusal or a reply comes when it comes; the tests never depend on how soon.
constexpr auto kPatience = 120s;

// A peer that speaks ZeroMQ to one of the coordinator's endpoints, with or without
// CURVE keys, and watches its handshake.
class Attacker {
 public:
  Attacker(zmq::socket_type type, const std::string& endpoint, const std::optional<CurveClientKeys>& keys)
      : socket_(context_, type), monitor_(context_) {
    socket_.set(zmq::sockopt::linger, 0);
    if (keys) {
      EXPECT_TRUE(ApplyCurveClient(socket_, *keys).ok());
    }
    if (type == zmq::socket_type::sub) socket_.set(zmq::sockopt::subscribe, "");  // every replica's plans
    monitor_.Watch(socket_, "attacker", {.endpoint = endpoint, .curve = keys.has_value(), .who = "attacker"});
    socket_.connect(endpoint);
  }
  ~Attacker() {
    monitor_.Close();
    socket_.close();
  }

  void Send(const std::string& bytes) { socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait); }

  // The refusal of its handshake, waited for (a refused peer learns nothing else).
  Status WaitRefused() {
    for (const auto deadline = std::chrono::steady_clock::now() + kPatience;
         std::chrono::steady_clock::now() < deadline;) {
      const Result<bool> events = monitor_.Drain();
      if (!events.ok()) return events.status();
      zmq::pollitem_t item = {monitor_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 100ms);
    }
    return Status::Ok();
  }

  // Messages that reached it: none for a refused peer.
  int Received() {
    int n = 0;
    for (zmq::message_t m; socket_.recv(m, zmq::recv_flags::dontwait);) ++n;
    return n;
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
  HandshakeMonitor monitor_;
};

// Forwards TCP connections from a port of its own to `port` on 127.0.0.1 and keeps a
// copy of every byte either way: what an eavesdropper on the wire sees.
class TcpRelay {
 public:
  explicit TcpRelay(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    EXPECT_EQ(::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~TcpRelay() {
    stop_ = true;
    thread_.join();
    for (int fd : fds_) ::close(fd);
    ::close(listener_);
  }

  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  std::string Seen() {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }

 private:
  void Run() {
    while (!stop_) {
      std::vector<pollfd> fds = {{listener_, POLLIN, 0}};
      for (int fd : fds_) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents & POLLIN) Accept();
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const int from = fds[i].fd;
        const int to = fds_[(i - 1) ^ 1];  // pairs: client, coordinator
        char buffer[65536];
        const ssize_t n = ::read(from, buffer, sizeof(buffer));
        if (n <= 0) {
          ::shutdown(to, SHUT_WR);
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(mutex_);
          seen_.append(buffer, static_cast<size_t>(n));
        }
        for (ssize_t sent = 0; sent < n;) {
          const ssize_t w = ::write(to, buffer + sent, static_cast<size_t>(n - sent));
          if (w <= 0) break;
          sent += w;
        }
      }
    }
  }
  void Accept() {
    const int client = ::accept(listener_, nullptr, nullptr);
    if (client < 0) return;
    const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(client);
      ::close(upstream);
      return;
    }
    fds_.push_back(client);
    fds_.push_back(upstream);
  }

  const int target_port_;
  int listener_ = -1;
  int port_ = 0;
  std::vector<int> fds_;  // the Run() thread's: (client, coordinator) pairs
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::string seen_;
};

int PortOf(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

// `n` TCP connections to `endpoint` that never begin a ZeroMQ handshake (descriptors;
// fewer when a connect fails, which the caller's count then shows).
std::vector<int> IdleConnections(const std::string& endpoint, int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(PortOf(endpoint)));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd);
      break;
    }
    fds.push_back(fd);
  }
  return fds;
}

// Resident memory of `pid` in MiB, from /proc.
double ResidentMib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

std::string Serialized(proto::WorkerMessage m) { return Serialize(m); }

const std::string kSaraStory = " and Ben were playing in the park.";

class AdversarialTest : public testing::SecuredClusterFixture {
 protected:
  std::unique_ptr<TestCluster> Start(const TestClusterOptions& o) {
    Result<std::unique_ptr<TestCluster>> cluster = TestCluster::Start(o);
    EXPECT_TRUE(cluster.ok()) << cluster.status().ToString();
    return cluster.ok() ? std::move(cluster).value() : nullptr;
  }
  CurveClientKeys Keys(const std::string& name) const { return ClusterKeys(keys_, name); }

  // A normal request, through `endpoint` as `name` ("" = plain text): the engine's tokens.
  void ExpectServedExactly(const std::string& endpoint, const std::string& name = "clients/alice") {
    Result<std::unique_ptr<Client>> client =
        Client::Connect(endpoint, name.empty() ? std::nullopt : std::optional<CurveClientKeys>(Keys(name)));
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    Result<Tokenizer> tok = Tokenizer::LoadLlama2c(testing::Tok512Bin());
    ASSERT_TRUE(tok.ok());
    const std::vector<int> prompt = tok->Encode("The dog ran");
    RequestSession session(**client);
    StopParams stop;
    stop.max_tokens = 24;
    ASSERT_TRUE(session.Submit(testing::TokenRequest("normal", prompt, stop)).ok());
    const Status waited = session.WaitAll(kPatience);
    ASSERT_TRUE(waited.ok()) << waited.ToString();
    ASSERT_EQ(session.records().size(), 1u);
    EXPECT_EQ(session.records()[0].error, "");
    EXPECT_EQ(session.records()[0].tokens, testing::EngineGreedy({prompt}, 24)[0]);
  }
  proto::ClusterStatus AdminStatus(const TestCluster& cluster) {
    Result<std::unique_ptr<Client>> admin = Client::Connect(cluster.client_endpoint(), Keys("admins/up"));
    EXPECT_TRUE(admin.ok());
    Result<proto::ClusterStatus> s = (*admin)->FetchStatus(testing::kStatusWait);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : proto::ClusterStatus();
  }
};

// What the relay sees of one text request ("Sara", whose story is known) and its reply.
std::string WireOfOneRequest(const std::string& coordinator_endpoint, const std::optional<CurveClientKeys>& keys,
                             std::string* completion) {
  TcpRelay relay(PortOf(coordinator_endpoint));
  Result<std::unique_ptr<Client>> client = Client::Connect(relay.endpoint(), keys);
  EXPECT_TRUE(client.ok());
  RequestSession session(**client);
  StopParams stop;
  stop.max_tokens = 61;
  EXPECT_TRUE(session.Submit(testing::TextRequest("secret", "Sara", stop)).ok());
  const Status waited = session.WaitAll(kPatience);
  EXPECT_TRUE(waited.ok()) << waited.ToString();
  *completion = session.records().empty() ? "" : session.records()[0].text;
  return relay.Seen();
}

TEST_F(AdversarialTest, AnEavesdropperOnTheWireReadsNeitherPromptNorCompletion) {
  // The relay's check: in plain text (no security section, loopback) it sees both.
  TestClusterOptions plain = Options();
  plain.keys_dir.clear();
  plain.tensor_parallel = 1;
  {
    std::unique_ptr<TestCluster> cluster = Start(plain);
    ASSERT_NE(cluster, nullptr);
    std::string completion;
    const std::string wire = WireOfOneRequest(cluster->client_endpoint(), std::nullopt, &completion);
    ASSERT_EQ(completion.rfind(kSaraStory, 0), 0u) << completion;
    EXPECT_NE(wire.find("Sara"), std::string::npos);
    EXPECT_NE(wire.find(" Ben"), std::string::npos) << "the streamed tokens' text";
  }
  std::unique_ptr<TestCluster> cluster = Start(Options());
  ASSERT_NE(cluster, nullptr);
  std::string completion;
  const std::string wire = WireOfOneRequest(cluster->client_endpoint(), Keys("clients/alice"), &completion);
  ASSERT_EQ(completion.rfind(kSaraStory, 0), 0u) << completion;
  EXPECT_GT(wire.size(), 1000u) << "the request and its 61 tokens went through the relay";
  EXPECT_EQ(wire.find("Sara"), std::string::npos) << "the prompt in clear on the wire";
  EXPECT_EQ(wire.find("secret"), std::string::npos) << "the request id in clear on the wire";
  for (const char* word : {" Ben", " park", " playing"})
    EXPECT_EQ(wire.find(word), std::string::npos) << "'" << word << "' of the completion in clear on the wire";
}

TEST_F(AdversarialTest, StrangersCannotReadPlansRegisterOrForgeResults) {
  std::unique_ptr<TestCluster> cluster = Start(Options());
  ASSERT_NE(cluster, nullptr);
  const proto::ClusterStatus before = AdminStatus(*cluster);
  ASSERT_EQ(before.replicas(0).state(), "ready");

  // What took a replica over before: a registration as its ranks, a forged step result
  // of the current step, a forged failure, and a plans subscription to everything.
  proto::WorkerMessage reg;
  reg.mutable_register_()->set_replica(0);
  reg.mutable_register_()->set_rank(0);
  reg.mutable_register_()->set_pid(4242);
  proto::WorkerMessage result;
  result.mutable_step_result()->set_replica(0);
  result.mutable_step_result()->set_seq(1);
  proto::WorkerMessage failure;
  failure.mutable_failure()->set_replica(0);
  failure.mutable_failure()->set_rank(0);
  failure.mutable_failure()->set_message("HACKED BY EVE");

  const std::vector<std::pair<std::string, std::optional<CurveClientKeys>>> strangers = {
      {"no key", std::nullopt}, {"a key nobody admitted", Keys("other/eve")}, {"a client's key", Keys("clients/alice")}};
  std::vector<std::unique_ptr<Attacker>> subscribers;
  std::vector<std::unique_ptr<Attacker>> dealers;
  for (const auto& [who, keys] : strangers) {
    subscribers.push_back(std::make_unique<Attacker>(zmq::socket_type::sub, cluster->plans_endpoint(), keys));
    dealers.push_back(std::make_unique<Attacker>(zmq::socket_type::dealer, cluster->control_endpoint(), keys));
    for (const proto::WorkerMessage* m : {&reg, &result, &failure}) dealers.back()->Send(Serialized(*m));
  }
  for (size_t i = 0; i < strangers.size(); ++i) {
    const Status sub = subscribers[i]->WaitRefused();
    const Status dealer = dealers[i]->WaitRefused();
    EXPECT_TRUE(IsHandshakeRefusal(sub)) << strangers[i].first << ": " << sub.ToString();
    EXPECT_TRUE(IsHandshakeRefusal(dealer)) << strangers[i].first << ": " << dealer.ToString();
  }

  ExpectServedExactly(cluster->client_endpoint());
  for (size_t i = 0; i < strangers.size(); ++i) {
    EXPECT_EQ(subscribers[i]->Received(), 0) << strangers[i].first << " read plans";
    EXPECT_EQ(dealers[i]->Received(), 0) << strangers[i].first << " was answered";
  }
  const proto::ClusterStatus after = AdminStatus(*cluster);
  EXPECT_EQ(after.replicas(0).state(), "ready");
  for (int rank = 0; rank < 2; ++rank)
    EXPECT_EQ(after.replicas(0).workers(rank).pid(), before.replicas(0).workers(rank).pid()) << "rank " << rank;
  EXPECT_EQ(after.rejected_messages(), 0u) << "nothing of theirs reached the coordinator";
  EXPECT_EQ(after.replicas(0).error(), "");
}

TEST_F(AdversarialTest, AWorkerKeyThatNeverRegisteredCannotForgeResultsOrFailAReplica) {
  std::unique_ptr<TestCluster> cluster = Start(Options());
  ASSERT_NE(cluster, nullptr);
  // A worker key's holder gets in (the key is admitted) but is no registered rank.
  Attacker mallory(zmq::socket_type::dealer, cluster->control_endpoint(), Keys("workers/worker"));
  constexpr int kEach = 2000;
  for (int i = 0; i < kEach; ++i) {
    proto::WorkerMessage result;
    result.mutable_step_result()->set_replica(0);
    result.mutable_step_result()->set_seq(static_cast<uint64_t>(i));
    proto::TokenOutput* out = result.mutable_step_result()->add_outputs();
    out->set_request_id(1);
    out->set_token(13);
    mallory.Send(Serialized(result));
    proto::WorkerMessage failure;
    failure.mutable_failure()->set_replica(0);
    failure.mutable_failure()->set_rank(1);
    failure.mutable_failure()->set_message("HACKED BY EVE");
    mallory.Send(Serialized(failure));
    mallory.Send("\xff\xfe not a protobuf");
  }
  ExpectServedExactly(cluster->client_endpoint());
  const proto::ClusterStatus s = AdminStatus(*cluster);
  EXPECT_EQ(s.replicas(0).state(), "ready");
  EXPECT_EQ(s.replicas(0).error(), "");
  // Each counted (those of a connection that is no registered rank), none applied. The
  // last may still be queued behind the normal request: at least the results before it.
  EXPECT_GT(s.rejected_messages(), 0u);
  EXPECT_LE(s.rejected_messages(), static_cast<uint64_t>(3 * kEach));
}

TEST_F(AdversarialTest, AnAdmittedClientCannotExhaustMemoryOrTheLogOrStarveOthers) {
  TestClusterOptions o = Options();
  o.capture_logs = true;
  o.status_per_second = 10;  // the default
#if defined(FLOVER_SANITIZE_ADDRESS)
  // AddressSanitizer keeps freed blocks in a quarantine of 256 MiB by default, which
  // the resident size would measure instead of the coordinator: the coordinator this
  // test starts keeps 16 MiB of it.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string options = std::string(asan ? asan : "") + (asan && *asan ? ":" : "") + "quarantine_size_mb=16";
  ASSERT_EQ(::setenv("ASAN_OPTIONS", options.c_str(), 1), 0);
#endif
  std::unique_ptr<TestCluster> cluster = Start(o);
  ASSERT_NE(cluster, nullptr);
  const int pid = cluster->coordinator()->pid();
  ExpectServedExactly(cluster->client_endpoint());
  const double rss_before = ResidentMib(pid);
  ASSERT_GT(rss_before, 0);

  // Raw sockets with alice's key, several connections that never read a reply.
  std::vector<std::unique_ptr<Attacker>> eves;
  for (int c = 0; c < 8; ++c)
    eves.push_back(std::make_unique<Attacker>(zmq::socket_type::dealer, cluster->client_endpoint(),
                                              Keys("clients/alice")));
  proto::ClientMessage long_id;  // 2 MiB of id, under the 4 MiB message bound
  long_id.mutable_submit()->set_client_request_id(std::string(2 << 20, 'x'));
  long_id.mutable_submit()->mutable_token_ids()->add_ids(1);
  long_id.mutable_submit()->mutable_stop()->set_max_tokens(8);
  proto::ClientMessage many_stops;  // 1M stop ids (4 MiB and more: the connection drops)
  many_stops.mutable_submit()->set_client_request_id("stops");
  many_stops.mutable_submit()->mutable_token_ids()->add_ids(1);
  for (int i = 0; i < (1 << 20); ++i) many_stops.mutable_submit()->mutable_stop()->add_stop_token_ids(i % 512);
  proto::ClientMessage some_stops = many_stops;  // 100k: under the message bound, over max_stop_ids
  some_stops.mutable_submit()->mutable_stop()->mutable_stop_token_ids()->Truncate(100000);
  proto::ClientMessage status;
  status.mutable_status();
  const std::string long_id_bytes = Serialize(long_id), many_bytes = Serialize(many_stops),
                    some_bytes = Serialize(some_stops), status_bytes = Serialize(status);
  std::string bad_utf8 = Serialize(long_id);
  bad_utf8[bad_utf8.find('x')] = '\xff';
  for (int round = 0; round < 20; ++round) {
    for (auto& eve : eves) {
      eve->Send(long_id_bytes);
      eve->Send(some_bytes);
      eve->Send(bad_utf8);
      eve->Send("\x08\x01 garbage");
      for (int i = 0; i < 200; ++i) eve->Send(status_bytes);
    }
  }
  eves.front()->Send(many_bytes);

  ExpectServedExactly(cluster->client_endpoint());
  const double rss_after = ResidentMib(pid);
  // Before, the same traffic took the coordinator past 600 MB: it is bounded by the
  // limits, not by what the peers send.
  std::printf("coordinator VmRSS %.1f -> %.1f MiB\n", rss_before, rss_after);
#if defined(FLOVER_SANITIZE_ADDRESS)
  constexpr double kMaxGrowthMib = 256;  // ASan's redzones, shadow and quarantine come on top
#else
  constexpr double kMaxGrowthMib = 128;
#endif
  EXPECT_LT(rss_after - rss_before, kMaxGrowthMib)
      << "coordinator VmRSS " << rss_before << " -> " << rss_after << " MiB";
  const proto::ClusterStatus s = AdminStatus(*cluster);
  EXPECT_EQ(s.replicas(0).state(), "ready");

  // Each kind of bad message is rate-limited: a few lines per second of each, whatever
  // the number of messages (about 6,000 bad ones and 32,000 status requests here).
  std::ifstream log(cluster->coordinator_log());
  int lines = 0;
  for (std::string line; std::getline(log, line);) ++lines;
  std::printf("coordinator log: %d lines\n", lines);
  EXPECT_LT(lines, 400) << "coordinator log lines";
}

TEST_F(AdversarialTest, AConnectionFloodIsRefusedBeyondTheLimitAndWorkersStillGetIn) {
  TestClusterOptions o = Options();
  o.limits.push_back({"max_client_connections", 16});
  std::unique_ptr<TestCluster> cluster = Start(o);
  ASSERT_NE(cluster, nullptr);
  ExpectServedExactly(cluster->client_endpoint());

  // 16 plain TCP connections that never handshake hold every client slot.
  std::vector<int> idle = IdleConnections(cluster->client_endpoint(), 16);
  ASSERT_EQ(idle.size(), 16u);
  Attacker late(zmq::socket_type::dealer, cluster->client_endpoint(), Keys("clients/alice"));
  const Status refused = late.WaitRefused();
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused.ToString();
  EXPECT_NE(refused.message().find("connection"), std::string::npos) << refused.ToString();

  // The worker domain has no such limit: a worker key gets in (its forged result, from
  // no registered rank, is counted).
  const uint64_t rejected_before = [&] {
    for (int fd : idle) ::close(fd);  // the admin's status connection needs a slot
    idle.clear();
    return AdminStatus(*cluster).rejected_messages();
  }();
  const std::vector<int> again = IdleConnections(cluster->client_endpoint(), 15);  // one slot left for the client below
  ASSERT_EQ(again.size(), 15u);
  Attacker worker(zmq::socket_type::dealer, cluster->control_endpoint(), Keys("workers/worker"));
  proto::WorkerMessage result;
  result.mutable_step_result()->set_replica(0);
  result.mutable_step_result()->set_seq(1);
  worker.Send(Serialized(result));
  ExpectServedExactly(cluster->client_endpoint());
  for (int fd : again) ::close(fd);
  for (const auto deadline = std::chrono::steady_clock::now() + kPatience;
       AdminStatus(*cluster).rejected_messages() == rejected_before && std::chrono::steady_clock::now() < deadline;)
    std::this_thread::sleep_for(50ms);
  EXPECT_GT(AdminStatus(*cluster).rejected_messages(), rejected_before)
      << "the worker-key connection got in under a full client side";
}

}  // namespace
}  // namespace flover
