#include "common/disconnect_monitor.h"

#include <iterator>
#include <vector>

#include <zmq_addon.hpp>

namespace flover {

void DisconnectMonitor::Watch(zmq::socket_t& socket, const std::string& name) {
  const std::string address = "inproc://flover-monitor-" + name;
  events_.set(zmq::sockopt::linger, 0);
  if (zmq_socket_monitor(socket.handle(), address.c_str(), ZMQ_EVENT_DISCONNECTED) != 0) throw zmq::error_t();
  events_.connect(address);
}

bool DisconnectMonitor::Drain() {
  bool closed = false;
  for (;;) {
    std::vector<zmq::message_t> event;  // [uint16 event, uint32 value][endpoint]
    if (!zmq::recv_multipart(events_, std::back_inserter(event), zmq::recv_flags::dontwait)) return closed;
    closed = true;
  }
}

void DisconnectMonitor::Close() {
  if (events_.handle() != nullptr) events_.close();
}

}  // namespace flover
