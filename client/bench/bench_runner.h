// RunBenchmark: runs one `flover bench` workload against a target through a BenchBackend
// (bench_backend.h: the native ZeroMQ API or an OpenAI-compatible HTTP server) and
// measures it. In order:
//   1. waits until the target is ready and reads what it says of the model (the
//      vocabulary bounds the random prompt ids; --vocab-size stands in when it is silent);
//   2. runs ONE request of the workload's first shape alone, twice: a warm-up, then the
//      measured single-request latency;
//   3. reads the target's step counters (when it has them), runs the workload (each
//      request sent at its arrival time, or later when --max-concurrency requests are in
//      flight: bench_admission.h; the backend stamps every event on the client's clock),
//      reads the counters again;
//   4. computes the metrics (bench_metrics.h), goodput included when SLOs are given.
// A progress bar (completed/total, elapsed, tokens/s) goes to stderr. Requests that get
// an error, or no reply for the backend's silence timeout (then those not sent yet fail
// too), or whose connection closed, are failed and reported, not fatal. Interrupted
// (polled), the requests in flight are cancelled and the run fails.
//
// Thread-safety: RunBenchmark drives its backend; call it from one thread at a time.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/bench/bench_backend.h"
#include "client/bench/bench_metrics.h"
#include "client/bench/bench_workload.h"
#include "common/status.h"

namespace flover {

struct BenchRunOptions {
  std::string label;              // the policy (or --label) shown in progress lines
  std::string api = "native";     // the backend's API, for the report
  WorkloadSpec workload;          // vocab_size 0 is filled from the target
  bool ignore_eos = false;
  int max_concurrency = 0;        // requests in flight at most; 0 = no limit
  Slo slo;                        // goodput's SLOs (none: no goodput)
  double ready_timeout_s = 60;    // for the target to be ready
  bool progress = true;
  std::function<bool()> interrupted;  // polled; may be empty
};

// Everything one run measured; error non-empty when the run itself failed (cluster did
// not start, the single request failed, interrupted, ...).
struct BenchRun {
  std::string policy;
  std::string error;
  std::string api = "native";
  std::string model;         // the model's description from the status (openai: its id)
  WorkloadSpec workload;     // as run (vocab resolved)
  bool ignore_eos = false;
  int max_concurrency = 0;
  Slo slo;
  bool has_step_counters = false;  // the target reported steps (native API)
  RequestTimeline single;    // the single-request run
  std::vector<RequestTimeline> requests;
  StepCounters steps_before, steps_after;
  BenchMetrics metrics;
};

// A run that could not start (its backend did not connect, its cluster did not start).
BenchRun FailedRun(const BenchRunOptions& options, const std::string& error);

// Runs the whole sequence above on `backend`. Returns the run, with `error` set when it
// could not complete; never throws.
BenchRun RunBenchmark(BenchBackend& backend, const BenchRunOptions& options);

}  // namespace flover
