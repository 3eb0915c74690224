#include "coordinator/http/http_connection.h"

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "coordinator/http/http_response.h"
#include "coordinator/http/http_routes.h"

namespace flover::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using boost::system::error_code;

class Connection : public ReplySink, public std::enable_shared_from_this<Connection> {
 public:
  Connection(ConnectionHub& hub, asio::ip::tcp::socket socket)
      : hub_(hub), settings_(hub.options->settings), socket_(std::move(socket)), timer_(socket_.get_executor()) {}

  void Start() { ReadRequest(); }

  bool writing() const { return writing_; }

  // Closes the socket; cancels the running submits of the exchange. Idempotent.
  void Close() {
    if (closed_) return;
    closed_ = true;
    ++timer_generation_;
    timer_.cancel();
    CancelExchange();
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    hub_.live.erase(this);  // may drop the last reference: nothing of *this after it
  }

  void OnReply(size_t index, const proto::ServerMessage& reply, bool final) override {
    if (closed_ || !exchange_) return;
    if (final && index < finished_.size()) finished_[index] = true;
    openai::Output out;
    try {
      out = exchange_->OnReply(index, reply);
    } catch (const std::exception& e) {
      spdlog::error("http: the API layer failed on a reply: {}", e.what());
      return Close();  // a response cut short is all the client can be told now
    }
    Apply(std::move(out));
  }

 private:
  // ---- timers: one at a time (a read or a write is in progress, never both with one)
  void Arm(int timeout_ms) {
    const uint64_t generation = ++timer_generation_;
    timer_.expires_after(std::chrono::milliseconds(timeout_ms));
    timer_.async_wait([self = shared_from_this(), generation](const error_code& ec) {
      if (!ec && generation == self->timer_generation_) self->Close();
    });
  }
  void Disarm() {
    ++timer_generation_;
    timer_.cancel();
  }

