#include "coordinator/metrics.h"

#include <algorithm>
#include <tuple>

#include <fmt/format.h>

#include "common/check.h"
#include "coordinator/prometheus_text.h"

namespace flover {
namespace {

// request_success_total's finished_reason values (vLLM's), by index.
constexpr std::array<std::string_view, 4> kReasonNames = {"stop", "length", "abort", "error"};
constexpr size_t kErrorReason = 3;

size_t ReasonIndex(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return 0;
    case FinishReason::kLength: return 1;
    case FinishReason::kCancelled: return 2;
    case FinishReason::kNone:
    case FinishReason::kError: break;
  }
  return kErrorReason;
}

size_t CodeIndex(StatusCode code) { return static_cast<size_t>(code); }

}  // namespace

HistogramCounts::HistogramCounts(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {
  FLOVER_CHECK(std::is_sorted(bounds.begin(), bounds.end())) << "histogram bounds must ascend";
}

void HistogramCounts::Observe(double value) {
  // The first bucket whose bound is >= value (Prometheus' `le`).
  const size_t i = std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  ++counts[i];
  sum += value;
}

const std::vector<double>& Metrics::FirstTokenBuckets() {
  static const std::vector<double> b = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,  0.75,
                                        1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160., 640., 2560.};
  return b;
}

const std::vector<double>& Metrics::PerTokenBuckets() {
  static const std::vector<double> b = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                                        0.4,    0.5,   0.75,   1.0,   2.5,  5.0,   7.5,  10.,   20., 40.,  80.};
  return b;
}

const std::vector<double>& Metrics::LatencyBuckets() {
  static const std::vector<double> b = {0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8,  1.0,  1.5,  2.0,  2.5,   5.0,  10.,
                                        15.,  20.,   30.,  40., 50., 60., 120., 240., 480., 960., 1920., 7680.};
  return b;
}

const std::vector<double>& Metrics::RequestsPerStepBuckets() {
  static const std::vector<double> b = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  return b;
}

Metrics::State::State()
    : first_token(FirstTokenBuckets()),
      per_token(PerTokenBuckets()),
      e2e(LatencyBuckets()),
      queue(LatencyBuckets()),
      requests_per_step(RequestsPerStepBuckets()) {}

Metrics::Metrics() = default;

// ---------------------------------------------------------------- writers

void Metrics::Publish(const Gauges& gauges) {
  bool changed;
  {
    std::lock_guard lock(mu_);
    changed = !state_.published || !SameHealth(state_.gauges, gauges);
    state_.published = true;
    state_.gauges = gauges;  // no allocation once the number of replicas is known
  }
  if (changed) health_version_.fetch_add(1, std::memory_order_acq_rel);
}

void Metrics::RequestDone(const DoneRequest& done) {
  std::lock_guard lock(mu_);
  ++state_.finished[ReasonIndex(done.reason)];
  if (done.first_token_s) state_.first_token.Observe(*done.first_token_s);
  if (done.per_token_s) state_.per_token.Observe(*done.per_token_s);
  state_.e2e.Observe(done.total_s);
}

void Metrics::RequestFailed(StatusCode code) {
  std::lock_guard lock(mu_);
  ++state_.finished[kErrorReason];
  ++state_.failed[std::min(CodeIndex(code), kNumCodes - 1)];
}

void Metrics::RequestRefused(StatusCode code) {
  std::lock_guard lock(mu_);
  ++state_.refused[std::min(CodeIndex(code), kNumCodes - 1)];
}

void Metrics::RequestStarted(int prompt_tokens, double queue_s) {
  std::lock_guard lock(mu_);
  state_.prompt_tokens += static_cast<uint64_t>(std::max(prompt_tokens, 0));
  state_.queue.Observe(queue_s);
}

void Metrics::StepPlanned(int n_requests, int n_preempted) {
  std::lock_guard lock(mu_);
  state_.requests_per_step.Observe(n_requests);
  state_.preemptions += static_cast<uint64_t>(std::max(n_preempted, 0));
}

// ---------------------------------------------------------------- readers

bool Metrics::SameHealth(const Gauges& a, const Gauges& b) {
  if (a.draining != b.draining || a.replicas.size() != b.replicas.size()) return false;
  for (size_t i = 0; i < a.replicas.size(); ++i) {
    const ReplicaGauges &x = a.replicas[i], &y = b.replicas[i];
    if (x.state != y.state || x.workers_registered != y.workers_registered || x.workers_ready != y.workers_ready ||
        x.workers_total != y.workers_total)
      return false;
  }
  return true;
}

std::pair<bool, std::string> Metrics::HealthOf(const State& s) {
  if (!s.published) return {false, "the coordinator is starting"};
  const Gauges& g = s.gauges;
  if (g.draining) return {false, "the coordinator is shutting down"};
  const auto n_ready =
      std::count_if(g.replicas.begin(), g.replicas.end(), [](const ReplicaGauges& r) { return r.state == "ready"; });
  if (n_ready > 0) return {true, fmt::format("{} of {} replica(s) ready", n_ready, g.replicas.size())};
  std::string why = "no replica is ready";
  for (size_t i = 0; i < g.replicas.size(); ++i) {
    const ReplicaGauges& r = g.replicas[i];
    why += fmt::format("{} replica {} {}", i == 0 ? ":" : ";", i, r.state);
    if (r.state == "starting")
      why += fmt::format(" ({} of {} workers registered, {} ready)", r.workers_registered, r.workers_total,
                         r.workers_ready);
  }
  return {false, why};
}

std::pair<bool, std::string> Metrics::Health() const {
  std::lock_guard lock(mu_);
  return HealthOf(state_);
}

