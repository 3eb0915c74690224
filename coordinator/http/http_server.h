// HttpServer: the coordinator's HTTP server (docs/http.md): the OpenAI-compatible API
// (POST /v1/completions, POST /v1/chat/completions, GET /v1/models), GET /health and
// GET /metrics, on ONE Asio thread that holds every connection (never a thread per
// connection).
//
// It is a client of the coordinator core like any other (docs/architecture.md): each
// API request becomes an openai::Exchange (options.start_exchange), whose submits go,
// under ids the server assigns, over a DEALER (gateway_socket.h) to the coordinator's
// in-process ROUTER; replies come back by id (reply_router.h) to the exchange, whose
// Output the server writes: a text/event-stream response chunked as it comes, any other
// with Content-Length once done.
//
// Per connection: one request at a time, keep-alive. A request (head and body) must
// arrive within header_timeout_ms (else the connection is closed), a keep-alive
// connection idle for idle_timeout_ms is closed, a write stalled for write_timeout_ms
// closes it, and a response whose client does not read it is cut once kMaxBufferedOutput
// bytes wait. A client that goes away (EOF or a failed write) has every running submit
// of its exchange cancelled (CancelRequest). Beyond max_connections a new connection
// gets 503 and is closed at once. A body over max_body_bytes is refused from its
// Content-Length (413) before it is read; malformed HTTP gets 400 and a close; a head
// over kMaxHeaderBytes 431. While draining (BeginDrain), API requests get 503 and
// connections close after their response.
//
// Thread-safety: Start() on any thread; BeginDrain(), Stop() and endpoint() from any
// thread (Stop not concurrently with itself). Callbacks run on the server's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/cluster_config.h"
#include "common/status.h"
#include "coordinator/openai/exchange.h"

namespace zmq {
class context_t;
}

namespace flover::http {

inline constexpr size_t kMaxHeaderBytes = 16 << 10;        // a request's line and headers
inline constexpr size_t kMaxBufferedOutput = 8 << 20;      // response bytes waiting for one client

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // address or name to bind
  int port = 0;                    // 0: any free port
  HttpSettings settings;           // api_keys, max_connections, sizes, timeouts
  zmq::context_t* context = nullptr;  // the coordinator's ZeroMQ context (REQUIRED)
  std::string gateway_endpoint;       // its in-process ROUTER, inproc://... (REQUIRED, bound)
  // GET /metrics: Prometheus text exposition (version 0.0.4). Unset: empty.
  std::function<std::string()> metrics_text;
  // GET /health: {ready, reason}; 200 {"status":"ok"} or 503 with the reason. Unset: ready.
  std::function<std::pair<bool, std::string>()> health;
  // POST /v1/completions and /v1/chat/completions: the exchange for `body`, or the error to
  // answer (REQUIRED). `path` is "/v1/completions" or "/v1/chat/completions".
  std::function<openai::Started(std::string_view path, std::string_view body)> start_exchange;
  // GET /v1/models: the JSON body (REQUIRED).
  std::function<std::string()> models_body;
};

class HttpServer {
 public:
  // Binds host:port and starts the thread. InvalidArgument for a missing callback or
  // context, or when the address bound is not loopback and settings.api_keys is empty;
  // Unavailable when it cannot be bound (in use, unknown name).
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();  // Stop()

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // http://address:port as bound (port resolved).
  const std::string& endpoint() const { return endpoint_; }

  // API requests get 503 from now on; connections close after their response.
  void BeginDrain();
  // Closes the listener, then lets the connections write what the coordinator has
  // already sent them (the errors of a shutdown, say) for at most `grace`, then closes
  // every connection (their running submits cancelled) and joins the thread.
  // Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string endpoint_;
};

}  // namespace flover::http
