// Client: a connection to a coordinator's client endpoint (ZeroMQ DEALER), speaking
// ClientMessage / ServerMessage (common/proto/flover.proto).
//
// Requests are asynchronous: Submit/Cancel/RequestStatus send; Receive returns the next
// reply (Accepted, TokenEvent, Done, Error, ClusterStatus) or nothing at the timeout.
// Thread-safety: none; a Client belongs to one thread (its socket does).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/request_params.h"
#include "common/status.h"
#include "flover.pb.h"

namespace flover {

// True when the cluster has replicas and every one of them is ready.
bool AllReplicasReady(const proto::ClusterStatus& status);

class Client {
 public:
  static Result<std::unique_ptr<Client>> Connect(const std::string& endpoint);

  // Text prompt (tokenized by the coordinator) or token ids (when `text` is empty).
  Status Submit(const std::string& client_request_id, const std::string& text, const std::vector<int>& token_ids,
                const SamplingParams& sampling, const StopParams& stop, bool stream);
  Status Cancel(const std::string& client_request_id);
  Status RequestStatus();
  // The next message, nullopt at the timeout, or an error for an unreadable reply.
  Result<std::optional<proto::ServerMessage>> Receive(std::chrono::milliseconds timeout);

  // Sends raw bytes (tests use it to send malformed messages).
  Status SendRaw(const std::string& bytes);

  // Asks for the status and waits for it.
  Result<proto::ClusterStatus> FetchStatus(std::chrono::milliseconds timeout);

 private:
  Client() : socket_(context_, zmq::socket_type::dealer) {}
  Status Send(const proto::ClientMessage& message);

  zmq::context_t context_;
  zmq::socket_t socket_;
};

}  // namespace flover
