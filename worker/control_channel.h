// ControlChannel: the worker's DEALER connection to the coordinator's control endpoint
// (protocol.md). Sends WorkerMessages (rank 0's step results too: the coordinator takes
// them only from this registered connection), receives CoordinatorMessages, and tracks
// when the coordinator was last heard from (any message counts as a heartbeat).
//
// It is also the worker's rendezvous KvStore: Set/Get become StoreSet/StoreGet requests
// answered by the coordinator's store (Gloo keys now, the NCCL unique id later).
//
// A message larger than the connection's bound drops the connection (ZMQ_MAXMSGSIZE);
// libzmq reads the bound when a connection is made, so the one given at construction
// holds until the first reconnect, and SetMaxMessageBytes (the bound of the config the
// coordinator sent) holds from then on. A wait interrupted by a signal returns as a
// timeout (the caller looks at its stop flag).
//
// Thread-safety: none; the socket belongs to the worker's main thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/curve_socket.h"
#include "common/handshake_monitor.h"
#include "common/status.h"
#include "flover.pb.h"
#include "worker/comm/kv_store.h"

namespace flover {

class ControlChannel final : public KvStore {
 public:
  // Connects to `endpoint`, as a CURVE client with `curve` when given, with
  // `max_message_bytes` the bound of the connection made now. InvalidArgument when the
  // endpoint or the keys are refused by libzmq.
  static Result<std::unique_ptr<ControlChannel>> Connect(zmq::context_t& context, const std::string& endpoint,
                                                         const CurveClientKeys* curve, int64_t max_message_bytes);

  // The bound of the connections made from now on (reconnects).
  void SetMaxMessageBytes(int64_t max_message_bytes);

  Status Send(const proto::WorkerMessage& message);
  // A WorkerMessage serialized already (a step result from the compute thread).
  Status SendSerialized(std::string_view message);
  // The next message within `timeout`, nullopt if none. Malformed messages are errors,
  // and so is a refused handshake (HandshakeMonitor: a key the coordinator does not
  // admit, a mismatch of CURVE and plain text), reported at once.
  Result<std::optional<proto::CoordinatorMessage>> Receive(std::chrono::milliseconds timeout);

  std::chrono::steady_clock::time_point last_heard() const { return last_heard_; }
  zmq::socket_t& socket() { return socket_; }

  // KvStore.
  Status Set(const std::string& key, const std::vector<char>& value) override;
  Result<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) override;

  // A Shutdown received while waiting inside Get (rendezvous) is remembered here.
  bool shutdown_requested() const { return shutdown_requested_; }

 private:
  explicit ControlChannel(zmq::context_t& context);

  zmq::socket_t socket_;
  HandshakeMonitor monitor_;
  std::chrono::steady_clock::time_point last_heard_;
  bool shutdown_requested_ = false;
};

}  // namespace flover
