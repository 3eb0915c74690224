// The outputs of `flover bench`: the results table (stdout), the JSON file (--json) and
// the timeline plot (--plot, drawn by gnuplot).
//
// Table: one row per run ("-" for step figures a target does not report; goodput columns
// when SLOs were given). When "fused" ran and at least one other policy did too, two
// speed-up columns compare them as the paper does: "fused speed-up" = this run's overall
// latency / fused's, "fused avg speed-up" = this run's mean e2e latency / fused's.
//
// Thread-safety: pure functions, except WritePlot (files, a gnuplot process).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/bench/bench_runner.h"
#include "common/status.h"

namespace flover {

// The results table, lines ending in '\n'; failed runs get a row of '-' and their error
// below the table.
std::string FormatResultsTable(const std::vector<BenchRun>& runs);

// One run as JSON: "policy", "api", "model", "error" (failed runs), "workload" (the
// parameters), request counts, "overall_latency_s", "single_latency_s", "avg_latency_s",
// "avg_over_single", "request_throughput", "output_tokens", "output_tokens_per_s",
// "ttft_s"/"tpot_s"/"itl_s"/"e2e_s" ({n, mean, p50, p90, p99}), "goodput" (with SLOs:
// {slo_ttft_s, slo_tpot_s, good_requests, share, request_rate}), "avg_requests_per_step",
// "avg_step_compute_s", "steps", "tokens_generated" (when the target reported steps),
// "single" and "requests" (per-request timelines).
nlohmann::json RunToJson(const BenchRun& run);

// Draws every run's request timeline (queued: submit -> first step; prefill: -> first
// token; decode: -> done; failed requests in red) and output tokens/s over time into a
// PNG, through a data file and a gnuplot script in a temporary folder.
// NotFound when gnuplot is not installed.
Status WritePlot(const std::vector<BenchRun>& runs, const std::string& png_path);

// The path of the gnuplot executable (searched in $PATH), or NotFound with what to install.
Result<std::string> FindGnuplot();

}  // namespace flover
