// DisconnectMonitor: tells when a connection of a ZeroMQ socket closes (the peer process
// exited or crashed, or the network dropped the connection), through libzmq's socket
// monitor: ZMQ_EVENT_DISCONNECTED events on an inproc PAIR socket, which the owner polls
// with its other sockets. Which peer left is not said (a bound socket's events name the
// bound endpoint): a ROUTER finds out by sending, as ZMQ_ROUTER_MANDATORY fails a send
// to a peer that is gone with EHOSTUNREACH.
// It can watch more events (accepted connections, handshakes that failed) for whoever
// reads them with DrainEvents().
//
// Thread-safety: none; it belongs to the thread that owns the watched socket.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <zmq.hpp>

namespace flover {

class DisconnectMonitor {
 public:
  explicit DisconnectMonitor(zmq::context_t& context) : events_(context, zmq::socket_type::pair) {}

  struct Event {
    uint16_t event = 0;  // ZMQ_EVENT_*
    uint32_t value = 0;  // the event's value: a file descriptor, an error or ZAP status code
  };

  // Starts watching `socket` for `events` (ZMQ_EVENT_* bits; closed connections always);
  // call before it binds or connects. `name` makes the inproc address unique in the
  // context. Throws zmq::error_t.
  void Watch(zmq::socket_t& socket, const std::string& name, int events = ZMQ_EVENT_DISCONNECTED);

  // What to poll for ZMQ_POLLIN.
  void* handle() { return events_.handle(); }

  // Reads every pending event; true if a connection closed since the last call.
  bool Drain();

  // Reads every pending event, in order.
  std::vector<Event> DrainEvents();

  // Closes the event socket (before the context closes).
  void Close();

 private:
  zmq::socket_t events_;
};

}  // namespace flover
