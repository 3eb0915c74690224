#include "tests/client/scripted_coordinator.h"

#include <array>
#include <iterator>
#include <zmq_addon.hpp>

#include "common/protocol.h"

namespace flover::testing {

ScriptedCoordinator::ScriptedCoordinator() : socket_(context_, zmq::socket_type::router) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("tcp://127.0.0.1:*");
  endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
}

std::optional<ScriptedCoordinator::Received> ScriptedCoordinator::Receive(std::chrono::milliseconds timeout) {
  std::vector<zmq::message_t> parts;
  socket_.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
  if (!zmq::recv_multipart(socket_, std::back_inserter(parts)) || parts.size() != 2) return std::nullopt;
  Result<proto::ClientMessage> message = Parse<proto::ClientMessage>(parts[1].to_string_view());
  if (!message.ok()) return std::nullopt;
  return Received{parts[0].to_string(), std::move(message).value()};
}

void ScriptedCoordinator::Close(bool flush) {
  if (flush) socket_.set(zmq::sockopt::linger, -1);  // the context's end waits for them
  socket_.close();
}

void ScriptedCoordinator::Reply(const std::string& identity, const proto::ServerMessage& message) {
  const std::string payload = Serialize(message);
  const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(identity), zmq::buffer(payload)};
  zmq::send_multipart(socket_, frames);
}

proto::ServerMessage AcceptedReply(const std::string& id, int replica, int prompt_tokens) {
  proto::ServerMessage m;
  m.mutable_accepted()->set_client_request_id(id);
  m.mutable_accepted()->set_request_id(1);
  m.mutable_accepted()->set_replica(replica);
  m.mutable_accepted()->set_prompt_tokens(prompt_tokens);
  return m;
}

proto::ServerMessage TokenReply(const std::string& id, const std::vector<int>& tokens, const std::string& text) {
  proto::ServerMessage m;
  m.mutable_token()->set_client_request_id(id);
  for (int t : tokens) m.mutable_token()->add_tokens(t);
  m.mutable_token()->set_text(text);
  return m;
}

proto::ServerMessage DoneReply(const std::string& id, proto::FinishReason finish, const std::vector<int>& tokens,
                               const std::string& text) {
  proto::ServerMessage m;
  proto::Done* d = m.mutable_done();
  d->set_client_request_id(id);
  d->set_finish_reason(finish);
  for (int t : tokens) d->add_tokens(t);
  d->set_text(text);
  d->set_completion_tokens(static_cast<int>(tokens.size()));
  return m;
}

proto::ServerMessage ErrorReply(const std::string& id, const std::string& code, const std::string& message) {
  proto::ServerMessage m;
  m.mutable_error()->set_client_request_id(id);
  m.mutable_error()->set_code(code);
  m.mutable_error()->set_message(message);
  return m;
}

}  // namespace flover::testing
