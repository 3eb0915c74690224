// HttpServer (coordinator/http/http_server.h) over real sockets: a raw HTTP client on
// one side, and on the other a scripted core (a ROUTER on the in-process endpoint, as
// the coordinator binds it) that answers each submit with Accepted, kTokens tokens and
// Done, and records cancels. The exchanges are test ones (the OpenAI layer is tested on
// its own): a streaming one writes an SSE event per token, a plain one JSON at the end.
#include "coordinator/http/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/protocol.h"
#include "tests/coordinator/http_test_client.h"

namespace flover::http {
namespace {

using http_testing::HttpReply;
using http_testing::HttpTestClient;
using namespace std::chrono_literals;

constexpr int kTokens = 5;
constexpr const char* kGateway = "inproc://http-test";

// The core's side of the in-process socket, on its own thread. A submit whose prompt is
// "hold" gets only Accepted (it runs until cancelled).
class ScriptedCore {
 public:
  explicit ScriptedCore(zmq::context_t& context) : router_(context, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind(kGateway);
    thread_ = std::thread([this] { Loop(); });
  }
  ~ScriptedCore() {
    stop_ = true;
    thread_.join();
  }

  std::set<std::string> cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }
  std::set<std::string> held() const {
    std::lock_guard lock(mu_);
    return held_;
  }

  // Waits (at most kHttpWait) until done(held, cancelled) holds; false if it never does.
  template <typename Pred>
  bool WaitFor(Pred done) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, http_testing::kHttpWait, [&] { return done(held_, cancelled_); });
  }

  // Sends Done for every held request, and returns once they are sent.
  void FinishHeld() {
    std::unique_lock lock(mu_);
    finish_ = true;
    changed_.wait_for(lock, http_testing::kHttpWait, [&] { return !finish_; });
  }

 private:
  void Loop() {
    while (!stop_) {
      std::array<zmq::pollitem_t, 1> items = {{{router_.handle(), 0, ZMQ_POLLIN, 0}}};
      zmq::poll(items, 10ms);
      {
        std::lock_guard lock(mu_);
        if (finish_) {
          for (const auto& [id, peer] : held_peers_) {
            proto::ServerMessage done;
            done.mutable_done()->set_client_request_id(id);
            Send(peer, done);
          }
          held_peers_.clear();
          finish_ = false;
          changed_.notify_all();
        }
      }
      std::vector<zmq::message_t> parts;
      while (zmq::recv_multipart(router_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        Handle(parts[0].to_string(), Parse<proto::ClientMessage>(parts[1].to_string_view()).value());
        parts.clear();
      }
    }
  }

  void Send(const std::string& peer, const proto::ServerMessage& m) {
    const std::string bytes = Serialize(m);
    std::array<zmq::const_buffer, 2> frames = {zmq::buffer(peer), zmq::buffer(bytes)};
    zmq::send_multipart(router_, frames);
  }

  void Handle(const std::string& peer, const proto::ClientMessage& m) {
    if (m.has_cancel()) {
      std::lock_guard lock(mu_);
      cancelled_.insert(m.cancel().client_request_id());
      changed_.notify_all();
      return;
    }
    const std::string& id = m.submit().client_request_id();
    proto::ServerMessage accepted;
    accepted.mutable_accepted()->set_client_request_id(id);
    Send(peer, accepted);
    if (m.submit().text() == "hold") {
      std::lock_guard lock(mu_);
      held_.insert(id);
      held_peers_[id] = peer;
      changed_.notify_all();
      return;
    }
    for (int t = 0; t < kTokens; ++t) {
      proto::ServerMessage token;
      token.mutable_token()->set_client_request_id(id);
      token.mutable_token()->add_tokens(t);
      token.mutable_token()->set_text("t" + std::to_string(t));
      Send(peer, token);
    }
    proto::ServerMessage done;
    done.mutable_done()->set_client_request_id(id);
    done.mutable_done()->set_text("all");
    Send(peer, done);
  }

  zmq::socket_t router_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::condition_variable changed_;  // held_, cancelled_ or finish_ changed
  bool finish_ = false;              // FinishHeld asks; the loop sends and clears it
  std::map<std::string, std::string> held_peers_;  // id -> peer
  std::set<std::string> cancelled_;
  std::set<std::string> held_;
  std::thread thread_;
};

