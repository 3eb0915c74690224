#include "client/request_session.h"

#include <algorithm>

#include "common/check.h"
#include "common/protocol.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

// The longest single wait of WaitUntil: `interrupted` and the condition are looked at
// at least this often.
constexpr std::chrono::milliseconds kWaitSlice = 200ms;
// In-flight ids named by WaitUntil's error.
constexpr size_t kIdsNamed = 10;
// Longer silence timeouts are this one (a steady_clock time point must not overflow).
constexpr double kMaxSilenceTimeoutS = 1e8;

SessionClock::duration SilenceTimeout(double seconds) {
  const double s = seconds > 0 ? std::min(seconds, kMaxSilenceTimeoutS) : 0.0;  // NaN: 0
  return std::chrono::duration_cast<SessionClock::duration>(std::chrono::duration<double>(s));
}

const std::string* RequestId(const proto::ServerMessage& m) {
  if (m.has_accepted()) return &m.accepted().client_request_id();
  if (m.has_token()) return &m.token().client_request_id();
  if (m.has_done()) return &m.done().client_request_id();
  if (m.has_error()) return &m.error().client_request_id();
  return nullptr;
}

}  // namespace

RequestSession::RequestSession(Client& client, RequestSessionOptions options)
    : client_(client),
      options_(std::move(options)),
      silence_timeout_(SilenceTimeout(options_.silence_timeout_s)) {}

Status RequestSession::Follow(const std::string& id, const std::function<Status()>& send) {
  if (by_id_.count(id)) return InvalidArgument("request id '" + id + "' was already submitted in this session");
  if (CheckInterrupted()) return Cancelled("interrupted");
  const SessionClock::time_point now = SessionClock::now();
  FLOVER_RETURN_IF_ERROR(send());
  if (n_in_flight_ == 0) last_reply_ = now;  // silence counts from here
  RequestRecord& r = records_.emplace_back();
  r.id = id;
  r.index = records_.size() - 1;
  r.submitted_at = now;
  by_id_[id] = r.index;
  ++n_in_flight_;
  return Status::Ok();
}

Status RequestSession::Submit(const SessionRequest& q) {
  return Follow(q.id, [&] {
    return client_.Submit(q.id, q.text, q.token_ids, q.sampling, q.stop, q.stream, q.deadline);
  });
}

Status RequestSession::Submit(const proto::SubmitRequest& request) {
  return Follow(request.client_request_id(), [&] { return client_.Submit(request); });
}

Status RequestSession::Cancel(const std::string& id) {
  const RequestRecord* r = Find(id);
  if (!r) return NotFound("no request '" + id + "' in this session");
  return r->ended() ? Status::Ok() : client_.Cancel(id);
}

Status RequestSession::CancelAll() {
  Status first;
  for (const RequestRecord& r : records_) {
    if (r.ended()) continue;
    if (Status s = client_.Cancel(r.id); !s.ok() && first.ok()) first = s;
  }
  return first;
}

bool RequestSession::CheckInterrupted() {
  if (!interrupted_ && options_.interrupted && options_.interrupted()) {
    interrupted_ = true;
    (void)CancelAll();  // a send that fails leaves the request to the silence timeout
  }
  return interrupted_;
}

Status RequestSession::Poll(std::chrono::milliseconds max_wait) {
  CheckInterrupted();
  std::chrono::milliseconds wait = std::max(max_wait, 0ms);
  const SessionClock::time_point silent_at = last_reply_ + silence_timeout_;
  if (n_in_flight_ > 0)
    wait = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(silent_at - SessionClock::now()), 0ms, wait);
  Result<std::optional<proto::ServerMessage>> reply = client_.Receive(wait);
  const SessionClock::time_point now = SessionClock::now();
  CheckInterrupted();
  if (!reply.ok()) {
    // A closed connection or a refused handshake: no reply will come.
    if (reply.status().code() == StatusCode::kUnavailable || IsHandshakeRefusal(reply.status()))
      FailInFlight(StatusCodeName(reply.status().code()), reply.status().message(), /*cancel=*/false);
    return reply.status();
  }
  if (!*reply) {
    if (n_in_flight_ == 0 || now < silent_at) return Status::Ok();
    const std::string message = "no reply from the cluster for " +
                                std::to_string(static_cast<int>(options_.silence_timeout_s)) + " s";
    FailInFlight(StatusCodeName(StatusCode::kUnavailable), message, /*cancel=*/true);
    return DeadlineExceeded(message);
  }
  last_reply_ = now;
  Apply(**reply, now);
  return Status::Ok();
}

