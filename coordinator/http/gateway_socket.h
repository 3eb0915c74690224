// GatewaySocket: the HTTP server's client connection to the coordinator core, a ZeroMQ
// DEALER connected to the coordinator's in-process ROUTER (docs/architecture.md: the
// HTTP layer is a client like any other). It lives on the HTTP server's Asio thread:
// the socket's ZMQ_FD is watched with an Asio stream_descriptor, and since that fd is
// edge-triggered, every wake-up (and every send, which may consume an edge) drains the
// socket while ZMQ_EVENTS says POLLIN.
//
// Queues are unbounded both ways (SNDHWM and RCVHWM 0): the core must never find the
// HTTP server's queue full (that would cut off every HTTP client at once); what the
// HTTP connections may hold is bounded by the server instead.
//
// Thread-safety: construct on any thread before the Asio thread runs; then that thread only.
#pragma once

#include <functional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <zmq.hpp>

#include "common/log_limiter.h"
#include "flover.pb.h"

namespace flover::http {

class GatewaySocket {
 public:
  using OnMessage = std::function<void(const proto::ServerMessage&)>;

  // Connects to `endpoint` (inproc://..., bound by the coordinator) in `context`.
  // Throws zmq::error_t when the socket cannot be made.
  GatewaySocket(boost::asio::io_context& io, zmq::context_t& context, const std::string& endpoint,
                OnMessage on_message);
  ~GatewaySocket();

  GatewaySocket(const GatewaySocket&) = delete;
  GatewaySocket& operator=(const GatewaySocket&) = delete;

  // Starts waiting for replies.
  void Start();
  // Sends without blocking; a failure is logged (rate-limited).
  void Send(const proto::ClientMessage& message);
  // Stops waiting and closes the socket (its fd stays ZeroMQ's).
  void Close();
  // Delivers every reply already queued, now.
  void Drain();

 private:
  void Wait();

  boost::asio::io_context& io_;
  zmq::socket_t socket_;
  boost::asio::posix::stream_descriptor fd_;
  OnMessage on_message_;
  bool closed_ = false;
  LogLimiter log_{10, std::chrono::seconds(1)};
};

}  // namespace flover::http