  // ---- reading a request
  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(static_cast<uint64_t>(settings_.max_body_bytes));
    Arm(settings_.header_timeout_ms);
    bhttp::async_read_header(socket_, buffer_, *parser_,
                             [self = shared_from_this()](const error_code& ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(const error_code& ec) {
    if (closed_) return;
    if (ec) return OnReadError(ec);
    if (const auto length = parser_->content_length(); length && *length > uint64_t(settings_.max_body_bytes))
      return RefuseBodySize();
    if (parser_->is_done()) return OnRequest();
    if (ExpectsContinue()) {
      // The client waits for this before it sends the body (curl does for large ones).
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      Arm(settings_.write_timeout_ms);
      return asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                               [self = shared_from_this()](const error_code& ec, size_t) {
                                 if (self->closed_) return;
                                 if (ec) return self->Close();
                                 self->Arm(self->settings_.header_timeout_ms);
                                 self->ReadBody();
                               });
    }
    ReadBody();
  }

  bool ExpectsContinue() const {
    const auto& header = parser_->get();
    return header.version() >= 11 && boost::beast::iequals(header[bhttp::field::expect], "100-continue");
  }

  void ReadBody() {
    bhttp::async_read(socket_, buffer_, *parser_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->closed_) return;
      if (ec) return self->OnReadError(ec);
      self->OnRequest();
    });
  }

  void RefuseBodySize() {
    FinishWith(ErrorResponse({.status = 413,
                              .type = "invalid_request_error",
                              .message = "the request body is larger than http.max_body_bytes = " +
                                         std::to_string(settings_.max_body_bytes) + " bytes",
                              .param = {},
                              .code = "request_too_large"},
                             /*keep_alive=*/false),
               /*keep_alive=*/false);
  }

  // Malformed or oversized requests get an answer and a close; a peer that left or a
  // timeout only a close.
  void OnReadError(const error_code& ec) {
    Disarm();
    if (ec == bhttp::error::body_limit) return RefuseBodySize();
    if (ec == bhttp::error::header_limit) {
      return FinishWith(ErrorResponse({.status = 431,
                                       .type = "invalid_request_error",
                                       .message = "the request line and headers are larger than " +
                                                  std::to_string(kMaxHeaderBytes) + " bytes",
                                       .param = {},
                                       .code = {}},
                                      false),
                        false);
    }
    // Beast's own errors are about the bytes (bad method, bad version, bad chunk, ...);
    // end_of_stream and partial_message only say that the peer left.
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
      return FinishWith(ErrorResponse({.status = 400,
                                       .type = "invalid_request_error",
                                       .message = "malformed HTTP request: " + ec.message(),
                                       .param = {},
                                       .code = {}},
                                      false),
                        false);
    }
    Close();
  }

  void OnRequest() {
    Disarm();
    bhttp::request<bhttp::string_body> request = parser_->release();
    parser_.reset();
    keep_alive_ = request.keep_alive() && !hub_.draining;
    http10_ = request.version() < 11;
    const Resolution resolved =
        Resolve(std::string_view(request.method_string().data(), request.method_string().size()),
                std::string_view(request.target().data(), request.target().size()),
                std::string_view(request[bhttp::field::authorization].data(),
                                 request[bhttp::field::authorization].size()),
                settings_.api_keys);
    if (!resolved.route) {
      std::string extra;
      if (!resolved.allow.empty()) extra = "Allow: " + resolved.allow + "\r\n";
      if (resolved.error.status == 401) extra = "WWW-Authenticate: Bearer\r\n";
      return FinishWith(ErrorResponse(resolved.error, keep_alive_, http10_, extra), keep_alive_);
    }
    const HttpServerOptions& o = *hub_.options;
    switch (*resolved.route) {
      case Route::kHealth: {
        const auto [ready, reason] = o.health ? o.health() : std::pair<bool, std::string>{true, ""};
        const nlohmann::json body = ready ? nlohmann::json{{"status", "ok"}}
                                          : nlohmann::json{{"status", "unavailable"}, {"reason", reason}};
        return FinishWith(Whole(ready ? 200 : 503, "application/json", body.dump()), keep_alive_);
      }
      case Route::kMetrics:
        return FinishWith(Whole(200, "text/plain; version=0.0.4; charset=utf-8", o.metrics_text ? o.metrics_text() : ""),
                          keep_alive_);
      case Route::kModels: return FinishWith(Whole(200, "application/json", o.models_body()), keep_alive_);
      case Route::kCompletions:
      case Route::kChatCompletions: break;
    }
    if (hub_.draining) {
      return FinishWith(ErrorResponse({.status = 503,
                                       .type = "server_error",
                                       .message = "the coordinator is shutting down; no new requests",
                                       .param = {},
                                       .code = {}},
                                      false, http10_),
                        false);
    }
    const std::string path = *resolved.route == Route::kCompletions ? "/v1/completions" : "/v1/chat/completions";
    openai::Started started = openai::ApiError{.status = 500, .type = "server_error", .message = "internal error",
                                               .param = {}, .code = {}};
    try {
      started = o.start_exchange(path, request.body());
    } catch (const std::exception& e) {
      spdlog::error("http: the API layer failed on a request: {}", e.what());
    }
    if (auto* error = std::get_if<openai::ApiError>(&started))
      return FinishWith(ErrorResponse(*error, keep_alive_, http10_), keep_alive_);
    BeginExchange(std::move(std::get<std::unique_ptr<openai::Exchange>>(started)));
  }

  std::string Whole(int status, std::string_view content_type, std::string_view body) const {
    return Response({.status = status, .content_type = content_type, .keep_alive = keep_alive_, .http10 = http10_}, body);
  }

  // ---- an exchange with the cluster
  void BeginExchange(std::unique_ptr<openai::Exchange> exchange) {
    std::vector<proto::SubmitRequest> submits = exchange->TakeSubmits();
    if (submits.empty()) {
      return FinishWith(ErrorResponse({.status = 500, .type = "server_error", .message = "the request made no submits",
                                       .param = {}, .code = {}},
                                      keep_alive_, http10_),
                        keep_alive_);
    }
    exchange_ = std::move(exchange);
    head_written_ = streaming_ = false;
    body_.clear();
    ids_ = hub_.replies.Assign(weak_from_this(), submits.size());
    finished_.assign(submits.size(), false);
    for (size_t i = 0; i < submits.size(); ++i) {
      proto::ClientMessage message;
      *message.mutable_submit() = std::move(submits[i]);
      message.mutable_submit()->set_client_request_id(ids_[i]);
      hub_.gateway->Send(message);
    }
    WatchPeer();
  }

  // While the exchange runs, a read notices a client that leaves (EOF, reset). Bytes it
  // reads (a pipelined request) stay in buffer_ for the next request, and reading stops.
  void WatchPeer() {
    if (reading_ || closed_ || buffer_.size() > 0) return;
    reading_ = true;
    socket_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](const error_code& ec, size_t n) {
      self->reading_ = false;
      if (self->closed_) return;
      if (ec) return self->Close();
      if (self->lingering_) return self->LingerClose();
      self->buffer_.commit(n);
      if (!self->exchange_ && !self->writing_ && !self->response_done_) self->ReadRequest();  // idle: a new request
    });
  }

  void Apply(openai::Output out) {
    if (out.head_status && !head_written_) {
      head_written_ = true;
      status_ = *out.head_status;
      content_type_ = out.content_type.empty() ? "application/json" : out.content_type;
      streaming_ = content_type_ == "text/event-stream";
      if (streaming_) {
        if (http10_) keep_alive_ = false;  // no chunked encoding: the close ends the body
        Enqueue(ResponseHead({.status = status_, .content_type = content_type_, .keep_alive = keep_alive_,
                              .http10 = http10_}));
      }
    }
    if (streaming_) {
      if (!out.bytes.empty()) Enqueue(http10_ ? std::move(out.bytes) : Chunk(out.bytes));
    } else {
      body_ += out.bytes;
    }
    if (closed_ || !out.done) return;
    if (!head_written_) {
      status_ = 500;
      content_type_ = "application/json";
    }
    if (streaming_) {
      if (!http10_) Enqueue(std::string(kLastChunk));
    } else {
      Enqueue(Whole(status_, content_type_, body_));
      body_.clear();
    }
    if (closed_) return;
    CancelExchange();  // whatever of it still runs (normally nothing)
    response_done_ = true;
    if (!writing_) AfterResponse();
  }

  // Cancels the submits of the exchange that have not finished, and drops it.
  void CancelExchange() {
    if (!exchange_) return;
    std::vector<std::string> unfinished;
    for (size_t i = 0; i < ids_.size(); ++i)
      if (!finished_[i]) unfinished.push_back(ids_[i]);
    for (const std::string& id : hub_.replies.Forget(unfinished)) {
      proto::ClientMessage message;
      message.mutable_cancel()->set_client_request_id(id);
      hub_.gateway->Send(message);
    }
    exchange_.reset();
    ids_.clear();
    finished_.clear();
  }

  // ---- writing
  // Writes `bytes` as the whole response, then reads the next request or closes.
  void FinishWith(std::string bytes, bool keep_alive) {
    keep_alive_ = keep_alive;
    Enqueue(std::move(bytes));
    if (closed_) return;
    response_done_ = true;
    if (!writing_) AfterResponse();
  }

  void Enqueue(std::string bytes) {
    if (closed_ || bytes.empty()) return;
    queued_bytes_ += bytes.size();
    if (queued_bytes_ > kMaxBufferedOutput) {
      spdlog::debug("http: a client does not read its response ({} bytes wait): closed", queued_bytes_);
      return Close();
    }
    out_.push_back(std::move(bytes));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (closed_) return;
    if (out_.empty()) {
      writing_ = false;
      Disarm();
      if (response_done_) AfterResponse();
      return;
    }
    writing_ = true;
    Arm(settings_.write_timeout_ms);
    asio::async_write(socket_, asio::buffer(out_.front()), [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->closed_) return;
      if (ec) return self->Close();
      self->queued_bytes_ -= self->out_.front().size();
      self->out_.pop_front();
      self->WriteNext();
    });
  }

  void AfterResponse() {
    response_done_ = false;
    if (!keep_alive_ || hub_.draining) return LingerClose();
    if (buffer_.size() > 0) {
      if (!reading_) ReadRequest();
      return;
    }
    Arm(settings_.idle_timeout_ms);  // until the next request starts
    if (!reading_) WatchPeer();
  }

  // Ends the response with a FIN, then reads and drops what the client still sends (a
  // body refused unread, say) until it closes, for at most header_timeout_ms and
  // kMaxLingerBytes: closing with unread bytes would reset the connection, and the
  // client could lose the response.
  void LingerClose() {
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    buffer_.clear();
    if (!lingering_) {
      lingering_ = true;
      Arm(settings_.header_timeout_ms);
    }
    if (reading_) return;  // WatchPeer's read is still out: its end closes
    reading_ = true;
    socket_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](const error_code& ec, size_t n) {
      self->reading_ = false;
      if (self->closed_) return;
      self->lingered_ += n;
      if (ec || self->lingered_ > kMaxLingerBytes) return self->Close();
      self->LingerClose();
    });
  }

  static constexpr size_t kMaxLingerBytes = 1 << 20;
  bool lingering_ = false;
  size_t lingered_ = 0;

  ConnectionHub& hub_;
  const HttpSettings& settings_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  uint64_t timer_generation_ = 0;
  beast::flat_buffer buffer_{kMaxHeaderBytes + 4096};
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool closed_ = false;
  bool reading_ = false;  // a WatchPeer read is in progress

  // The response being written.
  bool keep_alive_ = true;
  bool http10_ = false;
  bool writing_ = false;
  bool response_done_ = false;  // every byte of it is queued
  std::deque<std::string> out_;
  size_t queued_bytes_ = 0;

  // The exchange in flight.
  std::unique_ptr<openai::Exchange> exchange_;
  std::vector<std::string> ids_;
  std::vector<bool> finished_;
  bool head_written_ = false;
  bool streaming_ = false;
  int status_ = 200;
  std::string content_type_;
  std::string body_;  // a JSON response, until done
};

void Serve(ConnectionHub& hub, asio::ip::tcp::socket socket) {
  auto connection = std::make_shared<Connection>(hub, std::move(socket));
  hub.live.emplace(connection.get(), connection);
  connection->Start();
}

bool AnyWriting(const ConnectionHub& hub) {
  for (const auto& [key, c] : hub.live)
    if (c->writing()) return true;
  return false;
}

void CloseAll(ConnectionHub& hub) {
  std::vector<std::shared_ptr<Connection>> open;
  for (auto& [key, c] : hub.live) open.push_back(c);
  for (const auto& c : open) c->Close();
  hub.live.clear();
}

}  // namespace flover::http
