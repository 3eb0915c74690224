#include "client/bench/native_backend.h"

#include <cstdio>
#include <thread>
#include <vector>

#include "client/client.h"
#include "client/request_session.h"
#include "common/protocol.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

StepCounters Counters(const proto::ClusterStatus& s) {
  StepCounters c;
  for (const auto& r : s.replicas()) {
    c.steps += r.steps();
    c.tokens_generated += r.tokens_generated();
    c.step_compute_seconds += r.step_compute_seconds();
    c.step_wait_seconds += r.step_wait_seconds();
  }
  return c;
}

class NativeBackend final : public BenchBackend {
 public:
  NativeBackend(const NativeBackendOptions& o, std::unique_ptr<Client> client)
      : options_(o), client_(std::move(client)), session_(*client_, SessionOptions(o)) {
    session_.OnEvent([this](const SessionEvent& e) { Translate(e); });
    session_.OnUnmatchedError([this](const proto::Error& e) {
      std::fprintf(stderr, "flover bench [%s]: %s: %s\n", options_.label.c_str(), e.code().c_str(),
                   e.message().c_str());
    });
  }

  Result<TargetInfo> WaitReady(double timeout_s, const std::function<bool()>& interrupted) override {
    const auto deadline = BenchClock::now() + std::chrono::duration<double>(timeout_s);
    Status last = Unavailable("no status reply");
    for (;;) {
      if (interrupted && interrupted()) return Cancelled("interrupted");
      Result<proto::ClusterStatus> status = client_->FetchStatus(1000ms);
      if (status.ok() && AllReplicasReady(*status)) {
        TargetInfo info;
        info.model = status->model().description();
        info.vocab_size = status->model().vocab_size();
        info.max_seq_len = status->model().max_seq_len();
        return info;
      }
      if (!status.ok() && IsHandshakeRefusal(status.status())) return status.status();
      last = status.ok() ? Unavailable("not every replica is ready") : status.status();
      if (BenchClock::now() > deadline)
        return Unavailable(options_.endpoint + ": the cluster is not ready after " +
                           std::to_string(static_cast<int>(timeout_s)) + " s (" + last.message() +
                           "); is it up? (flover up, flover status)");
      std::this_thread::sleep_for(200ms);
    }
  }

  Status Submit(const BackendRequest& r) override {
    SessionRequest q;
    q.id = "b" + std::to_string(session_.records().size());
    q.text = r.request->prompt_text;
    q.token_ids = r.request->prompt_ids;
    q.sampling.seed = r.seed;
    q.stop.max_tokens = r.request->output_len;
    q.stop.ignore_eos = r.ignore_eos;
    slots_.push_back(r.slot);  // by the session's index, which Submit assigns next
    Status s = session_.Submit(q);
    if (!s.ok()) slots_.pop_back();
    return s;
  }

  Status Poll(std::chrono::milliseconds max_wait, const EventSink& sink) override {
    sink_ = &sink;
    Status s = session_.Poll(max_wait);
    sink_ = nullptr;
    return s;
  }

  void CancelAll() override { (void)session_.CancelAll(); }

  std::optional<StepCounters> ReadCounters() override {
    Result<proto::ClusterStatus> status = client_->FetchStatus(5000ms);
    if (!status.ok()) return std::nullopt;
    return Counters(*status);
  }

 private:
  static RequestSessionOptions SessionOptions(const NativeBackendOptions& o) {
    RequestSessionOptions s;
    s.silence_timeout_s = o.silence_timeout_s;
    s.interrupted = o.interrupted;
    return s;
  }

  void Translate(const SessionEvent& e) {
    if (sink_ == nullptr || e.request.index >= slots_.size()) return;
    BackendEvent b;
    b.slot = slots_[e.request.index];
    b.at = e.at;
    b.prompt_tokens = e.request.prompt_tokens;
    switch (e.kind) {
      case SessionEventKind::kAccepted:
        b.kind = BackendEvent::kAccepted;
        break;
      case SessionEventKind::kTokens:
        if (e.n_tokens <= 0) return;  // a last event with text only
        b.kind = BackendEvent::kTokens;
        b.n_tokens = e.n_tokens;
        break;
      case SessionEventKind::kDone:
        b.kind = e.request.failed() ? BackendEvent::kError : BackendEvent::kDone;
        b.completion_tokens = e.request.completion_tokens;
        b.queue_s = e.request.queue_seconds;
        b.finish_reason = e.request.finish;
        if (e.request.failed()) b.error = e.request.ErrorString();
        break;
      case SessionEventKind::kError:
        b.kind = BackendEvent::kError;
        b.error = e.request.ErrorString();
        break;
    }
    (*sink_)(b);
  }

  const NativeBackendOptions options_;
  std::unique_ptr<Client> client_;
  RequestSession session_;
  std::vector<size_t> slots_;  // the driver's slot by the session's request index
  const EventSink* sink_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<BenchBackend>> ConnectNativeBackend(const NativeBackendOptions& options) {
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(options.endpoint, options.curve));
  return std::unique_ptr<BenchBackend>(std::make_unique<NativeBackend>(options, std::move(client)));
}

}  // namespace flover
