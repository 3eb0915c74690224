#include "coordinator/http/http_server.h"

#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "common/log_limiter.h"
#include "coordinator/http/http_connection.h"
#include "coordinator/http/http_response.h"

namespace flover::http {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options)
      : options_(std::move(options)), io_(1), acceptor_(io_), retry_(io_) {
    hub_.options = &options_;
  }

  ~Impl() { Stop(std::chrono::milliseconds(0)); }

  Result<std::string> Bind() {
    error_code ec;
    tcp::resolver resolver(io_);
    const auto results = resolver.resolve(options_.host, std::to_string(options_.port), ec);
    if (ec || results.empty())
      return Unavailable("endpoints.http: cannot resolve '" + options_.host + "': " + ec.message());
    const tcp::endpoint wanted = results.begin()->endpoint();
    acceptor_.open(wanted.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(wanted, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Unavailable("endpoints.http: cannot bind " + wanted.address().to_string() + ":" +
                         std::to_string(options_.port) + ": " + ec.message());
    }
    const tcp::endpoint bound = acceptor_.local_endpoint(ec);
    if (ec) return Unavailable("endpoints.http: " + ec.message());
    const std::string address = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                         : bound.address().to_string();
    const std::string endpoint = "http://" + address + ":" + std::to_string(bound.port());
    if (!bound.address().is_loopback() && options_.settings.api_keys.empty()) {
      return InvalidArgument("endpoints.http: '" + options_.host + "' bound " + endpoint +
                             ", which is not a loopback address, and http.api_keys is empty: set http.api_keys "
                             "(docs/http.md) or bind 127.0.0.1");
    }
    return endpoint;
  }

  Status Run() {
    try {
      gateway_.emplace(io_, *options_.context, options_.gateway_endpoint,
                       [this](const proto::ServerMessage& reply) { hub_.replies.Route(reply); });
    } catch (const zmq::error_t& e) {
      return Internal(std::string("http: cannot connect to the coordinator's in-process socket: ") + e.what());
    }
    hub_.gateway = &*gateway_;
    gateway_->Start();
    Accept();
    thread_ = std::thread([this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("http: {}", e.what());
        }
      }
    });
    return Status::Ok();
  }

  void BeginDrain() {
    asio::post(io_, [this] { hub_.draining = true; });
  }

  void Stop(std::chrono::milliseconds grace) {
    if (!thread_.joinable()) return;
    asio::post(io_, [this, deadline = std::chrono::steady_clock::now() + grace] {
      error_code ignored;
      acceptor_.close(ignored);
      retry_.cancel();
      hub_.draining = true;
      gateway_->Drain();  // what the coordinator sent before it stopped goes to the connections
      Finish(deadline);
    });
    thread_.join();
  }

 private:
  // Closes everything once no connection has bytes left to write, or at `deadline`.
  void Finish(std::chrono::steady_clock::time_point deadline) {
    if (AnyWriting(hub_) && std::chrono::steady_clock::now() < deadline) {
      retry_.expires_after(std::chrono::milliseconds(5));
      retry_.async_wait([this, deadline](const error_code&) { Finish(deadline); });
      return;
    }
    CloseAll(hub_);
    gateway_->Close();
    io_.stop();
  }

  void Accept() {
    acceptor_.async_accept([this](const error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (ec) {
        // Out of descriptors (EMFILE) or a connection that failed before it was
        // accepted: try again a little later rather than spin.
        if (auto more = accept_log_.Allow(LogLimiter::Clock::now()))
          spdlog::warn("http: accept: {}{}", ec.message(), SuppressedSuffix(*more));
        retry_.expires_after(std::chrono::milliseconds(10));
        retry_.async_wait([this](const error_code& e) {
          if (!e) Accept();
        });
        return;
      }
      if (static_cast<int>(hub_.live.size()) >= options_.settings.max_connections) {
        Refuse(std::move(socket));
      } else {
        Serve(hub_, std::move(socket));
      }
      Accept();
    });
  }

  // Beyond max_connections: a 503, written if the socket takes it at once, and a close.
  void Refuse(tcp::socket socket) {
    if (auto more = refused_log_.Allow(LogLimiter::Clock::now()))
      spdlog::warn("http: a connection beyond http.max_connections = {} refused{}", options_.settings.max_connections,
                   SuppressedSuffix(*more));
    static const std::string kBusy = ErrorResponse({.status = 503,
                                                    .type = "server_error",
                                                    .message = "too many connections (http.max_connections); retry later",
                                                    .param = {},
                                                    .code = {}},
                                                   /*keep_alive=*/false);
    error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(kBusy), ignored);
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }

  HttpServerOptions options_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  std::optional<GatewaySocket> gateway_;
  ConnectionHub hub_;
  std::thread thread_;
  LogLimiter accept_log_{10, std::chrono::seconds(1)};
  LogLimiter refused_log_{10, std::chrono::seconds(1)};
};

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  if (!options.context || options.gateway_endpoint.empty())
    return InvalidArgument("http server: no ZeroMQ context or in-process endpoint to reach the coordinator");
  if (!options.start_exchange || !options.models_body)
    return InvalidArgument("http server: start_exchange and models_body are required");
  auto impl = std::make_unique<Impl>(std::move(options));
  FLOVER_ASSIGN_OR_RETURN(std::string endpoint, impl->Bind());
  FLOVER_RETURN_IF_ERROR(impl->Run());
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(impl)));
  server->endpoint_ = std::move(endpoint);
  return server;
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::BeginDrain() { impl_->BeginDrain(); }

void HttpServer::Stop(std::chrono::milliseconds grace) {
  if (impl_) impl_->Stop(grace);
}

}  // namespace flover::http
