// `flover bench`: reproduces the Flover paper's experiments. It runs one workload (N
// requests with fixed-interval, Poisson or simultaneous arrivals, at most
// --max-concurrency in flight, random prompts of fixed or uniform lengths or a text,
// fixed or uniform output lengths; bench_workload.h) and measures it (bench_metrics.h,
// goodput under --slo-ttft-ms / --slo-tpot-ms):
//  * against a running cluster (--endpoint E), once, over the native ZeroMQ API or, with
//    --api openai, against ANY OpenAI-compatible HTTP server (--endpoint http://H:P:
//    Flover's own, llama.cpp's, vLLM; --model picks the model id); or
//  * under each of --policies on clusters it starts itself from --config FILE (one
//    fresh LocalCluster per policy, with scheduler.policy set, every tcp port "*", and
//    the model replaced by --model when given), one after the other. A policy whose
//    cluster cannot start or run (e.g. one the coordinator does not implement) is
//    reported as failed and the others still run.
// Prints a progress bar on stderr and a results table on stdout (with speed-ups of
// fused over the other policies), and optionally writes --json and --plot files.
// Exit status: 0 when every run completed (some of its requests may have failed: they
// are reported), 1 when a run failed or none of its requests completed, 2 for bad flags,
// 130 when interrupted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/client.h"

namespace flover {

struct BenchOptions {
  // Target: a running cluster, or a config to start one per policy.
  std::string endpoint;
  std::string api = "native";  // "native" (ZeroMQ) or "openai" (HTTP, with --endpoint)
  std::string config;
  std::string model;      // --config: replaces model.path (and drops the config's tokenizer unless
                          // --tokenizer); --api openai: the model id to request
  std::string tokenizer;  // replaces model.tokenizer
  std::string dtype;      // --config: replaces model.dtype ("auto", "fp32", ..., "q4_k")
  std::vector<std::string> policies;  // default: the config's own policy
  std::string label = "cluster";      // the run's name with --endpoint
  ClientKeyFiles keys;                // CURVE credentials with --endpoint (--key / --server-key)
  std::string bin_dir;
  std::optional<double> ready_timeout_s;  // default: 300 s with --config (models load), 30 s with --endpoint
  double timeout_s = 60;  // a run fails requests after this many silent seconds

  // Workload.
  int requests = 16;
  std::optional<double> interval_ms;       // fixed interval (0 = all at once); the default
  std::optional<double> rate;              // Poisson, requests per second
  std::optional<double> mean_interval_ms;  // Poisson, mean gap
  uint64_t seed = 0;
  std::string prompt_len = "8";            // "N" or "A:B"
  std::string prompt;                      // text instead of random ids
  std::string output_len = "128";          // "N" or "A:B"
  bool ignore_eos = false;
  int max_concurrency = 0;                 // requests in flight at most; 0 = no limit
  int vocab_size = 0;                      // bounds random prompt ids when the target does not say
  std::optional<double> slo_ttft_ms;       // goodput's SLOs
  std::optional<double> slo_tpot_ms;

  // Outputs.
  std::string json;
  std::string plot;
};

int BenchCommand(const BenchOptions& options);

}  // namespace flover