std::string Metrics::RenderPrometheus() const {
  State s;
  {
    std::lock_guard lock(mu_);
    s = state_;
  }
  PrometheusText out;
  const Gauges& g = s.gauges;
  std::vector<std::string> replica_names;
  for (size_t i = 0; i < g.replicas.size(); ++i) replica_names.push_back(std::to_string(i));

  out.Family("flover:request_success_total", "counter",
             "Requests that finished, by finished_reason: stop (a stop token, EOS or a stop string), length "
             "(max_tokens or the context), abort (cancelled, or its client left), error (an error after admission)");
  for (size_t r = 0; r < kReasonNames.size(); ++r)
    out.Sample("flover:request_success_total", {{"finished_reason", kReasonNames[r]}}, s.finished[r]);
  out.Family("flover:requests_failed_total", "counter",
             "Requests that ended with an error after admission, by status code");
  for (size_t c = 1; c < kNumCodes; ++c)
    if (s.failed[c] > 0)
      out.Sample("flover:requests_failed_total", {{"code", StatusCodeName(static_cast<StatusCode>(c))}}, s.failed[c]);
  out.Family("flover:requests_rejected_total", "counter",
             "Submissions refused at once (invalid, over a limit, no healthy replica, shutting down), by status code");
  for (size_t c = 1; c < kNumCodes; ++c)
    if (s.refused[c] > 0)
      out.Sample("flover:requests_rejected_total", {{"reason", StatusCodeName(static_cast<StatusCode>(c))}},
                 s.refused[c]);
  out.Family("flover:requests_moved_total", "counter",
             "Requests moved on from a failed replica to another (failovers)");
  out.Sample("flover:requests_moved_total", {}, g.moved);

  int running = 0, waiting = g.queued;
  uint64_t generated = 0;
  for (const ReplicaGauges& r : g.replicas) {
    running += r.running;
    waiting += r.waiting;
    generated += r.tokens_generated;
  }
  out.Family("flover:num_requests_running", "gauge", "Requests in the running batches of the replicas");
  out.Sample("flover:num_requests_running", {}, running);
  out.Family("flover:num_requests_waiting", "gauge",
             "Requests waiting to run: queued for a ready replica, or waiting in a replica's scheduler");
  out.Sample("flover:num_requests_waiting", {}, waiting);
  out.Family("flover:num_preemptions_total", "counter",
             "Running requests preempted (their KV blocks freed, to be recomputed) when the KV cache ran out");
  out.Sample("flover:num_preemptions_total", {}, s.preemptions);
  out.Family("flover:prompt_tokens_total", "counter", "Prompt tokens of the requests that started running");
  out.Sample("flover:prompt_tokens_total", {}, s.prompt_tokens);
  out.Family("flover:generation_tokens_total", "counter", "Tokens generated by the replicas' steps");
  out.Sample("flover:generation_tokens_total", {}, generated);

  using Field = int ReplicaGauges::*;
  const std::tuple<const char*, const char*, Field> per_replica[] = {
      {"flover:kv_blocks_used", "KV cache blocks in use, per replica", &ReplicaGauges::kv_blocks_used},
      {"flover:kv_blocks_total", "KV cache blocks of the replica's pool (0 while it is not ready)",
       &ReplicaGauges::kv_blocks_total}};
  for (const auto& [name, help, field] : per_replica) {
    out.Family(name, "gauge", help);
    for (size_t i = 0; i < g.replicas.size(); ++i)
      out.Sample(name, {{"replica", replica_names[i]}}, g.replicas[i].*field);
  }
  out.Family("flover:kv_cache_usage_perc", "gauge",
             "Fraction of the replica's KV cache blocks in use, 0 to 1 (0 while it is not ready)");
  for (size_t i = 0; i < g.replicas.size(); ++i) {
    const ReplicaGauges& r = g.replicas[i];
    out.Sample("flover:kv_cache_usage_perc", {{"replica", replica_names[i]}},
               r.kv_blocks_total > 0 ? static_cast<double>(r.kv_blocks_used) / r.kv_blocks_total : 0.0);
  }
  out.Family("flover:replica_ready", "gauge", "1 while the replica is ready to serve, else 0");
  for (size_t i = 0; i < g.replicas.size(); ++i)
    out.Sample("flover:replica_ready", {{"replica", replica_names[i]}}, g.replicas[i].state == "ready" ? 1 : 0);
  out.Family("flover:steps_total", "counter", "Steps completed (step results applied), per replica");
  for (size_t i = 0; i < g.replicas.size(); ++i)
    out.Sample("flover:steps_total", {{"replica", replica_names[i]}}, static_cast<double>(g.replicas[i].steps));

  const std::tuple<const char*, const char*, const HistogramCounts*> histograms[] = {
      {"flover:time_to_first_token_seconds", "Time from submission to the first token, of the requests that finished",
       &s.first_token},
      {"flover:time_per_output_token_seconds",
       "Time per output token after the first ((total - first token) / (tokens - 1)), of the requests that finished "
       "with 2 tokens or more",
       &s.per_token},
      {"flover:e2e_request_latency_seconds", "Time from submission to the end, of the requests that finished", &s.e2e},
      {"flover:request_queue_time_seconds", "Time from submission to the request's first step", &s.queue},
      {"flover:requests_per_step", "Requests computed by each published step plan", &s.requests_per_step}};
  for (const auto& [name, help, h] : histograms) {
    out.Family(name, "histogram", help);
    out.Histogram(name, {}, h->bounds, h->counts, h->sum);
  }
  return out.Take();
}

}  // namespace flover