// Body "stream N PROMPT" or "json N PROMPT": N submits of PROMPT.
class TestExchange : public openai::Exchange {
 public:
  TestExchange(bool stream, int n, std::string prompt) : stream_(stream), n_(n), prompt_(std::move(prompt)) {}

  std::vector<proto::SubmitRequest> TakeSubmits() override {
    std::vector<proto::SubmitRequest> submits(n_);
    for (auto& s : submits) s.set_text(prompt_);
    return submits;
  }

  openai::Output OnReply(size_t index, const proto::ServerMessage& reply) override {
    openai::Output out;
    if (!head_) {
      head_ = true;
      out.head_status = 200;
      out.content_type = stream_ ? "text/event-stream" : "application/json";
    }
    if (reply.has_token()) {
      const std::string event = "data: " + std::to_string(index) + ":" + reply.token().text() + "\n\n";
      if (stream_) out.bytes = event;
    }
    if (reply.has_done() && ++done_ == n_) {
      out.bytes += stream_ ? "data: [DONE]\n\n" : "{\"choices\":" + std::to_string(n_) + "}";
      out.done = true;
    }
    return out;
  }

 private:
  bool stream_;
  int n_;
  std::string prompt_;
  bool head_ = false;
  int done_ = 0;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(HttpSettings settings = {}) {
    HttpServerOptions options;
    options.settings = std::move(settings);
    options.context = &context_;
    options.gateway_endpoint = kGateway;
    options.start_exchange = [](std::string_view path, std::string_view body) -> openai::Started {
      char kind[16] = {};
      int n = 0;
      char prompt[64] = {};
      if (std::sscanf(std::string(body).c_str(), "%15s %d %63s", kind, &n, prompt) != 3)
        return openai::ApiError{.status = 400, .type = "invalid_request_error", .message = "bad body"};
      return std::make_unique<TestExchange>(std::string(kind) == "stream", n, prompt);
    };
    options.models_body = [] { return std::string(R"({"object":"list","data":[]})"); };
    options.metrics_text = [] { return std::string("flover:up 1\n"); };
    options.health = [] { return std::pair<bool, std::string>{false, "no replica is ready"}; };
    Result<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  zmq::context_t context_{1};
  ScriptedCore core_{context_};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Start();
  HttpTestClient client(server_->endpoint());
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client.Send(HttpTestClient::Request("POST", "/v1/completions", "json 2 hi")));
    std::optional<HttpReply> reply = client.Read();
    ASSERT_TRUE(reply) << "request " << i;
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->body, "{\"choices\":2}");
    EXPECT_EQ(reply->headers.count("connection"), 0u);  // kept alive
    ASSERT_TRUE(client.Send(HttpTestClient::Request("GET", "/v1/models")));
    reply = client.Read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200);
  }
  // Two requests sent at once (pipelined) are answered in order.
  ASSERT_TRUE(client.Send(HttpTestClient::Request("POST", "/v1/completions", "json 1 a") +
                          HttpTestClient::Request("GET", "/metrics")));
  std::optional<HttpReply> first = client.Read();
  ASSERT_TRUE(first);
  std::optional<HttpReply> second = client.Read();
  ASSERT_TRUE(second);
  EXPECT_EQ(first->body, "{\"choices\":1}");
  EXPECT_EQ(second->body, "flover:up 1\n");
  EXPECT_EQ(second->headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
}

TEST_F(HttpServerTest, StreamsSseChunksInOrder) {
  Start();
  HttpTestClient client(server_->endpoint());
  ASSERT_TRUE(client.Send(HttpTestClient::Request("POST", "/v1/chat/completions", "stream 1 hi")));
  std::optional<HttpReply> reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->headers["content-type"], "text/event-stream");
  EXPECT_EQ(reply->headers["transfer-encoding"], "chunked");
  std::vector<std::string> expected;
  for (int t = 0; t < kTokens; ++t) expected.push_back("data: 0:t" + std::to_string(t) + "\n\n");
  expected.push_back("data: [DONE]\n\n");
  EXPECT_EQ(reply->chunks, expected);
  // And the connection serves the next request.
  ASSERT_TRUE(client.Send(HttpTestClient::Request("GET", "/health")));
  reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 503);
  EXPECT_THAT(reply->body, ::testing::HasSubstr("no replica is ready"));
}