Status RequestSession::WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const SessionClock::time_point deadline = SessionClock::now() + limit;
  while (!done()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SessionClock::now());
    if (left <= 0ms) {
      std::string open;
      size_t n_named = 0;
      for (const RequestRecord& r : records_) {
        if (r.ended()) continue;
        if (n_named++ == kIdsNamed) {
          open += ", ...";
          break;
        }
        open += (open.empty() ? "" : ", ") + r.id;
      }
      return DeadlineExceeded("not done within " + std::to_string(limit.count()) + " ms; " +
                              std::to_string(n_in_flight_) + " request(s) in flight" +
                              (open.empty() ? "" : ": " + open));
    }
    (void)Poll(std::min(left, kWaitSlice));
  }
  return Status::Ok();
}

Status RequestSession::WaitAll(std::chrono::milliseconds limit) {
  return WaitUntil([this] { return n_in_flight_ == 0; }, limit);
}

const RequestRecord* RequestSession::Find(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &records_[it->second];
}

const RequestRecord& RequestSession::record(const std::string& id) const {
  const RequestRecord* r = Find(id);
  FLOVER_CHECK(r != nullptr) << "request '" << id << "' was not submitted in this session";
  return *r;
}

RequestRecord* RequestSession::InFlight(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end() || records_[it->second].ended()) return nullptr;
  return &records_[it->second];
}

void RequestSession::Deliver(const SessionEvent& event) const {
  if (on_event_) on_event_(event);
}

void RequestSession::End(RequestRecord& r, SessionClock::time_point at, SessionEventKind kind) {
  r.ended_at = at;
  --n_in_flight_;
  Deliver({kind, r, at, 0, {}});
}

void RequestSession::FailInFlight(const std::string& code, const std::string& message, bool cancel) {
  const SessionClock::time_point now = SessionClock::now();
  const size_t n = records_.size();  // not those a handler submits meanwhile
  for (size_t i = 0; i < n; ++i) {
    RequestRecord& r = records_[i];
    if (r.ended()) continue;
    if (cancel) (void)client_.Cancel(r.id);  // best effort: the request ends here anyway
    r.finish = "error";
    r.error_code = code;
    r.error = message;
    End(r, now, SessionEventKind::kError);
  }
}

void RequestSession::Apply(const proto::ServerMessage& m, SessionClock::time_point at) {
  const std::string* id = RequestId(m);
  if (!id) {
    if (m.has_status() && on_status_) on_status_(m.status());
    return;
  }
  RequestRecord* r = InFlight(*id);
  if (!r) {
    if (m.has_error() && !by_id_.count(*id) && on_unmatched_error_) on_unmatched_error_(m.error());
    return;
  }
  if (m.has_accepted()) {
    r->accepted_at = at;
    r->replica = m.accepted().replica();
    r->prompt_tokens = m.accepted().prompt_tokens();
    Deliver({SessionEventKind::kAccepted, *r, at, 0, {}});
  } else if (m.has_token()) {
    const proto::TokenEvent& t = m.token();
    r->streamed.insert(r->streamed.end(), t.tokens().begin(), t.tokens().end());
    r->tokens.insert(r->tokens.end(), t.tokens().begin(), t.tokens().end());
    r->streamed_text += t.text();
    if (t.tokens_size() > 0) r->token_batches.push_back({at, t.tokens_size()});
    Deliver({SessionEventKind::kTokens, *r, at, t.tokens_size(), t.text()});
  } else if (m.has_done()) {
    const proto::Done& d = m.done();
    r->tokens.assign(d.tokens().begin(), d.tokens().end());
    r->text = d.text();
    r->prompt_tokens = d.prompt_tokens();
    r->completion_tokens = d.completion_tokens();
    r->queue_seconds = d.queue_seconds();
    r->finish = FinishReasonName(FromProto(d.finish_reason()));
    End(*r, at, SessionEventKind::kDone);
  } else {
    r->finish = "error";
    r->error_code = m.error().code();
    r->error = m.error().message();
    End(*r, at, SessionEventKind::kError);
  }
}

}  // namespace flover
