// DisconnectMonitor: tells when a connection of a ZeroMQ socket closes (the peer process
// exited or crashed, or the network dropped the connection), through libzmq's socket
// monitor: ZMQ_EVENT_DISCONNECTED events on an inproc PAIR socket, which the owner polls
// with its other sockets. Which peer left is not said (a bound socket's events name the
// bound endpoint): a ROUTER finds out by sending, as ZMQ_ROUTER_MANDATORY fails a send
// to a peer that is gone with EHOSTUNREACH.
//
// Thread-safety: none; it belongs to the thread that owns the watched socket.
#pragma once

#include <string>

#include <zmq.hpp>

namespace flover {

class DisconnectMonitor {
 public:
  explicit DisconnectMonitor(zmq::context_t& context) : events_(context, zmq::socket_type::pair) {}

  // Starts watching `socket`; call before it binds or connects. `name` makes the inproc
  // address unique in the context. Throws zmq::error_t.
  void Watch(zmq::socket_t& socket, const std::string& name);

  // What to poll for ZMQ_POLLIN.
  void* handle() { return events_.handle(); }

  // Reads every pending event; true if a connection closed since the last call.
  bool Drain();

  // Closes the event socket (before the context closes).
  void Close();

 private:
  zmq::socket_t events_;
};

}  // namespace flover
