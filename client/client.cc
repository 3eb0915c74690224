#include "client/client.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <thread>

#include "common/protocol.h"
#include "common/utf8.h"

namespace flover {
namespace {
// Replies that may wait unread here (many requests sent before the first read).
constexpr int kMaxUnreadReplies = 100000;
// How long FetchStatus waits before it asks again when the coordinator refused a status
// request for coming too often (limits.status_per_client_per_second).
constexpr auto kStatusRetryAfter = std::chrono::milliseconds(200);
// After a close, how long Receive waits for replies that came before it to be readable.
constexpr auto kLastRepliesWait = std::chrono::milliseconds(200);

// InvalidArgument naming `what` when `text` is not valid UTF-8.
Status CheckUtf8(const std::string& text, const std::string& what) {
  if (ToValidUtf8(text) == text) return Status::Ok();
  return InvalidArgument(what + " is not valid UTF-8 text, as the protocol's strings must be");
}

}  // namespace

Result<std::optional<CurveClientKeys>> LoadClientKeys(const ClientKeyFiles& files) {
  if (files.key.empty() && files.server_key.empty()) return std::optional<CurveClientKeys>();
  if (files.key.empty() || files.server_key.empty()) {
    return InvalidArgument(std::string("CURVE needs both the client's key pair (--key, FLOVER_KEY) and the "
                                       "coordinator's public key (--server-key, FLOVER_SERVER_KEY); only ") +
                           (files.key.empty() ? "the server key" : "the key pair") + " was given");
  }
  FLOVER_ASSIGN_OR_RETURN(CurveClientKeys keys, LoadCurveClientKeys(files.key, files.server_key));
  return std::optional<CurveClientKeys>(std::move(keys));
}

Result<std::unique_ptr<Client>> ConnectWithKeys(const std::string& endpoint, const ClientKeyFiles& files) {
  FLOVER_ASSIGN_OR_RETURN(std::optional<CurveClientKeys> keys, LoadClientKeys(files));
  return Client::Connect(endpoint, keys);
}

bool AllReplicasReady(const proto::ClusterStatus& status) {
  if (status.replicas_size() == 0) return false;
  for (const auto& r : status.replicas())
    if (r.state() != "ready") return false;
  return true;
}

Result<std::unique_ptr<Client>> Client::Connect(const std::string& endpoint,
                                                const std::optional<CurveClientKeys>& curve) {
  std::unique_ptr<Client> c(new Client());
  c->endpoint_ = endpoint;
  if (curve) FLOVER_RETURN_IF_ERROR(ApplyCurveClient(c->socket_, *curve));
  try {
    c->socket_.set(zmq::sockopt::linger, 0);
    c->socket_.set(zmq::sockopt::rcvhwm, kMaxUnreadReplies);
    c->socket_.set(zmq::sockopt::maxmsgsize, kMaxServerMessageBytes);
    c->monitor_.Watch(c->socket_, "client",  // one Client per context
                      {.endpoint = endpoint,
                       .curve = curve.has_value(),
                       .who = "client",
                       .key_flags = "--key and --server-key, or FLOVER_KEY and FLOVER_SERVER_KEY"});
    c->socket_.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return InvalidArgument("cannot connect to " + endpoint + ": " + e.what());
  }
  return c;
}

Status Client::SendRaw(const std::string& bytes) {
  // Blocks while the connection's queue is full, as a blocking send would, but not past
  // a refused handshake: after one, libzmq has no connection to queue on.
  std::array<zmq::pollitem_t, 2> items = {
      {{socket_.handle(), 0, ZMQ_POLLOUT, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}}};
  try {
    for (;;) {
      if (socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait)) return Status::Ok();
      FLOVER_RETURN_IF_ERROR(monitor_.Drain().status());
      zmq::poll(items, std::chrono::milliseconds(100));
    }
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("send failed: ") + e.what());
  }
}

Status Client::Send(const proto::ClientMessage& message) { return SendRaw(Serialize(message)); }

Status Client::Submit(const std::string& client_request_id, const std::string& text,
                      const std::vector<int>& token_ids, const SamplingParams& sampling, const StopParams& stop,
                      bool stream, std::chrono::milliseconds timeout) {
  proto::SubmitRequest s;
  s.set_client_request_id(client_request_id);
  if (!text.empty() || token_ids.empty()) {
    s.set_text(text);
  } else {
    for (int id : token_ids) s.mutable_token_ids()->add_ids(id);
  }
  *s.mutable_sampling() = ToProto(sampling);
  *s.mutable_stop() = ToProto(stop);
  s.set_stream(stream);
  s.set_timeout_ms(static_cast<uint32_t>(std::clamp<int64_t>(timeout.count(), 0, UINT32_MAX)));
  return Submit(s);
}

Status Client::Submit(const proto::SubmitRequest& request) {
  FLOVER_RETURN_IF_ERROR(CheckUtf8(request.client_request_id(), "the request id"));
  FLOVER_RETURN_IF_ERROR(CheckUtf8(request.text(), "the prompt"));
  for (int i = 0; i < request.stop().stop_strings_size(); ++i)
    FLOVER_RETURN_IF_ERROR(CheckUtf8(request.stop().stop_strings(i), "stop string " + std::to_string(i)));
  proto::ClientMessage m;
  *m.mutable_submit() = request;
  return Send(m);
}

