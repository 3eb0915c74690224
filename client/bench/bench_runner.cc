#include "client/bench/bench_runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "client/bench/bench_admission.h"

namespace flover {
namespace {

using Clock = BenchClock;
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

// Applies one backend event to the timeline of its request.
void Record(const BackendEvent& e, BenchClock::time_point t0, RequestTimeline* r) {
  const double t = std::chrono::duration<double>(e.at - t0).count();
  if (e.prompt_tokens > 0) r->prompt_tokens = e.prompt_tokens;
  switch (e.kind) {
    case BackendEvent::kAccepted:
      r->accepted_s = t;
      break;
    case BackendEvent::kTokens:
      r->tokens.push_back({t, e.n_tokens});
      break;
    case BackendEvent::kDone:
      r->done_s = t;
      r->output_tokens = e.completion_tokens;
      r->server_queue_s = e.queue_s;
      r->finish_reason = e.finish_reason;
      break;
    case BackendEvent::kError:
      r->done_s = t;
      r->error = e.error;
      r->finish_reason = "error";
      break;
  }
}

// Sends `requests` at their arrival times (at most o.max_concurrency in flight) through
// the backend and collects their timelines in *out. Failed requests are recorded, not
// returned; the Status is an error only when the run cannot go on (interrupted).
Status RunRequests(BenchBackend& backend, const std::vector<BenchRequest>& requests, const BenchRunOptions& o,
                   ProgressBar* bar, std::vector<RequestTimeline>* out) {
  const size_t n = requests.size();
  out->assign(n, RequestTimeline());
  std::vector<double> arrivals;
  for (const BenchRequest& r : requests) arrivals.push_back(r.arrival_s);
  ArrivalQueue queue(std::move(arrivals), o.max_concurrency);
  size_t n_finished = 0, n_in_flight = 0;
  int n_failed = 0;
  int64_t tokens = 0;
  const Clock::time_point t0 = Clock::now();

  auto start = [&](size_t i) {
    RequestTimeline& r = (*out)[i];
    r.index = requests[i].index;
    r.arrival_s = requests[i].arrival_s;
    r.submit_s = SecondsSince(t0);
  };
  // A request that ends without the backend (not sent).
  auto fail = [&](size_t i, const std::string& error) {
    RequestTimeline& r = (*out)[i];
    r.done_s = SecondsSince(t0);
    r.error = error;
    r.finish_reason = "error";
    ++n_failed;
    ++n_finished;
  };
  const BenchBackend::EventSink sink = [&](const BackendEvent& e) {
    if (e.slot >= n) return;
    Record(e, t0, &(*out)[e.slot]);
    if (e.kind == BackendEvent::kTokens) tokens += e.n_tokens;
    if (e.kind != BackendEvent::kDone && e.kind != BackendEvent::kError) return;
    ++n_finished;
    --n_in_flight;
    if (e.kind == BackendEvent::kError) ++n_failed;
  };

  while (n_finished < n) {
    if (o.interrupted && o.interrupted()) {
      backend.CancelAll();
      return Cancelled("interrupted");
    }
    for (size_t i : queue.TakeDue(SecondsSince(t0), n_in_flight)) {
      start(i);
      BackendRequest q;
      q.slot = i;
      q.request = &requests[i];
      q.seed = o.workload.seed + static_cast<uint64_t>(requests[i].index);
      q.ignore_eos = o.ignore_eos;
      if (Status s = backend.Submit(q); s.ok()) {
        ++n_in_flight;
      } else {
        fail(i, s.ToString());
      }
    }
    if (n_finished == n) break;
    // Wait for a reply, at most until the next arrival.
    double wait_s = 0.1;
    if (std::optional<double> next = queue.NextArrivalIn(SecondsSince(t0))) wait_s = std::min(wait_s, *next);
    const Status polled =
        backend.Poll(std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, wait_s) * 1000)), sink);
    bar->Update(static_cast<int>(n_finished), n_failed, SecondsSince(t0), tokens);
    if (polled.code() == StatusCode::kDeadlineExceeded) {
      // The target is silent: what is not sent yet fails too.
      for (size_t i : queue.TakeRest()) {
        start(i);
        fail(i, "Unavailable: " + polled.message());
      }
    } else if (!polled.ok()) {
      // A closed connection (its requests ended with errors), or an unreadable reply.
      std::fprintf(stderr, "flover bench [%s]: %s\n", o.label.c_str(), polled.ToString().c_str());
    }
  }
  bar->Finish(static_cast<int>(n_finished), n_failed, SecondsSince(t0), tokens);
  return Status::Ok();
}

Status Run(BenchBackend& backend, const BenchRunOptions& o, BenchRun* run) {
  FLOVER_ASSIGN_OR_RETURN(TargetInfo target, backend.WaitReady(o.ready_timeout_s, o.interrupted));
  run->model = target.model;
  if (target.vocab_size > 0) run->workload.vocab_size = target.vocab_size;  // else --vocab-size's
  const WorkloadSpec& w = run->workload;
  if (w.prompt_text.empty() && w.vocab_size == 0)
    return InvalidArgument("the server does not say its vocabulary size, which bounds the random prompt token ids: "
                           "give --vocab-size V (or --prompt TEXT)");
  const int context = target.max_seq_len;
  if (w.prompt_text.empty() && context > 0 && w.prompt_max + w.output_max > context)
    return InvalidArgument("--prompt-len " + std::to_string(w.prompt_max) + " + --output-len " +
                           std::to_string(w.output_max) + " tokens do not fit the model's context of " +
                           std::to_string(context) + " tokens");
  FLOVER_ASSIGN_OR_RETURN(std::vector<BenchRequest> requests, GenerateWorkload(w));

  // One request of the first shape, alone: once to warm the target up (first-step
  // allocations, caches), once measured.
  BenchRequest single = requests.front();
  single.arrival_s = 0;
  std::vector<RequestTimeline> single_timeline;
  ProgressBar quiet("", 1, false);
  for (int pass = 0; pass < 2; ++pass) {
    FLOVER_RETURN_IF_ERROR(RunRequests(backend, {single}, o, &quiet, &single_timeline));
    if (!single_timeline.front().completed())
      return Unavailable("the single request failed: " + single_timeline.front().error);
  }
  run->single = single_timeline.front();

  const std::optional<StepCounters> before = backend.ReadCounters();
  ProgressBar bar(o.label, static_cast<int>(requests.size()), o.progress);
  FLOVER_RETURN_IF_ERROR(RunRequests(backend, requests, o, &bar, &run->requests));
  const std::optional<StepCounters> after = backend.ReadCounters();
  run->has_step_counters = before.has_value() && after.has_value();
  if (run->has_step_counters) {
    run->steps_before = *before;
    run->steps_after = *after;
  }
  run->metrics = ComputeMetrics(run->requests, *run->single.done_s - run->single.submit_s, run->steps_before,
                                run->steps_after, o.slo);
  return Status::Ok();
}

}  // namespace

BenchRun FailedRun(const BenchRunOptions& options, const std::string& error) {
  BenchRun run;
  run.policy = options.label;
  run.api = options.api;
  run.workload = options.workload;
  run.ignore_eos = options.ignore_eos;
  run.max_concurrency = options.max_concurrency;
  run.slo = options.slo;
  run.error = error;
  return run;
}

BenchRun RunBenchmark(BenchBackend& backend, const BenchRunOptions& options) {
  BenchRun run = FailedRun(options, "");
  if (Status s = Run(backend, options, &run); !s.ok()) run.error = s.ToString();
  return run;
}

}  // namespace flover
