// RunBenchmark: runs one `flover bench` workload against a running cluster (its client
// endpoint) and measures it. In order, over one connection:
//   1. waits until every replica is ready and reads the model's shape from the status
//      (the vocabulary bounds the random prompt ids);
//   2. runs ONE request of the workload's first shape alone, twice: a warm-up, then the
//      measured single-request latency;
//   3. reads the cluster's step counters, runs the workload (each request submitted at
//      its arrival time, stream = true, through a RequestSession, whose clock stamps
//      submit, Accepted, every TokenEvent and Done), reads the counters again;
//   4. computes the metrics (bench_metrics.h).
// A progress bar (completed/total, elapsed, tokens/s) goes to stderr. Requests that get
// an Error, or no reply for `silence_timeout_s` (then those not sent yet fail too), or
// whose connection closed, are failed and reported, not fatal. Interrupted (polled, as
// the session does), the requests in flight are cancelled and the run fails.
//
// Thread-safety: RunBenchmark owns its connection; call it from one thread at a time.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/bench/bench_metrics.h"
#include "client/bench/bench_workload.h"
#include "common/curve_socket.h"
#include "common/status.h"

namespace flover {

struct BenchRunOptions {
  std::string label;              // the policy (or --label) shown in progress lines
  WorkloadSpec workload;          // vocab_size is filled from the cluster
  bool ignore_eos = false;
  double ready_timeout_s = 60;    // for replicas to be ready
  double silence_timeout_s = 60;  // no reply this long fails what is still in flight
  bool progress = true;
  std::function<bool()> interrupted;  // polled; may be empty
  std::optional<CurveClientKeys> curve;  // the client's CURVE credentials (security.mode: curve)
};

// Everything one run measured; error non-empty when the run itself failed (cluster did
// not start, the single request failed, interrupted, ...).
struct BenchRun {
  std::string policy;
  std::string error;
  std::string model;         // the model's description from the status
  WorkloadSpec workload;     // as run (vocab resolved)
  bool ignore_eos = false;
  RequestTimeline single;    // the single-request run
  std::vector<RequestTimeline> requests;
  StepCounters steps_before, steps_after;
  BenchMetrics metrics;
};

// Runs the whole sequence above against `endpoint`. Returns the run, with `error` set
// when it could not complete; never throws.
BenchRun RunBenchmark(const std::string& endpoint, const BenchRunOptions& options);

}  // namespace flover
