#include "client/bench/openai_backend.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <thread>
#include <vector>

namespace flover {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

constexpr size_t kMaxErrorBody = 64 << 10;

// One request on its own connection.
struct Stream {
  explicit Stream(asio::io_context& io) : socket(io) {}
  size_t slot = 0;
  int prompt_size = 0;
  beast::tcp_stream socket;
  beast::flat_buffer buffer;
  http::request<http::string_body> request;
  std::optional<http::response_parser<http::buffer_body>> parser;
  char chunk[16384];
  int status = 0;
  std::string error_body;
  SseParser sse;
  int token_chunks = 0;
  std::optional<int> usage_prompt, usage_completion;
  std::string finish_reason;
  bool ended = false;
};

class OpenAiBackend final : public BenchBackend {
 public:
  OpenAiBackend(const OpenAiBackendOptions& o, tcp::resolver::results_type addresses)
      : options_(o), addresses_(std::move(addresses)), work_(asio::make_work_guard(io_)),
        last_activity_(BenchClock::now()) {}

  ~OpenAiBackend() override {
    for (auto& [slot, s] : streams_) {
      s->ended = true;
      s->socket.socket().close();
    }
    streams_.clear();
    work_.reset();
    io_.run_for(1s);  // lets the aborted handlers run (they hold their streams)
  }

  Result<TargetInfo> WaitReady(double timeout_s, const std::function<bool()>& interrupted) override {
    const auto deadline = BenchClock::now() + std::chrono::duration<double>(timeout_s);
    std::string last = "no answer";
    for (;;) {
      if (interrupted && interrupted()) return Cancelled("interrupted");
      Result<std::pair<int, std::string>> answer = Get("/v1/models", 5s);
      if (answer.ok() && answer->first == 200) {
        FLOVER_ASSIGN_OR_RETURN(ServedModelInfo model, ParseModelList(answer->second, options_.model));
        model_ = model.id;
        TargetInfo info;
        info.model = model.id;
        info.vocab_size = model.vocab_size;
        info.max_seq_len = model.max_seq_len;
        return info;
      }
      last = answer.ok() ? HttpErrorText(answer->first, answer->second) : answer.status().message();
      if (answer.ok() && (answer->first == 401 || answer->first == 403 || answer->first == 404))
        return Unavailable(Url("/v1/models") + ": " + last);
      if (BenchClock::now() > deadline)
        return Unavailable(Url("/v1/models") + " does not answer after " +
                           std::to_string(static_cast<int>(timeout_s)) + " s (" + last + "); is the server up?");
      std::this_thread::sleep_for(200ms);
    }
  }

  Status Submit(const BackendRequest& r) override {
    auto s = std::make_shared<Stream>(io_);
    s->slot = r.slot;
    s->prompt_size = static_cast<int>(r.request->prompt_ids.size());
    CompletionRequest c;
    c.model = model_;
    c.prompt_ids = r.request->prompt_ids;
    c.prompt_text = r.request->prompt_text;
    c.max_tokens = r.request->output_len;
    c.seed = r.seed;
    c.ignore_eos = r.ignore_eos;
    s->request = Request(http::verb::post, "/v1/completions");
    s->request.set(http::field::content_type, "application/json");
    s->request.set(http::field::accept, "text/event-stream");
    s->request.body() = CompletionRequestBody(c);
    s->request.prepare_payload();
    if (streams_.empty()) last_activity_ = BenchClock::now();  // the silence clock starts
    streams_[r.slot] = s;
    s->socket.async_connect(addresses_, [this, s](error_code ec, const tcp::endpoint&) {
      if (s->ended) return;
      if (ec) return Fail(s, "Unavailable: cannot connect to " + Url("") + ": " + ec.message());
      http::async_write(s->socket, s->request, [this, s](error_code ec, size_t) {
        if (s->ended) return;
        if (ec) return Fail(s, "Unavailable: sending the request to " + Url("") + ": " + ec.message());
        s->parser.emplace();
        s->parser->body_limit(boost::none);  // a stream is as long as the completion
        http::async_read_header(s->socket, s->buffer, *s->parser, [this, s](error_code ec, size_t) {
          if (s->ended) return;
          if (ec) return Fail(s, "Unavailable: reading the answer of " + Url("/v1/completions") + ": " + ec.message());
          Touch();
          s->status = static_cast<int>(s->parser->get().result_int());
          ReadBody(s);
        });
      });
    });
    return Status::Ok();
  }

