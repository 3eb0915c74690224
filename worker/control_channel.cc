#include "worker/control_channel.h"

#include <cerrno>

#include "common/protocol.h"

namespace flover {

using Clock = std::chrono::steady_clock;

ControlChannel::ControlChannel(zmq::context_t& context, const std::string& endpoint, int64_t max_message_bytes)
    : socket_(context, zmq::socket_type::dealer), last_heard_(Clock::now()) {
  socket_.set(zmq::sockopt::linger, 1000);
  socket_.set(zmq::sockopt::maxmsgsize, max_message_bytes);
  socket_.connect(endpoint);
}

void ControlChannel::SetMaxMessageBytes(int64_t max_message_bytes) {
  socket_.set(zmq::sockopt::maxmsgsize, max_message_bytes);
}

Status ControlChannel::Send(const proto::WorkerMessage& message) { return SendSerialized(Serialize(message)); }

Status ControlChannel::SendSerialized(std::string_view message) {
  try {
    socket_.send(zmq::buffer(message), zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("control send failed: ") + e.what());
  }
  return Status::Ok();
}

Result<std::optional<proto::CoordinatorMessage>> ControlChannel::Receive(std::chrono::milliseconds timeout) {
  try {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 1, timeout) == 0) return std::optional<proto::CoordinatorMessage>();
    zmq::message_t frame;
    if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return std::optional<proto::CoordinatorMessage>();
    last_heard_ = Clock::now();
    FLOVER_ASSIGN_OR_RETURN(proto::CoordinatorMessage m, Parse<proto::CoordinatorMessage>(frame.to_string_view()));
    return std::optional<proto::CoordinatorMessage>(std::move(m));
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return std::optional<proto::CoordinatorMessage>();  // a signal
    return Unavailable(std::string("control receive failed: ") + e.what());
  }
}

Status ControlChannel::Set(const std::string& key, const std::vector<char>& value) {
  proto::WorkerMessage m;
  m.mutable_store_set()->set_key(key);
  m.mutable_store_set()->set_value(std::string(value.begin(), value.end()));
  return Send(m);
}

Result<std::vector<char>> ControlChannel::Get(const std::string& key, std::chrono::milliseconds timeout) {
  proto::WorkerMessage m;
  m.mutable_store_get()->set_key(key);
  m.mutable_store_get()->set_timeout_ms(static_cast<uint32_t>(timeout.count()));
  FLOVER_RETURN_IF_ERROR(Send(m));
  const auto deadline = Clock::now() + timeout + std::chrono::seconds(2);  // the coordinator answers at the timeout
  while (Clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    FLOVER_ASSIGN_OR_RETURN(std::optional<proto::CoordinatorMessage> reply, Receive(left));
    if (!reply) break;
    if (reply->has_shutdown()) {
      shutdown_requested_ = true;
      return Cancelled("the coordinator shut the cluster down during rendezvous");
    }
    if (!reply->has_store_value() || reply->store_value().key() != key) continue;  // heartbeats etc.
    if (!reply->store_value().found())
      return Unavailable("rendezvous key '" + key + "' was not set within " + std::to_string(timeout.count()) +
                         " ms (is every rank of the replica running?)");
    const std::string& v = reply->store_value().value();
    return std::vector<char>(v.begin(), v.end());
  }
  return Unavailable("no answer from the coordinator for rendezvous key '" + key + "'");
}

}  // namespace flover