TEST_F(HttpServerTest, ErrorsHaveOpenAiShape) {
  Start({.api_keys = {"sk-right"}, .max_body_bytes = 100});
  HttpTestClient client(server_->endpoint());
  struct Case {
    std::string request;
    int status;
    std::string piece;
  };
  const Case cases[] = {
      {HttpTestClient::Request("GET", "/v1/models"), 401, "no API key provided"},
      {HttpTestClient::Request("GET", "/v1/models", "", "Authorization: Bearer sk-wrong\r\n"), 401, "incorrect API key"},
      {HttpTestClient::Request("GET", "/v1/models", "", "Authorization: Bearer sk-righ\r\n"), 401, "incorrect API key"},
      {HttpTestClient::Request("GET", "/nowhere", "", "Authorization: Bearer sk-right\r\n"), 404, "no route /nowhere"},
      {HttpTestClient::Request("GET", "/v1/completions", "", "Authorization: Bearer sk-right\r\n"), 405, "takes POST"},
      {HttpTestClient::Request("POST", "/v1/completions", "junk", "Authorization: Bearer sk-right\r\n"), 400, "bad body"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(client.Send(c.request));
    std::optional<HttpReply> reply = client.Read();
    ASSERT_TRUE(reply) << c.request;
    EXPECT_EQ(reply->status, c.status) << c.request;
    EXPECT_EQ(reply->headers["content-type"], "application/json");
    EXPECT_THAT(reply->body, ::testing::StartsWith("{\"error\":{")) << reply->body;
    EXPECT_THAT(reply->body, ::testing::HasSubstr(c.piece)) << reply->body;
  }
  // The right key passes; /health and /metrics need none.
  ASSERT_TRUE(client.Send(HttpTestClient::Request("GET", "/v1/models", "", "Authorization: Bearer sk-right\r\n")));
  EXPECT_EQ(client.Read()->status, 200);
  ASSERT_TRUE(client.Send(HttpTestClient::Request("GET", "/metrics")));
  EXPECT_EQ(client.Read()->status, 200);
  // A body over max_body_bytes is refused from its Content-Length, before it is sent.
  ASSERT_TRUE(client.Send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sk-right\r\n"
                          "Content-Length: 101\r\n\r\n"));
  std::optional<HttpReply> reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 413);
  EXPECT_THAT(reply->body, ::testing::HasSubstr("http.max_body_bytes = 100"));
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, ExpectContinueGets100BeforeTheBody) {
  Start({.max_body_bytes = 100});
  HttpTestClient client(server_->endpoint());
  ASSERT_TRUE(client.Send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\n"
                          "Content-Length: 8\r\n\r\n"));
  std::optional<HttpReply> interim = client.Read();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(client.Send("json 2 a"));
  std::optional<HttpReply> reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body, "{\"choices\":2}");
  // A body that would be too large is refused at once, never invited.
  ASSERT_TRUE(client.Send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                          "Content-Length: 101\r\n\r\n"));
  reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 413);
}

TEST_F(HttpServerTest, MalformedRequestGets400AndClose) {
  Start();
  HttpTestClient client(server_->endpoint());
  ASSERT_TRUE(client.Send("GARBAGE\x01 / HTTP/9.9\r\n\r\n"));
  std::optional<HttpReply> reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 400);
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, HeaderTimeoutClosesASlowRequest) {
  Start({.header_timeout_ms = 200});
  HttpTestClient client(server_->endpoint());
  ASSERT_TRUE(client.Send("POST /v1/completions HTTP/1.1\r\nHost: t\r\n"));  // and nothing more
  EXPECT_TRUE(client.WaitClosed());
  // Others are still served.
  HttpTestClient other(server_->endpoint());
  ASSERT_TRUE(other.Send(HttpTestClient::Request("GET", "/metrics")));
  EXPECT_EQ(other.Read()->status, 200);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  Start({.idle_timeout_ms = 200});
  HttpTestClient client(server_->endpoint());
  ASSERT_TRUE(client.Send(HttpTestClient::Request("GET", "/metrics")));
  EXPECT_EQ(client.Read()->status, 200);
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, ClientThatLeavesHasItsSubmitsCancelled) {
  Start();
  {
    HttpTestClient client(server_->endpoint());
    ASSERT_TRUE(client.Send(HttpTestClient::Request("POST", "/v1/completions", "stream 3 hold")));
    core_.WaitFor([](const auto& held, const auto&) { return held.size() >= 3; });
    ASSERT_EQ(core_.held().size(), 3u);
  }  // closed
  core_.WaitFor([](const auto& held, const auto& cancelled) { return cancelled == held; });
  EXPECT_EQ(core_.cancelled(), core_.held());
}

