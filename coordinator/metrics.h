// Metrics: the coordinator's Prometheus metrics and its health, for /metrics and
// /health (docs/metrics.md lists every metric). Names are in the `flover:` namespace
// and follow vLLM's where they mean the same thing (request_success_total,
// num_requests_running, time_to_first_token_seconds, ...).
//
// Written by the thread that drives the CoordinatorCore, which records events where it
// already computes them (a request done, failed or refused, a plan published) and
// publishes its gauges (replicas, workers, requests, KV blocks, steps) after every
// Tick(); read by any thread (the HTTP server's for /metrics and /health; the systemd
// notifier's, service_notifier.h, on the core's own): RenderPrometheus() and Health().
//
// Thread-safety: every method may be called from any thread. One mutex guards the
// state; a writer holds it for a few additions, a reader only to copy the state (the
// text is formatted outside it), so the core never waits for a render.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/request_params.h"
#include "common/status.h"

namespace flover {

// A histogram of fixed buckets (Prometheus' `le` bounds, ascending).
struct HistogramCounts {
  explicit HistogramCounts(std::vector<double> upper_bounds);
  void Observe(double value);

  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // [bounds.size() + 1], not cumulative; the last: above every bound
  double sum = 0;
};

class Metrics {
 public:
  // Bucket bounds, seconds (vLLM's, with finer ones below where small models on CPUs
  // answer in milliseconds) and requests.
  static const std::vector<double>& FirstTokenBuckets();
  static const std::vector<double>& PerTokenBuckets();
  static const std::vector<double>& LatencyBuckets();  // e2e and queue time
  static const std::vector<double>& RequestsPerStepBuckets();

  // What the core publishes after every Tick(): its state now.
  struct ReplicaGauges {
    std::string_view state;      // "starting", "ready", "unhealthy": static strings (Replica::StateName)
    int workers_total = 0;       // tensor_parallel
    int workers_registered = 0;  // live: registered or ready
    int workers_ready = 0;
    int running = 0;
    int waiting = 0;
    int kv_blocks_used = 0;
    int kv_blocks_total = 0;  // 0 while not ready
    uint64_t steps = 0;       // results applied, since the coordinator started
    uint64_t tokens_generated = 0;
  };
  struct Gauges {
    std::vector<ReplicaGauges> replicas;
    int queued = 0;      // waiting for a ready replica (not in any replica's scheduler)
    uint64_t moved = 0;  // requests moved on from a failed replica
    bool draining = false;
  };

  // A request that ended with a Done, its times in seconds since submission.
  struct DoneRequest {
    FinishReason reason = FinishReason::kStop;  // kStop, kLength or kCancelled
    std::optional<double> first_token_s;
    std::optional<double> per_token_s;  // (total - first token) / (tokens - 1); none below 2 tokens
    double total_s = 0;
  };

  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // ---- written by the core's thread
  void Publish(const Gauges& gauges);
  void RequestDone(const DoneRequest& done);
  // A request that ended with an Error after it was admitted (finished_reason "error").
  void RequestFailed(StatusCode code);
  // A submission refused at once (invalid, over a limit, no replica, draining).
  void RequestRefused(StatusCode code);
  // A request's first step: its prompt tokens and the time it was queued.
  void RequestStarted(int prompt_tokens, double queue_s);
  // A plan published: the requests it computes and the requests it preempted (resets).
  void StepPlanned(int n_requests, int n_preempted);

  // ---- read by any thread
  // The text exposition format 0.0.4 of every metric.
  std::string RenderPrometheus() const;
  // Ready to serve: some replica is ready and the coordinator is not shutting down.
  // The second member says why not ("no replica is ready: replica 0 starting (1 of 2
  // workers registered, 0 ready)"), or how many replicas are ready; it names no
  // worker's host or pid.
  std::pair<bool, std::string> Health() const;
  // Changes whenever Health() may change (a replica's state, its workers' registration
  // or readiness, the drain): a reader compares it to skip building Health() again.
  uint64_t health_version() const { return health_version_.load(std::memory_order_acquire); }

 private:
  static constexpr size_t kNumCodes = static_cast<size_t>(StatusCode::kPermissionDenied) + 1;
  static constexpr size_t kNumReasons = 4;  // stop, length, abort, error

  struct State {
    State();
    bool published = false;
    Gauges gauges;
    std::array<uint64_t, kNumReasons> finished{};
    std::array<uint64_t, kNumCodes> failed{};
    std::array<uint64_t, kNumCodes> refused{};
    uint64_t prompt_tokens = 0;
    uint64_t preemptions = 0;
    HistogramCounts first_token, per_token, e2e, queue, requests_per_step;
  };

  static std::pair<bool, std::string> HealthOf(const State& s);
  static bool SameHealth(const Gauges& a, const Gauges& b);

  mutable std::mutex mu_;
  State state_;  // guarded by mu_
  std::atomic<uint64_t> health_version_{0};
};

}  // namespace flover
