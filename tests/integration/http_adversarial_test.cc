// The coordinator's HTTP socket under attack, against a cluster of the real daemons
// (stories260K, TP 2, endpoints.http on loopback; docs/http.md, security.md): broken
// request lines, huge heads, bodies over the limit, invalid UTF-8, half-closed
// connections, slow trickles (slowloris) and a connection flood beyond
// http.max_connections. The coordinator stays up, its memory comes back near where it
// was, and a normal request is still served. And a client that leaves in the middle of
// a stream has its request cancelled in the cluster (its status shows it gone).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "client/client.h"
#include "coordinator/http/http_server.h"
#include "tests/coordinator/http_test_client.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using http_testing::HttpReply;
using http_testing::HttpTestClient;
using namespace std::chrono_literals;
using testing::TestCluster;
using testing::TestClusterOptions;

constexpr int kMaxConnections = 64;
constexpr auto kPatience = 120s;

double ResidentMib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

class HttpAdversarialTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TestClusterOptions o;
    o.model = testing::Stories260kBin();
    o.tokenizer = testing::Tok512Bin();
    o.http = true;
    o.http_settings = {{"max_connections", kMaxConnections}, {"max_body_bytes", 4096}, {"header_timeout_ms", 1000}};
    Result<std::unique_ptr<TestCluster>> cluster = TestCluster::Start(o);
    ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
    cluster_ = std::move(cluster).value().release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }

  static std::string Endpoint() { return cluster_->http_endpoint(); }

  // A normal request is served: the model list, and health says ready.
  static void ExpectServing() {
    HttpTestClient client(Endpoint());
    ASSERT_TRUE(client.Send(HttpTestClient::Request("GET", "/v1/models")));
    std::optional<HttpReply> reply = client.Read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200);
    EXPECT_THAT(reply->body, ::testing::HasSubstr("\"id\":\"stories260K\""));
    ASSERT_TRUE(client.Send(HttpTestClient::Request("GET", "/health")));
    reply = client.Read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200) << reply->body;
    EXPECT_EQ(cluster_->coordinator()->PollExit(), std::nullopt) << "the coordinator stopped";
  }

  static TestCluster* cluster_;
};

TestCluster* HttpAdversarialTest::cluster_ = nullptr;

TEST_F(HttpAdversarialTest, EndpointIsInTheEndpointsFile) {
  EXPECT_THAT(Endpoint(), ::testing::StartsWith("http://127.0.0.1:"));
  EXPECT_THAT(Endpoint(), ::testing::Not(::testing::EndsWith(":0")));
  ExpectServing();
}