TEST_F(HttpServerTest, StopDeliversWhatTheCoordinatorAlreadySent) {
  Start();
  HttpTestClient client(server_->endpoint());
  ASSERT_TRUE(client.Send(HttpTestClient::Request("POST", "/v1/completions", "stream 2 hold")));
  core_.WaitFor([](const auto& held, const auto&) { return held.size() >= 2; });
  ASSERT_EQ(core_.held().size(), 2u);
  // The coordinator's last words (a shutdown's Done or Error), then at once the stop.
  core_.FinishHeld();
  server_->Stop(http_testing::kHttpWait);
  std::optional<HttpReply> reply = client.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  ASSERT_FALSE(reply->chunks.empty());
  EXPECT_EQ(reply->chunks.back(), "data: [DONE]\n\n");
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitAreRefused) {
  Start({.max_connections = 2});
  HttpTestClient a(server_->endpoint());
  HttpTestClient b(server_->endpoint());
  // Make sure both are accepted (served) before the third comes.
  for (HttpTestClient* c : {&a, &b}) {
    ASSERT_TRUE(c->Send(HttpTestClient::Request("GET", "/metrics")));
    ASSERT_EQ(c->Read()->status, 200);
  }
  HttpTestClient c(server_->endpoint());
  std::optional<HttpReply> reply = c.Read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 503);
  EXPECT_TRUE(c.WaitClosed());
  a.Close();
  // A slot is free again once the server saw the close.
  for (auto deadline = std::chrono::steady_clock::now() + http_testing::kHttpWait;;) {
    HttpTestClient d(server_->endpoint());
    d.Send(HttpTestClient::Request("GET", "/metrics"));
    std::optional<HttpReply> r = d.Read();
    if (r && r->status == 200) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the closed connection's slot never came back";
    std::this_thread::sleep_for(20ms);
  }
}

TEST_F(HttpServerTest, ManyConcurrentStreamsOnOneThread) {
  Start();
  constexpr int kStreams = 200;
  std::vector<std::unique_ptr<HttpTestClient>> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.push_back(std::make_unique<HttpTestClient>(server_->endpoint()));
    ASSERT_TRUE(clients.back()->Send(HttpTestClient::Request("POST", "/v1/completions", "stream 1 p" + std::to_string(i))));
  }
  for (int i = 0; i < kStreams; ++i) {
    std::optional<HttpReply> reply = clients[i]->Read();
    ASSERT_TRUE(reply) << "stream " << i;
    ASSERT_EQ(reply->chunks.size(), size_t{kTokens} + 1) << "stream " << i;
    EXPECT_EQ(reply->chunks.back(), "data: [DONE]\n\n");
  }
}

TEST_F(HttpServerTest, DrainRefusesNewApiRequests) {
  Start();
  server_->BeginDrain();
  for (auto deadline = std::chrono::steady_clock::now() + http_testing::kHttpWait;;) {
    HttpTestClient client(server_->endpoint());
    client.Send(HttpTestClient::Request("POST", "/v1/completions", "json 1 x"));
    std::optional<HttpReply> reply = client.Read();
    ASSERT_TRUE(reply);
    if (reply->status == 503) {
      EXPECT_THAT(reply->body, ::testing::HasSubstr("shutting down"));
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
  }
}

TEST(HttpServerStart, RefusesAPublicAddressWithoutKeys) {
  zmq::context_t context(1);
  HttpServerOptions options;
  options.host = "0.0.0.0";
  options.context = &context;
  options.gateway_endpoint = kGateway;
  options.start_exchange = [](std::string_view, std::string_view) -> openai::Started { return openai::ApiError{}; };
  options.models_body = [] { return std::string(); };
  Result<std::unique_ptr<HttpServer>> server = HttpServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), ::testing::HasSubstr("http.api_keys is empty"));
}

}  // namespace
}  // namespace flover::http