  Status Poll(std::chrono::milliseconds max_wait, const EventSink& sink) override {
    const auto deadline = BenchClock::now() + max_wait;
    while (pending_.empty() && BenchClock::now() < deadline) io_.run_one_until(deadline);
    io_.poll();
    Status result = Status::Ok();
    if (!streams_.empty() && BenchClock::now() - last_activity_ > std::chrono::duration<double>(options_.silence_timeout_s)) {
      const std::string message =
          "no reply from " + Url("") + " for " + std::to_string(static_cast<int>(options_.silence_timeout_s)) + " s";
      AbandonAll("Unavailable: " + message);
      result = DeadlineExceeded(message);
    }
    std::vector<BackendEvent> events;
    events.swap(pending_);
    for (const BackendEvent& e : events) sink(e);
    return result;
  }

  void CancelAll() override { AbandonAll("Cancelled: interrupted"); }

  std::optional<StepCounters> ReadCounters() override { return std::nullopt; }

 private:
  std::string Url(const std::string& path) const { return options_.endpoint.ToString() + path; }

  http::request<http::string_body> Request(http::verb verb, const std::string& path) const {
    http::request<http::string_body> req{verb, options_.endpoint.base_path + path, 11};
    req.set(http::field::host, options_.endpoint.host + ":" + options_.endpoint.port);
    req.set(http::field::user_agent, "flover-bench");
    if (!options_.api_key.empty()) req.set(http::field::authorization, "Bearer " + options_.api_key);
    return req;
  }

  void Touch() { last_activity_ = BenchClock::now(); }

  void Emit(BackendEvent e) {
    e.at = BenchClock::now();
    pending_.push_back(std::move(e));
  }

  void ReadBody(const std::shared_ptr<Stream>& s) {
    auto& body = s->parser->get().body();
    body.data = s->chunk;
    body.size = sizeof(s->chunk);
    http::async_read_some(s->socket, s->buffer, *s->parser, [this, s](error_code ec, size_t) {
      if (s->ended) return;
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return Fail(s, "Unavailable: the stream from " + Url("/v1/completions") + " broke: " + ec.message());
      Touch();
      const size_t n = sizeof(s->chunk) - s->parser->get().body().size;
      OnBytes(s, std::string_view(s->chunk, n));
      if (s->ended) return;
      if (s->parser->is_done()) return OnEnd(s);
      ReadBody(s);
    });
  }

  void OnBytes(const std::shared_ptr<Stream>& s, std::string_view bytes) {
    if (s->status != 200) {
      s->error_body.append(bytes.substr(0, kMaxErrorBody - std::min(kMaxErrorBody, s->error_body.size())));
      return;
    }
    const Status fed = s->sse.Feed(bytes, [this, &s](const SseEvent& event) {
      if (s->ended) return;
      const StreamEvent e = InterpretStreamEvent(event);
      switch (e.kind) {
        case StreamEvent::kDone:
          return Complete(s);
        case StreamEvent::kError:
          return Fail(s, "Error: the server ended the stream with an error: " + e.error);
        case StreamEvent::kChunk:
          if (e.token) {
            ++s->token_chunks;
            BackendEvent t;
            t.kind = BackendEvent::kTokens;
            t.slot = s->slot;
            t.n_tokens = 1;
            Emit(t);
          }
          if (!e.finish_reason.empty()) s->finish_reason = e.finish_reason;
          if (e.prompt_tokens) s->usage_prompt = e.prompt_tokens;
          if (e.completion_tokens) s->usage_completion = e.completion_tokens;
          return;
      }
    });
    if (!fed.ok() && !s->ended) Fail(s, "Error: " + fed.message());
  }

