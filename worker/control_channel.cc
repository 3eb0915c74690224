#include "worker/control_channel.h"

#include <cerrno>

#include "common/protocol.h"

namespace flover {

using Clock = std::chrono::steady_clock;

ControlChannel::ControlChannel(zmq::context_t& context)
    : socket_(context, zmq::socket_type::dealer), monitor_(context), last_heard_(Clock::now()) {}

Result<std::unique_ptr<ControlChannel>> ControlChannel::Connect(zmq::context_t& context, const std::string& endpoint,
                                                                const CurveClientKeys* curve, int64_t max_message_bytes) {
  std::unique_ptr<ControlChannel> channel(new ControlChannel(context));
  if (curve) FLOVER_RETURN_IF_ERROR(ApplyCurveClient(channel->socket_, *curve));
  try {
    channel->socket_.set(zmq::sockopt::linger, 1000);
    channel->socket_.set(zmq::sockopt::maxmsgsize, max_message_bytes);
    channel->monitor_.Watch(channel->socket_, "control",
                            {.endpoint = endpoint,
                             .curve = curve != nullptr,
                             .who = "worker",
                             .key_flags = "--key and --coordinator-public-key, or security.worker_key and "
                                          "coordinator_public_key with --config"});
    channel->socket_.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return InvalidArgument("cannot connect to coordinator " + endpoint + ": " + e.what());
  }
  return channel;
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
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      // A closed connection is not an error here: the socket reconnects, and the
      // coordinator's silence is judged by the heartbeats.
      FLOVER_RETURN_IF_ERROR(monitor_.Drain().status());
      zmq::message_t frame;
      if (socket_.recv(frame, zmq::recv_flags::dontwait)) {
        last_heard_ = Clock::now();
        FLOVER_ASSIGN_OR_RETURN(proto::CoordinatorMessage m, Parse<proto::CoordinatorMessage>(frame.to_string_view()));
        return std::optional<proto::CoordinatorMessage>(std::move(m));
      }
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= std::chrono::milliseconds(0)) return std::optional<proto::CoordinatorMessage>();
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, left);
    }
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