Status Client::Cancel(const std::string& client_request_id) {
  proto::ClientMessage m;
  m.mutable_cancel()->set_client_request_id(client_request_id);
  return Send(m);
}

Status Client::RequestStatus() {
  proto::ClientMessage m;
  m.mutable_status();
  return Send(m);
}

Status Client::WaitConnected(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<zmq::pollitem_t, 1> items = {{{monitor_.handle(), 0, ZMQ_POLLIN, 0}}};
  try {
    for (;;) {
      FLOVER_RETURN_IF_ERROR(monitor_.Drain().status());
      if (monitor_.established()) return Status::Ok();
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= std::chrono::milliseconds(0)) {
        char seconds[32];
        std::snprintf(seconds, sizeof(seconds), "%g", timeout.count() / 1000.0);
        return Unavailable("nothing answered at " + endpoint_ + " within " + seconds +
                           " s: is the coordinator running, and is this its client endpoint (endpoints.client)?");
      }
      zmq::poll(items, left);
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return Cancelled("interrupted while connecting to " + endpoint_);
    return Unavailable("connecting to " + endpoint_ + " failed: " + e.what());
  }
}

Result<std::optional<proto::ServerMessage>> Client::Receive(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<zmq::pollitem_t, 2> items = {{{socket_.handle(), 0, ZMQ_POLLIN, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}}};
  try {
    for (;;) {
      zmq::message_t msg;
      if (close_pending_) {
        // The connection closed; the replies that came before it are read first. libzmq's
        // I/O thread hands them to the socket and the disconnect to the monitor
        // separately, so the close can be seen before the last replies are readable.
        std::array<zmq::pollitem_t, 1> data = {{{socket_.handle(), 0, ZMQ_POLLIN, 0}}};
        if (!socket_.recv(msg, zmq::recv_flags::dontwait) &&
            !(zmq::poll(data, kLastRepliesWait) > 0 && socket_.recv(msg, zmq::recv_flags::dontwait))) {
          close_pending_ = false;
          return Unavailable("the connection to the coordinator at " + endpoint_ +
                             " closed (it stopped or crashed): no reply will come for the requests in flight");
        }
      } else {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (zmq::poll(items, std::max(left, std::chrono::milliseconds(0))) == 0)
          return std::optional<proto::ServerMessage>();
        if (!socket_.recv(msg, zmq::recv_flags::dontwait)) {
          FLOVER_ASSIGN_OR_RETURN(close_pending_, monitor_.Drain());
          continue;
        }
      }
      FLOVER_ASSIGN_OR_RETURN(proto::ServerMessage reply, Parse<proto::ServerMessage>(msg.to_string_view()));
      if (reply.has_keepalive()) continue;  // the coordinator checking that this connection is still there
      return std::optional<proto::ServerMessage>(std::move(reply));
    }
  } catch (const zmq::error_t& e) {
    // A signal interrupted the wait: no message; the caller looks at its own flags.
    if (e.num() == EINTR) return std::optional<proto::ServerMessage>();
    return Unavailable(std::string("receive failed: ") + e.what());
  }
}

Result<proto::ClusterStatus> Client::FetchStatus(std::chrono::milliseconds timeout) {
  FLOVER_RETURN_IF_ERROR(RequestStatus());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    FLOVER_ASSIGN_OR_RETURN(std::optional<proto::ServerMessage> m, Receive(left));
    if (!m) break;
    if (m->has_status()) return m->status();
    if (m->has_error() && m->error().code() == StatusCodeName(StatusCode::kResourceExhausted) &&
        std::chrono::steady_clock::now() + kStatusRetryAfter < deadline) {
      std::this_thread::sleep_for(kStatusRetryAfter);  // asked too often: ask again later
      FLOVER_RETURN_IF_ERROR(RequestStatus());
      continue;
    }
    if (m->has_error()) return Unavailable("status: " + m->error().message());
  }
  return Unavailable("no status reply within " + std::to_string(timeout.count()) + " ms");
}

Result<proto::ReloadReply> Client::Reload(std::chrono::milliseconds timeout) {
  proto::ClientMessage request;
  request.mutable_reload();
  FLOVER_RETURN_IF_ERROR(Send(request));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    FLOVER_ASSIGN_OR_RETURN(std::optional<proto::ServerMessage> m, Receive(left));
    if (!m) break;
    if (m->has_reload()) return m->reload();
    if (m->has_error()) {
      StatusCode code = StatusCode::kUnavailable;  // a name this build does not know
      for (int c = 0; c <= static_cast<int>(StatusCode::kPermissionDenied); ++c)
        if (m->error().code() == StatusCodeName(static_cast<StatusCode>(c))) code = static_cast<StatusCode>(c);
      return Status(code, m->error().message());
    }
  }
  return Unavailable("no answer to the reload within " + std::to_string(timeout.count()) + " ms");
}

}  // namespace flover