  // The body ended (the server closed the chunked stream) before or without [DONE].
  void OnEnd(const std::shared_ptr<Stream>& s) {
    if (s->status != 200) return Fail(s, "Error: " + HttpErrorText(s->status, s->error_body));
    if (!s->finish_reason.empty()) return Complete(s);  // a server that sends no [DONE]
    Fail(s, "Error: the stream from " + Url("/v1/completions") + " ended without [DONE] or a finish reason");
  }

  void Complete(const std::shared_ptr<Stream>& s) {
    if (s->finish_reason.empty())  // llama-cpp-python does this to a stream when another request waits
      return Fail(s, "Error: the server ended the stream ([DONE]) without a finish reason after " +
                         std::to_string(s->token_chunks) + " token(s): it cut the completion short");
    BackendEvent done;
    done.kind = BackendEvent::kDone;
    done.slot = s->slot;
    done.prompt_tokens = s->usage_prompt.value_or(s->prompt_size);
    done.completion_tokens = s->usage_completion.value_or(s->token_chunks);
    done.finish_reason = s->finish_reason;
    Emit(done);
    End(s);
  }

  void Fail(const std::shared_ptr<Stream>& s, const std::string& error) {
    BackendEvent e;
    e.kind = BackendEvent::kError;
    e.slot = s->slot;
    e.error = error;
    Emit(e);
    End(s);
  }

  void End(const std::shared_ptr<Stream>& s) {
    s->ended = true;
    error_code ignored;
    s->socket.socket().shutdown(tcp::socket::shutdown_both, ignored);
    s->socket.socket().close(ignored);
    streams_.erase(s->slot);
  }

  void AbandonAll(const std::string& error) {
    std::vector<std::shared_ptr<Stream>> open;
    for (auto& [slot, s] : streams_) open.push_back(s);
    for (const auto& s : open) Fail(s, error);
  }

  // A whole GET answer (status, body) within `timeout`.
  Result<std::pair<int, std::string>> Get(const std::string& path, std::chrono::seconds timeout) {
    asio::io_context io;
    beast::tcp_stream socket(io);
    beast::flat_buffer buffer;
    http::request<http::string_body> req = Request(http::verb::get, path);
    http::response<http::string_body> res;
    error_code failure;
    socket.expires_after(timeout);
    socket.async_connect(addresses_, [&](error_code ec, const tcp::endpoint&) {
      if (ec) return void(failure = ec);
      http::async_write(socket, req, [&](error_code ec, size_t) {
        if (ec) return void(failure = ec);
        http::async_read(socket, buffer, res, [&](error_code ec, size_t) { failure = ec; });
      });
    });
    io.run();
    if (failure) return Unavailable("GET " + Url(path) + ": " + failure.message());
    return std::make_pair(static_cast<int>(res.result_int()), res.body());
  }

  const OpenAiBackendOptions options_;
  const tcp::resolver::results_type addresses_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::string model_;
  std::map<size_t, std::shared_ptr<Stream>> streams_;  // in flight, by slot
  std::vector<BackendEvent> pending_;                  // for the next Poll's sink
  BenchClock::time_point last_activity_;
};

}  // namespace

Result<std::unique_ptr<BenchBackend>> CreateOpenAiBackend(const OpenAiBackendOptions& options) {
  asio::io_context io;
  tcp::resolver resolver(io);
  error_code ec;
  tcp::resolver::results_type addresses = resolver.resolve(options.endpoint.host, options.endpoint.port, ec);
  if (ec) return Unavailable("cannot resolve " + options.endpoint.host + ": " + ec.message());
  return std::unique_ptr<BenchBackend>(std::make_unique<OpenAiBackend>(options, std::move(addresses)));
}

}  // namespace flover
