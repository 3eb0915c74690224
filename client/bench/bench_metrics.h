// What `flover bench` measures, computed from client-side timelines: pure functions
// over plain data, so every formula is unit-tested on hand-computed timelines.
//
// All times are seconds on the client's steady clock, relative to the start of the
// workload. Definitions (after the Flover paper and common serving benchmarks):
//  * overall latency: first submission -> last completion (the paper's headline number);
//  * single latency: the e2e latency of one request of the workload's first shape run
//    alone on the same cluster; avg_over_single = mean e2e / single latency (the
//    paper's "average latency normalised by the latency of a single request");
//  * request throughput = completed / overall latency; output tokens/s likewise;
//  * TTFT: submit -> first TokenEvent; e2e: submit -> Done;
//    TPOT: (e2e - TTFT) / (n - 1) for requests with n >= 2 output tokens;
//    ITL: every gap between consecutive token arrivals of a request (an event carrying
//    k tokens contributes k gaps of 1/k of its delay each);
//    each reported as mean, p50, p90, p99 (percentiles interpolate linearly between
//    order statistics, as numpy's default);
//  * average requests per step: delta of the cluster's tokens_generated over delta of
//    its steps during the run (every request in a step makes at most one token);
//  * goodput (when SLOs are given): the requests that completed with TTFT <= the TTFT
//    SLO and TPOT <= the TPOT SLO (a request with one output token has no TPOT and meets
//    that SLO; an SLO not given is met by all), as a share of ALL requests of the
//    workload (failed ones count against it) and as a rate (good requests / overall
//    latency), after DistServe's definition and vLLM's benchmark.
// A request that got an Error instead of Done counts as failed: it is in n_failed and
// in no latency statistic.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/latency_stats.h"

namespace flover {

struct TokenArrival {
  double t_s = 0;
  int n_tokens = 1;
};

// One request's life as the client saw it.
struct RequestTimeline {
  int index = 0;
  double arrival_s = 0;                 // scheduled arrival
  double submit_s = 0;                  // sent
  std::optional<double> accepted_s;     // Accepted received
  std::vector<TokenArrival> tokens;     // TokenEvents, in order
  std::optional<double> done_s;         // Done (or Error) received
  std::optional<double> server_queue_s; // Done.queue_seconds: submit -> first step, coordinator clock
  int prompt_tokens = 0;
  int output_tokens = 0;                // Done.completion_tokens
  std::string finish_reason;            // "length", "stop", ... ; "error" when failed
  std::string error;                    // non-empty: failed ("Unavailable: ...")

  bool completed() const { return done_s.has_value() && error.empty(); }
  std::optional<double> first_token_s() const {
    return tokens.empty() ? std::optional<double>() : std::optional<double>(tokens.front().t_s);
  }
};

// Cumulative step counters of a cluster (summed over replicas) from its status.
struct StepCounters {
  uint64_t steps = 0;
  uint64_t tokens_generated = 0;
  double step_compute_seconds = 0;  // the workers' own time for those steps
  double step_wait_seconds = 0;     // the workers' wait for the plans of those steps
};

// Service-level objectives for goodput; either may be absent.
struct Slo {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
  bool any() const { return ttft_s.has_value() || tpot_s.has_value(); }
};

struct Goodput {
  int n_good = 0;       // requests within every SLO
  double share = 0;     // n_good / all requests
  double rate = 0;      // n_good / overall latency, requests/s; 0 if none completed
};

struct BenchMetrics {
  int n_requests = 0;
  int n_completed = 0;
  int n_failed = 0;
  int64_t output_tokens = 0;     // of completed requests
  double overall_latency_s = 0;  // first submission -> last completion; 0 if none completed
  double single_latency_s = 0;   // one request alone
  double avg_latency_s = 0;      // mean e2e
  double avg_over_single = 0;    // avg_latency_s / single_latency_s; 0 if unknown
  double request_throughput = 0; // completed requests / s
  double output_tokens_per_s = 0;
  LatencyStats ttft, tpot, itl, e2e;  // seconds
  double avg_requests_per_step = 0;   // 0 when no step ran
  double avg_step_compute_s = 0;      // workers' compute per step (TPOT minus this ~ coordination)
  double avg_step_wait_s = 0;         // workers' wait for the next plan per step (the coordination part)
  std::optional<Goodput> goodput;     // when SLOs were given
};

BenchMetrics ComputeMetrics(const std::vector<RequestTimeline>& requests, double single_latency_s,
                            const StepCounters& before, const StepCounters& after, const Slo& slo = {});

// Goodput of `requests` under `slo` over a run of `overall_latency_s` (see above).
Goodput ComputeGoodput(const std::vector<RequestTimeline>& requests, const Slo& slo, double overall_latency_s);

// A completed request's TTFT (submit -> first token, or -> done without tokens) and
// TPOT ((e2e - TTFT) / (n - 1); nullopt when n < 2). REQUIRES r.completed().
double TimeToFirstToken(const RequestTimeline& r);
std::optional<double> TimePerOutputToken(const RequestTimeline& r);

// Output tokens per second over time: bins of `bin_s` from 0 to the last token, each
// as (bin start, tokens in the bin / bin_s). REQUIRES bin_s > 0.
std::vector<std::pair<double, double>> ThroughputOverTime(const std::vector<RequestTimeline>& requests,
                                                          double bin_s);

}  // namespace flover
