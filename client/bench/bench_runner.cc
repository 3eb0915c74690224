#include "client/bench/bench_runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "client/client.h"
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

const std::string& RequestId(const proto::ServerMessage& m) {
  static const std::string kNone;
  if (m.has_accepted()) return m.accepted().client_request_id();
  if (m.has_token()) return m.token().client_request_id();
  if (m.has_done()) return m.done().client_request_id();
  if (m.has_error()) return m.error().client_request_id();
  return kNone;
}

// Index of "<prefix><i>", or -1.
int ParseIndex(const std::string& id, const std::string& prefix, size_t n) {
  if (id.size() <= prefix.size() || id.compare(0, prefix.size(), prefix) != 0) return -1;
  const std::string digits = id.substr(prefix.size());
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  const size_t i = std::stoul(digits);
  return i < n ? static_cast<int>(i) : -1;
}

// Submits `requests` at their arrival times (ids "<prefix><index>") and collects their
// timelines in *out. Failed requests are recorded, not returned; the Status is an error
// only when the run cannot go on (interrupted).
Status RunRequests(Client& client, const std::vector<BenchRequest>& requests, const std::string& prefix,
                   const BenchRunOptions& o, ProgressBar* bar, std::vector<RequestTimeline>* out) {
  const size_t n = requests.size();
  out->assign(n, RequestTimeline());
  std::vector<bool> submitted(n, false), finished(n, false);
  size_t n_submitted = 0, n_finished = 0;
  int n_failed = 0;
  int64_t tokens = 0;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point last_reply = t0;

  auto finish = [&](size_t i, double t, const std::string& error) {
    RequestTimeline& r = (*out)[i];
    r.done_s = t;
    if (!error.empty()) {
      r.error = error;
      r.finish_reason = "error";
      ++n_failed;
    }
    finished[i] = true;
    ++n_finished;
  };

  while (n_finished < n) {
    if (o.interrupted && o.interrupted()) {
      for (size_t i = 0; i < n; ++i)
        if (submitted[i] && !finished[i]) (void)client.Cancel(prefix + std::to_string(i));
      return Cancelled("interrupted");
    }
    // Submit every request whose time has come.
    while (n_submitted < n && requests[n_submitted].arrival_s <= SecondsSince(t0)) {
      const size_t i = n_submitted++;
      const BenchRequest& req = requests[i];
      RequestTimeline& r = (*out)[i];
      r.index = req.index;
      r.arrival_s = req.arrival_s;
      SamplingParams sampling;
      sampling.seed = o.workload.seed + static_cast<uint64_t>(req.index);
      StopParams stop;
      stop.max_tokens = req.output_len;
      stop.ignore_eos = o.ignore_eos;
      r.submit_s = SecondsSince(t0);
      Status s = client.Submit(prefix + std::to_string(i), req.prompt_text, req.prompt_ids, sampling, stop,
                               /*stream=*/true);
      submitted[i] = true;
      if (s.ok() && n_submitted - n_finished == 1) last_reply = Clock::now();  // silence counts from here
      if (!s.ok()) finish(i, SecondsSince(t0), s.ToString());
    }
    // Wait for a reply, at most until the next arrival.
    double wait_s = 0.1;
    if (n_submitted < n) wait_s = std::min(wait_s, requests[n_submitted].arrival_s - SecondsSince(t0));
    const auto wait = std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, wait_s) * 1000));
    Result<std::optional<proto::ServerMessage>> reply = client.Receive(wait);
    const double now_s = SecondsSince(t0);
    bar->Update(static_cast<int>(n_finished), n_failed, now_s, tokens);
    if (!reply.ok()) {  // a signal is not an error (Receive gives no message): see the loop's top
      std::fprintf(stderr, "flover bench [%s]: %s\n", o.label.c_str(), reply.status().ToString().c_str());
      // The connection closed: the requests in flight are lost; later ones go to the
      // coordinator once it is back (or time out).
      if (reply.status().code() == StatusCode::kUnavailable)
        for (size_t i = 0; i < n; ++i)
          if (submitted[i] && !finished[i]) finish(i, now_s, reply.status().ToString());
      continue;
    }
    if (!*reply) {
      const bool in_flight = n_submitted > n_finished;
      const double silent = std::chrono::duration<double>(Clock::now() - last_reply).count();
      if (in_flight && silent > o.silence_timeout_s) {
        const std::string error = "Unavailable: no reply from the cluster for " +
                                  std::to_string(static_cast<int>(o.silence_timeout_s)) + " s";
        for (size_t i = 0; i < n; ++i) {
          if (finished[i]) continue;
          if (submitted[i]) (void)client.Cancel(prefix + std::to_string(i));
          if (!submitted[i]) (*out)[i].submit_s = now_s;
          finish(i, now_s, error);
        }
      }
      continue;
    }
    last_reply = Clock::now();
    const proto::ServerMessage& m = **reply;
    if (m.has_status()) continue;  // a late answer to an earlier status request
    const int index = ParseIndex(RequestId(m), prefix, n);
    if (index < 0) {
      if (m.has_error())
        std::fprintf(stderr, "flover bench [%s]: %s: %s\n", o.label.c_str(), m.error().code().c_str(),
                     m.error().message().c_str());
      continue;
    }
    const size_t i = static_cast<size_t>(index);
    if (finished[i]) continue;
    RequestTimeline& r = (*out)[i];
    if (m.has_accepted()) {
      r.accepted_s = now_s;
      r.prompt_tokens = m.accepted().prompt_tokens();
    } else if (m.has_token()) {
      // A last event may carry only held-back text (no token): not an arrival.
      if (m.token().tokens_size() > 0) r.tokens.push_back({now_s, m.token().tokens_size()});
      tokens += m.token().tokens_size();
    } else if (m.has_done()) {
      const proto::Done& d = m.done();
      r.prompt_tokens = d.prompt_tokens();
      r.output_tokens = d.completion_tokens();
      r.server_queue_s = d.queue_seconds();
      r.finish_reason = FinishReasonName(FromProto(d.finish_reason()));
      finish(i, now_s, "");
    } else if (m.has_error()) {
      finish(i, now_s, m.error().code() + ": " + m.error().message());
    }
  }
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
    last = status.ok() ? Unavailable("not every replica is ready") : status.status();
    if (Clock::now() > deadline)
      return Unavailable(endpoint + ": the cluster is not ready after " +
                         std::to_string(static_cast<int>(timeout_s)) + " s (" + last.message() +
                         "); is it up? (flover up, flover status)");
    std::this_thread::sleep_for(200ms);
  }
}

Status Run(const std::string& endpoint, const BenchRunOptions& o, BenchRun* run) {
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(endpoint));
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
