// RequestSession: requests submitted over one Client and followed to their end. It is
// the one request loop of the client side: `flover generate`, `flover bench` and the
// multi-process tests submit, stream and collect through it.
//
// Contract:
//  * Every request submitted through the session ends exactly once, with a Done (its
//    finish reason: length, stop, cancelled, ...) or an Error, and its RequestRecord
//    says which. Besides the coordinator's replies, the session itself ends requests:
//      - the connection to the coordinator closed (Client::Receive says Unavailable): a
//        coordinator that comes back knows nothing of them, so every request in flight
//        ends at once with Error{Unavailable, the Client's message};
//      - silence: no reply for `silence_timeout_s` while requests are in flight: each of
//        them is cancelled at the coordinator and ends with Error{Unavailable, "no reply
//        from the cluster for N s"}. The clock starts again with every reply (keepalives
//        are not replies) and when a request is submitted while none is in flight.
//  * Deadlines are the coordinator's: SessionRequest::deadline goes out as
//    SubmitRequest.timeout_ms, and a request not done in time ends with
//    Error{DeadlineExceeded} like any other error.
//  * Interruption (Ctrl-C): `interrupted` is polled at each Submit and before and after
//    each wait. A signal that interrupts the wait is no message (Client::Receive), so
//    the flag is seen at once. The first time it is true every request in flight is
//    cancelled (their Done says `cancelled`, with the tokens they had), and later Submit
//    calls are refused (Cancelled); the session goes on following what is in flight.
//  * Replies for requests that are not in flight (ended, or never submitted through
//    this session) are dropped, except Errors that name no request of the session (the
//    answer to an unreadable message): those go to the unmatched-error handler.
//  * Status replies (the answers to Client::RequestStatus on the same Client) go to the
//    status handler, in their order among the other replies; without one they are
//    dropped. The coordinator answers each connection in order, so a status that
//    arrives before a request's TokenEvent was built before that event.
//  * Times are the session's steady clock when it sent a request or received its reply.
//
// Thread-safety: none; a session belongs to the thread that owns its Client. The
// handlers run inside Poll on that thread and may call Submit, Cancel and CancelAll, but
// not Poll or the Wait functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "client/client.h"
#include "common/request_params.h"
#include "common/status.h"
#include "flover.pb.h"

namespace flover {

using SessionClock = std::chrono::steady_clock;

struct SessionRequest {
  std::string id;              // client_request_id; unique among the session's requests
  std::string text;            // prompt text (tokenized by the coordinator), or
  std::vector<int> token_ids;  // the prompt as token ids when `text` is empty
  SamplingParams sampling;
  StopParams stop;
  bool stream = true;          // TokenEvents as tokens are generated
  std::chrono::milliseconds deadline{0};  // at the coordinator (SubmitRequest.timeout_ms); 0: none
};

// Tokens that arrived together (one TokenEvent).
struct TokenBatch {
  SessionClock::time_point at;
  int n_tokens = 0;
};

// One request as the session saw it.
struct RequestRecord {
  std::string id;
  size_t index = 0;  // in the order of submission, from 0
  SessionClock::time_point submitted_at;
  std::optional<SessionClock::time_point> accepted_at;
  int replica = -1;                 // Accepted.replica
  int prompt_tokens = 0;            // Accepted's, then Done's
  std::vector<int> streamed;        // the TokenEvents' tokens, in order
  std::string streamed_text;        // and their text
  std::vector<TokenBatch> token_batches;  // the TokenEvents that carried tokens
  // Output tokens so far: the streamed ones, replaced by Done.tokens at the Done.
  std::vector<int> tokens;
  std::optional<SessionClock::time_point> ended_at;  // Done or Error
  std::string finish;               // "" in flight; a FinishReasonName, or "error"
  std::string text;                 // Done.text
  int completion_tokens = 0;        // Done.completion_tokens
  std::optional<double> queue_seconds;  // Done.queue_seconds (coordinator's clock)
  std::string error_code;           // an Error's StatusCode name ("Unavailable", ...)
  std::string error;                // and its message

