#include "common/disconnect_monitor.h"

#include <cstring>
#include <iterator>
#include <vector>

#include <zmq_addon.hpp>

namespace flover {

void DisconnectMonitor::Watch(zmq::socket_t& socket, const std::string& name, int events) {
  const std::string address = "inproc://flover-monitor-" + name;
  events_.set(zmq::sockopt::linger, 0);
  if (zmq_socket_monitor(socket.handle(), address.c_str(), events | ZMQ_EVENT_DISCONNECTED) != 0) throw zmq::error_t();
  events_.connect(address);
}

std::vector<DisconnectMonitor::Event> DisconnectMonitor::DrainEvents() {
  std::vector<Event> events;
  for (;;) {
    std::vector<zmq::message_t> frames;  // [uint16 event, uint32 value][endpoint]
    if (!zmq::recv_multipart(events_, std::back_inserter(frames), zmq::recv_flags::dontwait)) return events;
    Event e;
    if (!frames.empty() && frames[0].size() >= sizeof(e.event) + sizeof(e.value)) {
      std::memcpy(&e.event, frames[0].data(), sizeof(e.event));
      std::memcpy(&e.value, static_cast<const char*>(frames[0].data()) + sizeof(e.event), sizeof(e.value));
    }
    events.push_back(e);
  }
}

bool DisconnectMonitor::Drain() {
  bool closed = false;
  for (const Event& e : DrainEvents()) closed = closed || e.event == ZMQ_EVENT_DISCONNECTED;
  return closed;
}

void DisconnectMonitor::Close() {
  if (events_.handle() != nullptr) events_.close();
}

}  // namespace flover