TEST_F(HttpAdversarialTest, BrokenRequestsGetErrorsAndTheServerStaysUp) {
  const int pid = cluster_->coordinator()->pid();
  ExpectServing();
  const double before = ResidentMib(pid);
  struct Case {
    std::string bytes;
    int status;  // 0: only a close
  };
  const std::string huge_header = "GET /health HTTP/1.1\r\nX-A: " + std::string(64 << 10, 'a') + "\r\n\r\n";
  const std::string big_body = "POST /v1/completions HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x');
  const std::string chunked_big =
      "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + std::string(5000, 'x') + "\r\n0\r\n\r\n";
  const Case cases[] = {
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n", 400},
      {"GET\r\n\r\n", 400},
      {"GET / HTTP/7.0\r\n\r\n", 400},
      {"GET /health HTTP/1.1\r\nBad Header Line\r\n\r\n", 400},
      {"POST /v1/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
      {"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {huge_header, 431},
      {big_body, 413},
      {chunked_big, 413},
      {"GET /\xff\xfe\xc3\x28 HTTP/1.1\r\n\r\n", 404},
      {"POST /v1/completions HTTP/1.1\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc", 400},  // not JSON: the API layer answers
  };
  for (int round = 0; round < 20; ++round) {
    for (const Case& c : cases) {
      HttpTestClient client(Endpoint());
      ASSERT_TRUE(client.connected());
      client.Send(c.bytes);
      std::optional<HttpReply> reply = client.Read();
      if (round == 0) {
        ASSERT_TRUE(reply) << ::testing::PrintToString(c.bytes.substr(0, 80));
        EXPECT_EQ(reply->status, c.status) << ::testing::PrintToString(c.bytes.substr(0, 80));
        if (reply->status >= 400) {
          EXPECT_THAT(reply->body, ::testing::StartsWith("{\"error\":{"));
        }
      }
    }
  }
  // Half-closed connections: a request then EOF, and EOF alone.
  for (int i = 0; i < 50; ++i) {
    HttpTestClient a(Endpoint());
    a.Send("GET /health HTTP/1.1\r\n\r\n");
    a.ShutdownWrite();
    HttpTestClient b(Endpoint());
    b.ShutdownWrite();
    EXPECT_TRUE(b.WaitClosed());
  }
  ExpectServing();
  const double after = ResidentMib(pid);
  std::printf("coordinator VmRSS %.1f -> %.1f MiB\n", before, after);
  EXPECT_LT(after, before + 32) << "coordinator VmRSS " << before << " -> " << after << " MiB";
}

TEST_F(HttpAdversarialTest, SlowTricklesAreCutAndAFloodIsRefused) {
  const int pid = cluster_->coordinator()->pid();
  ExpectServing();
  const double before = ResidentMib(pid);
  // Slowloris: connections that send a byte of their head now and then never finish
  // within header_timeout_ms; all are closed.
  std::vector<std::unique_ptr<HttpTestClient>> slow;
  for (int i = 0; i < kMaxConnections / 2; ++i) {
    slow.push_back(std::make_unique<HttpTestClient>(Endpoint()));
    slow.back()->Send("GET /health HTTP/1.1\r\n");
  }
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  for (auto& c : slow) {
    bool closed = false;
    while (!closed && std::chrono::steady_clock::now() < deadline) {
      c->Send("X");  // a trickle: a byte per poll
      closed = c->WaitClosed(200ms);
    }
    EXPECT_TRUE(closed) << "a slow request was never cut";
  }
  slow.clear();
  // A flood: far more connections than max_connections; beyond it they get 503 and a close.
  std::vector<std::unique_ptr<HttpTestClient>> flood;
  for (int i = 0; i < 4 * kMaxConnections; ++i) flood.push_back(std::make_unique<HttpTestClient>(Endpoint()));
  int refused = 0;
  for (int i = kMaxConnections; i < static_cast<int>(flood.size()); ++i) {
    std::optional<HttpReply> reply = flood[i]->Read();
    if (reply && reply->status == 503) ++refused;
  }
  // How many depends on how fast the server accepts (a connection it served closes after
  // header_timeout_ms and frees its place); some must have been refused.
  EXPECT_GT(refused, 0) << "connections beyond http.max_connections were not refused";
  flood.clear();
  // Once the flood is gone, requests are served again (the server sees the closes).
  for (auto until = std::chrono::steady_clock::now() + kPatience;;) {
    HttpTestClient client(Endpoint());
    client.Send(HttpTestClient::Request("GET", "/health"));
    std::optional<HttpReply> reply = client.Read();
    if (reply && reply->status == 200) break;
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the server never came back after the flood";
    std::this_thread::sleep_for(50ms);
  }
  ExpectServing();
  const double after = ResidentMib(pid);
  std::printf("coordinator VmRSS %.1f -> %.1f MiB\n", before, after);
  EXPECT_LT(after, before + 32) << "coordinator VmRSS " << before << " -> " << after << " MiB";
}

// A streaming exchange of one request that runs long (token ids, max_tokens 400,
// ignore_eos): one SSE event per token event.
class LongStream : public openai::Exchange {
 public:
  std::vector<proto::SubmitRequest> TakeSubmits() override {
    proto::SubmitRequest s;
    for (int id : {1, 400, 300}) s.mutable_token_ids()->add_ids(id);
    s.mutable_stop()->set_max_tokens(400);
    s.mutable_stop()->set_ignore_eos(true);
    s.set_stream(true);
    return {s};
  }
  openai::Output OnReply(size_t, const proto::ServerMessage& reply) override {
    openai::Output out;
    if (reply.has_accepted()) {
      out.head_status = 200;
      out.content_type = "text/event-stream";
    }
    if (reply.has_token()) out.bytes = "data: token\n\n";
    if (reply.has_done() || reply.has_error()) {
      out.bytes = "data: [DONE]\n\n";
      out.done = true;
    }
    return out;
  }
};

// The server's submits reach the real coordinator (here as a TCP client, the same
// protocol as the in-process one); the HTTP client leaves after the first token, and
// the cluster's status shows its request gone long before 400 tokens.
TEST_F(HttpAdversarialTest, AClientThatLeavesMidStreamHasItsRequestCancelled) {
  zmq::context_t context(1);
  http::HttpServerOptions options;
  options.context = &context;
  options.gateway_endpoint = cluster_->client_endpoint();
  options.start_exchange = [](std::string_view, std::string_view) -> openai::Started {
    return std::make_unique<LongStream>();
  };
  options.models_body = [] { return std::string("{}"); };
  Result<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  Result<std::unique_ptr<Client>> watcher = cluster_->Connect();
  ASSERT_TRUE(watcher.ok()) << watcher.status().ToString();
  {
    HttpTestClient client((*server)->endpoint());
    ASSERT_TRUE(client.Send(HttpTestClient::Request("POST", "/v1/completions", "{}")));
    // Wait for the head and the first event, then leave.
    std::string seen;
    char buffer[4096];
    for (auto deadline = std::chrono::steady_clock::now() + kPatience;
         seen.find("data: token") == std::string::npos && std::chrono::steady_clock::now() < deadline;) {
      const ssize_t n = ::recv(client.fd(), buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      seen.append(buffer, static_cast<size_t>(n));
    }
    ASSERT_THAT(seen, ::testing::HasSubstr("data: token"));
  }
  for (auto deadline = std::chrono::steady_clock::now() + kPatience;;) {
    Result<proto::ClusterStatus> status = (*watcher)->FetchStatus(std::chrono::seconds(30));
    ASSERT_TRUE(status.ok()) << status.status().ToString();
    int in_flight = status->queued();
    for (const proto::ReplicaStatus& r : status->replicas()) in_flight += r.running() + r.waiting();
    if (in_flight == 0) {
      EXPECT_LT(status->replicas(0).tokens_generated(), 400u) << "the request ran to its end: it was not cancelled";
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the request is still in flight";
    std::this_thread::sleep_for(20ms);
  }
  ExpectServing();
}

}  // namespace
}  // namespace flover