  bool ended() const { return ended_at.has_value(); }
  bool failed() const { return finish == "error"; }
  // "Code: message" of a failed request.
  std::string ErrorString() const { return error_code + ": " + error; }
};

enum class SessionEventKind { kAccepted, kTokens, kDone, kError };

// What happened to one request; `request` is its record after the event.
struct SessionEvent {
  SessionEventKind kind;
  const RequestRecord& request;
  SessionClock::time_point at;
  // kTokens: this event's tokens and text (a last event may carry text only).
  int n_tokens = 0;
  std::string_view text;
};

struct RequestSessionOptions {
  // No reply for this many seconds while requests are in flight ends them (see above).
  double silence_timeout_s = 60;
  std::function<bool()> interrupted;  // polled; may be empty
};

class RequestSession {
 public:
  // REQUIRES: `client` outlives the session.
  explicit RequestSession(Client& client, RequestSessionOptions options = {});
  RequestSession(const RequestSession&) = delete;
  RequestSession& operator=(const RequestSession&) = delete;

  // Handlers (any may be left empty): every event of the session's requests, the Error
  // replies that name none of them, and the status replies.
  using EventHandler = std::function<void(const SessionEvent&)>;
  using ErrorHandler = std::function<void(const proto::Error&)>;
  using StatusHandler = std::function<void(const proto::ClusterStatus&)>;
  void OnEvent(EventHandler handler) { on_event_ = std::move(handler); }
  void OnUnmatchedError(ErrorHandler handler) { on_unmatched_error_ = std::move(handler); }
  void OnStatus(StatusHandler handler) { on_status_ = std::move(handler); }

  // Sends the request and follows it. InvalidArgument for an id already submitted
  // through this session, Cancelled once interrupted, the Client's error when the send
  // failed; in those cases nothing is followed.
  Status Submit(const SessionRequest& request);
  // The same for a SubmitRequest sent as it is (tests send ones with any field).
  Status Submit(const proto::SubmitRequest& request);

  // Asks the coordinator to cancel a request in flight (its Done will say `cancelled`);
  // Ok and nothing sent when it has ended. NotFound for an id never submitted here.
  Status Cancel(const std::string& id);
  // Cancel for every request in flight; the first send error, if any.
  Status CancelAll();

  // Waits up to `max_wait` for one reply and applies it (handlers run). Ok when a reply
  // came or the wait passed; otherwise what the caller may want to say:
  //   Unavailable       the connection closed; every request in flight ended with it;
  //   PermissionDenied, ResourceExhausted, FailedPrecondition
  //                     the coordinator refused the connection (IsHandshakeRefusal);
  //                     every request in flight ended with that error;
  //   DeadlineExceeded  the silence timeout; every request in flight ended Unavailable;
  //   other             an unreadable reply (lost; the session goes on).
  Status Poll(std::chrono::milliseconds max_wait);
  // Polls until `done()` holds (checked first, then after each poll), ignoring Poll's
  // statuses (the records say what happened). DeadlineExceeded, naming the requests
  // still in flight, when `limit` passes first.
  Status WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds limit);
  // WaitUntil nothing is in flight.
  Status WaitAll(std::chrono::milliseconds limit);

  // Requests submitted and not ended yet.
  size_t in_flight() const { return n_in_flight_; }
  // True once the session has seen `interrupted` (and cancelled what was in flight).
  bool interrupted() const { return interrupted_; }
  // Every request submitted, in order.
  const std::deque<RequestRecord>& records() const { return records_; }
  // nullptr for an id never submitted here.
  const RequestRecord* Find(const std::string& id) const;
  // REQUIRES: `id` was submitted here.
  const RequestRecord& record(const std::string& id) const;

 private:
  Status Follow(const std::string& id, const std::function<Status()>& send);
  bool CheckInterrupted();
  void Apply(const proto::ServerMessage& message, SessionClock::time_point at);
  // Ends every request in flight with Error{code, message}; cancels them first at the
  // coordinator when `cancel`.
  void FailInFlight(const std::string& code, const std::string& message, bool cancel);
  void End(RequestRecord& r, SessionClock::time_point at, SessionEventKind kind);
  RequestRecord* InFlight(const std::string& id);
  void Deliver(const SessionEvent& event) const;

  // Constant after construction.
  Client& client_;
  const RequestSessionOptions options_;
  const SessionClock::duration silence_timeout_;

  // Set by OnEvent, OnUnmatchedError and OnStatus.
  EventHandler on_event_;
  ErrorHandler on_unmatched_error_;
  StatusHandler on_status_;

  // What the session follows.
  std::deque<RequestRecord> records_;  // a deque: records stay put while handlers submit
  std::unordered_map<std::string, size_t> by_id_;
  size_t n_in_flight_ = 0;
  bool interrupted_ = false;
  SessionClock::time_point last_reply_;  // or the submit that started the silence clock
};

}  // namespace flover
