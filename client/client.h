// Client: a connection to a coordinator's client endpoint (ZeroMQ DEALER), speaking
// ClientMessage / ServerMessage (common/proto/flover.proto).
//
// Requests are asynchronous: Submit/Cancel/RequestStatus send; Receive returns the next
// reply (Accepted, TokenEvent, Done, Error, ClusterStatus) or nothing at the timeout.
// When an established connection to the coordinator closes (it stopped or crashed),
// Receive says so at once (Unavailable) instead of letting the caller wait for replies
// that will not come: a restarted coordinator knows nothing of the requests in flight.
// The socket reconnects by itself; later requests go to the coordinator that is back.
// A reply larger than kMaxServerMessageBytes drops the connection (ZMQ_MAXMSGSIZE), as
// a closed one, so that a hostile or broken coordinator cannot make a client allocate
// without bound. FetchStatus asks again (after 200 ms, within its timeout) when the
// coordinator refuses a status request for coming too often
// (limits.status_per_client_per_second).
//
// With CURVE credentials (a cluster with `security.mode: curve`), the client proves its
// key pair and accepts only the coordinator whose public key it pins; a refused handshake
// (a key the coordinator does not admit, its client-connection limit, a wrong server key,
// CURVE on one side only) is an error from Receive at once (HandshakeMonitor).
// Connect returns at once (the socket connects in the background, and a request sent
// before the coordinator is up waits for it); WaitConnected waits until something
// answers, so that a command can say at once that nothing listens at the endpoint.
// Text in a submit (prompt, stop strings, request id) must be valid UTF-8, as proto3
// strings must: Submit refuses other text (InvalidArgument) instead of sending a message
// the coordinator cannot read.
// Thread-safety: none; a Client belongs to one thread (its socket does).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/curve_socket.h"
#include "common/handshake_monitor.h"
#include "common/request_params.h"
#include "common/status.h"
#include "flover.pb.h"

namespace flover {

// The largest ServerMessage a Client accepts: far more than a Done of the longest
// context (a token id and its text for each of 128K positions) or the status of a
// cluster of thousands of workers.
inline constexpr int64_t kMaxServerMessageBytes = int64_t{64} << 20;

// The files of a client's CURVE credentials (docs/security.md): its key pair (--key,
// $FLOVER_KEY) and the coordinator's public key (--server-key, $FLOVER_SERVER_KEY).
struct ClientKeyFiles {
  std::string key;
  std::string server_key;
};

// nullopt when neither is given (plain text); the key readers' errors; InvalidArgument
// when only one is.
Result<std::optional<CurveClientKeys>> LoadClientKeys(const ClientKeyFiles& files);

class Client;
// LoadClientKeys, then Client::Connect.
Result<std::unique_ptr<Client>> ConnectWithKeys(const std::string& endpoint, const ClientKeyFiles& files);

// True when the cluster has replicas and every one of them is ready.
bool AllReplicasReady(const proto::ClusterStatus& status);

class Client {
 public:
  static Result<std::unique_ptr<Client>> Connect(const std::string& endpoint,
                                                 const std::optional<CurveClientKeys>& curve = std::nullopt);

  // Text prompt (tokenized by the coordinator) or token ids (when `text` is empty).
  // `timeout`: 0 for none, else the request ends with Error{DeadlineExceeded} when it is
  // not done that long after the coordinator received it.
  Status Submit(const std::string& client_request_id, const std::string& text, const std::vector<int>& token_ids,
                const SamplingParams& sampling, const StopParams& stop, bool stream,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // The request as it is (tests send ones with any field). InvalidArgument, nothing
  // sent, when its text is not valid UTF-8.
  Status Submit(const proto::SubmitRequest& request);
  Status Cancel(const std::string& client_request_id);
  Status RequestStatus();
  // The next message, nullopt at the timeout, or an error: InvalidArgument/Corruption
  // for an unreadable reply, Unavailable when the connection closed since the last call,
  // HandshakeMonitor::Drain's errors for a refused handshake.
  Result<std::optional<proto::ServerMessage>> Receive(std::chrono::milliseconds timeout);

  // Waits until a handshake with the coordinator succeeded (at once if one did).
  // Unavailable "nothing answered at <endpoint> within N s..." at the timeout;
  // HandshakeMonitor::Drain's errors for a refused handshake; Cancelled when a signal
  // interrupts the wait.
  Status WaitConnected(std::chrono::milliseconds timeout);

  // Sends raw bytes (tests use it to send malformed messages).
  Status SendRaw(const std::string& bytes);

  // Asks for the status and waits for it.
  Result<proto::ClusterStatus> FetchStatus(std::chrono::milliseconds timeout);
  // Asks the coordinator to read its cluster file again (an admin's request) and waits
  // for its answer: the ReloadReply, its Error as a Status of the same code, or
  // Unavailable when none comes within `timeout`. Other messages are dropped.
  Result<proto::ReloadReply> Reload(std::chrono::milliseconds timeout);

 private:
  Client() : socket_(context_, zmq::socket_type::dealer), monitor_(context_) {}
  Status Send(const proto::ClientMessage& message);

  zmq::context_t context_;
  zmq::socket_t socket_;
  HandshakeMonitor monitor_;
  std::string endpoint_;
  bool close_pending_ = false;  // the connection closed; Receive reports it once the replies before it are read
};

}  // namespace flover
