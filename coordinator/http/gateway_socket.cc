#include "coordinator/http/gateway_socket.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "common/protocol.h"

namespace flover::http {

GatewaySocket::GatewaySocket(boost::asio::io_context& io, zmq::context_t& context, const std::string& endpoint,
                             OnMessage on_message)
    : io_(io), socket_(context, zmq::socket_type::dealer), fd_(io), on_message_(std::move(on_message)) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::sndhwm, 0);
  socket_.set(zmq::sockopt::rcvhwm, 0);
  socket_.connect(endpoint);
  fd_.assign(socket_.get(zmq::sockopt::fd));
}

GatewaySocket::~GatewaySocket() { Close(); }

void GatewaySocket::Start() {
  Wait();
  Drain();
}

void GatewaySocket::Close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  fd_.cancel(ignored);
  (void)fd_.release();  // ZeroMQ's descriptor: closed with the socket
  socket_.close();
}

void GatewaySocket::Send(const proto::ClientMessage& message) {
  if (closed_) return;
  const std::string bytes = Serialize(message);
  try {
    if (!socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait))
      if (auto more = log_.Allow(LogLimiter::Clock::now()))
        spdlog::warn("http: the coordinator's in-process socket is full; a message was dropped{}",
                     SuppressedSuffix(*more));
  } catch (const zmq::error_t& e) {
    if (auto more = log_.Allow(LogLimiter::Clock::now())) spdlog::error("http: send: {}{}", e.what(), SuppressedSuffix(*more));
  }
  // A send can consume the fd's edge: look for replies now rather than wait for one.
  boost::asio::post(io_, [this] { Drain(); });
}

void GatewaySocket::Wait() {
  if (closed_) return;
  fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec || closed_) return;
    Drain();
    Wait();
  });
}

void GatewaySocket::Drain() {
  try {
    while (!closed_ && (socket_.get(zmq::sockopt::events) & ZMQ_POLLIN)) {
      zmq::message_t message;
      if (!socket_.recv(message, zmq::recv_flags::dontwait)) break;
      Result<proto::ServerMessage> reply = Parse<proto::ServerMessage>(message.to_string_view());
      if (!reply.ok()) {
        if (auto more = log_.Allow(LogLimiter::Clock::now()))
          spdlog::error("http: unreadable reply from the coordinator: {}{}", reply.status().ToString(),
                        SuppressedSuffix(*more));
        continue;
      }
      on_message_(*reply);
    }
  } catch (const zmq::error_t& e) {
    if (auto more = log_.Allow(LogLimiter::Clock::now())) spdlog::error("http: receive: {}{}", e.what(), SuppressedSuffix(*more));
  }
}

}  // namespace flover::http
