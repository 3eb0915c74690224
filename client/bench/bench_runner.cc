#include "client/bench/bench_runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "client/client.h"
#include "client/request_session.h"
#include "common/protocol.h"

namespace flover {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double SecondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// "[#######.............]  7/16 done  1.2 s  345 tok/s" on stderr: redrawn in place on
// a terminal (at most 10 times a second), one line every 2 s otherwise.
class ProgressBar {
 public:
  ProgressBar(std::string label, int total, bool enabled)
      : label_(std::move(label)), total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1),
        last_draw_(tty_ ? Clock::time_point() : Clock::now()) {}

  void Update(int finished, int failed, double elapsed_s, int64_t tokens) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (now - last_draw_ < (tty_ ? 100ms : 2000ms)) return;
    last_draw_ = now;
    Draw(finished, failed, elapsed_s, tokens, /*last=*/false);
  }

  void Finish(int finished, int failed, double elapsed_s, int64_t tokens) {
    if (enabled_) Draw(finished, failed, elapsed_s, tokens, /*last=*/true);
  }

 private:
  void Draw(int finished, int failed, double elapsed_s, int64_t tokens, bool last) {
    constexpr int kWidth = 24;
    const int filled = total_ > 0 ? finished * kWidth / total_ : kWidth;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    const std::string failures = failed > 0 ? " (" + std::to_string(failed) + " failed)" : "";
    std::fprintf(stderr, "%sflover bench [%s] [%s] %d/%d done%s  %.1f s  %.0f tok/s%s", tty_ ? "\r" : "",
                 label_.c_str(), bar.c_str(), finished, total_, failures.c_str(), elapsed_s,
                 elapsed_s > 0 ? static_cast<double>(tokens) / elapsed_s : 0.0, tty_ ? "\033[K" : "");
    if (last || !tty_) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

  std::string label_;
  int total_;
  bool enabled_;
  bool tty_;
  Clock::time_point last_draw_;
};

StepCounters Counters(const proto::ClusterStatus& s) {
  StepCounters c;
  for (const auto& r : s.replicas()) {
    c.steps += r.steps();
    c.tokens_generated += r.tokens_generated();
    c.step_compute_seconds += r.step_compute_seconds();
  }
  return c;
}

// What the session saw of one request, in seconds since `t0`, into its timeline.
void RecordTimeline(const RequestRecord& r, Clock::time_point t0, RequestTimeline* out) {
  auto seconds = [t0](Clock::time_point t) { return std::chrono::duration<double>(t - t0).count(); };
  out->submit_s = seconds(r.submitted_at);
  if (r.accepted_at) out->accepted_s = seconds(*r.accepted_at);
  out->tokens.clear();
  for (const TokenBatch& b : r.token_batches) out->tokens.push_back({seconds(b.at), b.n_tokens});
  if (r.ended_at) out->done_s = seconds(*r.ended_at);
  out->prompt_tokens = r.prompt_tokens;
  if (!r.ended()) return;
  if (r.failed()) {
    out->error = r.ErrorString();
    out->finish_reason = "error";
  } else {
    out->output_tokens = r.completion_tokens;
    out->server_queue_s = r.queue_seconds;
    out->finish_reason = r.finish;
  }
}

// Submits `requests` at their arrival times (ids "<prefix><index>") over one session and
// collects their timelines in *out. Failed requests are recorded, not returned; the
// Status is an error only when the run cannot go on (interrupted).
Status RunRequests(Client& client, const std::vector<BenchRequest>& requests, const std::string& prefix,
                   const BenchRunOptions& o, ProgressBar* bar, std::vector<RequestTimeline>* out) {
  const size_t n = requests.size();
  out->assign(n, RequestTimeline());
  RequestSessionOptions session_options;
  session_options.silence_timeout_s = o.silence_timeout_s;
  session_options.interrupted = o.interrupted;
  RequestSession session(client, session_options);
  std::vector<size_t> timeline_of;  // by the session's index
  size_t n_submitted = 0, n_finished = 0;
  int n_failed = 0;
  int64_t tokens = 0;
  const Clock::time_point t0 = Clock::now();

  // Requests that end before the session follows them (a failed send, or not sent).
  auto fail = [&](size_t i, const std::string& error) {
    RequestTimeline& r = (*out)[i];
    r.done_s = SecondsSince(t0);
    r.error = error;
    r.finish_reason = "error";
    ++n_failed;
    ++n_finished;
  };
  session.OnEvent([&](const SessionEvent& e) {
    if (e.kind == SessionEventKind::kTokens) tokens += e.n_tokens;
    if (e.kind != SessionEventKind::kDone && e.kind != SessionEventKind::kError) return;
    ++n_finished;
    if (e.request.failed()) ++n_failed;
  });
  session.OnUnmatchedError([&](const proto::Error& e) {
    std::fprintf(stderr, "flover bench [%s]: %s: %s\n", o.label.c_str(), e.code().c_str(), e.message().c_str());
  });

  while (n_finished < n) {
    if (session.interrupted()) return Cancelled("interrupted");  // the session cancelled what is in flight
    // Submit every request whose time has come.
    while (n_submitted < n && requests[n_submitted].arrival_s <= SecondsSince(t0)) {
      const size_t i = n_submitted++;
      const BenchRequest& req = requests[i];
      RequestTimeline& r = (*out)[i];
      r.index = req.index;
      r.arrival_s = req.arrival_s;
      SessionRequest q;
      q.id = prefix + std::to_string(i);
      q.text = req.prompt_text;
      q.token_ids = req.prompt_ids;
      q.sampling.seed = o.workload.seed + static_cast<uint64_t>(req.index);
      q.stop.max_tokens = req.output_len;
      q.stop.ignore_eos = o.ignore_eos;
      r.submit_s = SecondsSince(t0);
      if (Status s = session.Submit(q); s.ok()) {
        timeline_of.push_back(i);
      } else {
        fail(i, s.ToString());
      }
    }
    // Wait for a reply, at most until the next arrival.
    double wait_s = 0.1;
    if (n_submitted < n) wait_s = std::min(wait_s, requests[n_submitted].arrival_s - SecondsSince(t0));
    const Status polled =
        session.Poll(std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, wait_s) * 1000)));
    bar->Update(static_cast<int>(n_finished), n_failed, SecondsSince(t0), tokens);
    if (polled.code() == StatusCode::kDeadlineExceeded) {
      // The cluster is silent: what is not sent yet fails too.
      for (size_t i = n_submitted; i < n; ++i) {
        (*out)[i].index = requests[i].index;
        (*out)[i].arrival_s = requests[i].arrival_s;
        (*out)[i].submit_s = SecondsSince(t0);
        fail(i, "Unavailable: " + polled.message());
      }
      n_submitted = n;
    } else if (!polled.ok()) {
      // The connection closed (the requests in flight are lost; later ones go to the
      // coordinator once it is back, or time out), or an unreadable reply.
      std::fprintf(stderr, "flover bench [%s]: %s\n", o.label.c_str(), polled.ToString().c_str());
    }
  }
  for (const RequestRecord& r : session.records()) RecordTimeline(r, t0, &(*out)[timeline_of[r.index]]);
  bar->Finish(static_cast<int>(n_finished), n_failed, SecondsSince(t0), tokens);
  return Status::Ok();
}

Result<proto::ClusterStatus> WaitReady(Client& client, const std::string& endpoint, double timeout_s,
                                       const std::function<bool()>& interrupted) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  Status last = Unavailable("no status reply");
  for (;;) {
    if (interrupted && interrupted()) return Cancelled("interrupted");
    Result<proto::ClusterStatus> status = client.FetchStatus(1000ms);
    if (status.ok() && AllReplicasReady(*status)) return status;
    if (!status.ok() && IsHandshakeRefusal(status.status())) return status.status();
    last = status.ok() ? Unavailable("not every replica is ready") : status.status();
    if (Clock::now() > deadline)
      return Unavailable(endpoint + ": the cluster is not ready after " +
                         std::to_string(static_cast<int>(timeout_s)) + " s (" + last.message() +
                         "); is it up? (flover up, flover status)");
    std::this_thread::sleep_for(200ms);
  }
}

Status Run(const std::string& endpoint, const BenchRunOptions& o, BenchRun* run) {
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(endpoint, o.curve));
  FLOVER_ASSIGN_OR_RETURN(proto::ClusterStatus status, WaitReady(*client, endpoint, o.ready_timeout_s, o.interrupted));
  run->model = status.model().description();
  run->workload.vocab_size = status.model().vocab_size();
  const WorkloadSpec& w = run->workload;
  const int context = status.model().max_seq_len();
  if (w.prompt_text.empty() && context > 0 && w.prompt_len + w.output_max > context)
    return InvalidArgument("--prompt-len " + std::to_string(w.prompt_len) + " + --output-len " +
                           std::to_string(w.output_max) + " tokens do not fit the model's context of " +
                           std::to_string(context) + " tokens");
  FLOVER_ASSIGN_OR_RETURN(std::vector<BenchRequest> requests, GenerateWorkload(w));

  // One request of the first shape, alone: once to warm the cluster up (first-step
  // allocations, caches), once measured.
  BenchRequest single = requests.front();
  single.arrival_s = 0;
  std::vector<RequestTimeline> single_timeline;
  ProgressBar quiet("", 1, false);
  for (const char* prefix : {"warmup", "single"}) {
    FLOVER_RETURN_IF_ERROR(RunRequests(*client, {single}, prefix, o, &quiet, &single_timeline));
    if (!single_timeline.front().completed())
      return Unavailable("the single request failed: " + single_timeline.front().error);
  }
  run->single = single_timeline.front();

  FLOVER_ASSIGN_OR_RETURN(proto::ClusterStatus before, client->FetchStatus(5000ms));
  ProgressBar bar(o.label, static_cast<int>(requests.size()), o.progress);
  FLOVER_RETURN_IF_ERROR(RunRequests(*client, requests, "w", o, &bar, &run->requests));
  FLOVER_ASSIGN_OR_RETURN(proto::ClusterStatus after, client->FetchStatus(5000ms));
  run->steps_before = Counters(before);
  run->steps_after = Counters(after);
  run->metrics = ComputeMetrics(run->requests, *run->single.done_s - run->single.submit_s, run->steps_before,
                                run->steps_after);
  return Status::Ok();
}

}  // namespace

BenchRun RunBenchmark(const std::string& endpoint, const BenchRunOptions& options) {
  BenchRun run;
  run.policy = options.label;
  run.workload = options.workload;
  run.ignore_eos = options.ignore_eos;
  if (Status s = Run(endpoint, options, &run); !s.ok()) run.error = s.ToString();
  return run;
}

}  // namespace flover
