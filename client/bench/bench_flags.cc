#include "client/bench/bench_flags.h"

#include "client/flags.h"

namespace flover {

BenchSubcommand::BenchSubcommand(CLI::App* app) {
  BenchOptions& o = options_;
  cmd_ = app->add_subcommand(
      "bench",
      "Measure a workload: on a running cluster or OpenAI-compatible server, or under each policy on clusters "
      "started from a config");
  auto* endpoint = cmd_->add_option(
      "--endpoint", o.endpoint,
      "Benchmark a running cluster (default tcp://127.0.0.1:5555), or with --api openai any server at http://HOST:PORT");
  auto* config = cmd_->add_option("--config", o.config, "Start a cluster from this YAML file per policy");
  endpoint->excludes(config);
  cmd_->add_option("--api", o.api, "native (the cluster's ZeroMQ API) or openai (POST /v1/completions, streamed)")
      ->check(CLI::IsMember({"native", "openai"}))
      ->capture_default_str();
  cmd_->add_option("--model", o.model,
                   "With --config: replace model.path (path or dummy:<preset>); with --api openai: the model id");
  cmd_->add_option("--tokenizer", o.tokenizer, "With --config: replace model.tokenizer")->needs(config);
  cmd_->add_option("--dtype", o.dtype,
                   "With --config: replace model.dtype (auto, fp32, fp16, bf16; on CPU workers also q8_0, q4_0, q4_k)")
      ->needs(config);
  cmd_->add_option("--policies", o.policies, "With --config: policies to run, e.g. fused,sequential")
      ->delimiter(',')
      ->needs(config);
  cmd_->add_option("--label", o.label, "With --endpoint: the run's name in the results")->capture_default_str();
  AddKeyFlags(cmd_, &o.keys);
  cmd_->add_option("--requests", o.requests, "Requests in the workload")->capture_default_str();
  interval_ = cmd_->add_option("--interval-ms", interval_ms_, "Fixed gap between arrivals (0 = all at once; the default)");
  rate_flag_ = cmd_->add_option("--rate", rate_, "Poisson arrivals, requests per second");
  mean_interval_ = cmd_->add_option("--mean-interval-ms", mean_interval_ms_, "Poisson arrivals, mean gap in ms");
  interval_->excludes(rate_flag_)->excludes(mean_interval_);
  rate_flag_->excludes(mean_interval_);
  cmd_->add_option("--max-concurrency", o.max_concurrency,
                   "At most N requests in flight; later arrivals wait client-side (0 = no limit)")
      ->capture_default_str();
  cmd_->add_option("--seed", o.seed, "Seed of arrivals, prompts and lengths")->capture_default_str();
  auto* prompt_len = cmd_->add_option("--prompt-len", o.prompt_len, "Random prompt token ids per request: N, or A:B drawn uniformly")
                         ->capture_default_str();
  cmd_->add_option("--prompt", o.prompt, "One text prompt for every request (needs a tokenizer)")->excludes(prompt_len);
  cmd_->add_option("--vocab-size", o.vocab_size,
                   "Random prompt ids are below this when the target does not say its vocabulary (some OpenAI servers)");
  cmd_->add_option("--output-len", o.output_len, "Output tokens: N, or A:B drawn uniformly")->capture_default_str();
  cmd_->add_flag("--ignore-eos", o.ignore_eos, "Generate exactly the output length");
  slo_ttft_ = cmd_->add_option("--slo-ttft-ms", slo_ttft_ms_, "Goodput: a good request's time to first token, ms");
  slo_tpot_ = cmd_->add_option("--slo-tpot-ms", slo_tpot_ms_, "Goodput: a good request's time per output token, ms");
  cmd_->add_option("--json", o.json, "Write one JSON object per run (an array) to this file");
  cmd_->add_option("--plot", o.plot, "Draw request timelines and throughput into this PNG (gnuplot)");
  ready_timeout_ = cmd_->add_option("--ready-timeout", ready_timeout_s_,
                                    "Seconds to wait for the target (default 300 with --config, 30 else)");
  cmd_->add_option("--timeout", o.timeout_s, "Fail what is in flight after this many silent seconds")
      ->capture_default_str();
  cmd_->add_option("--bin-dir", o.bin_dir, "Folder with flover-coordinator and flover-worker");
}

int BenchSubcommand::Run() {
  if (interval_->count()) options_.interval_ms = interval_ms_;
  if (rate_flag_->count()) options_.rate = rate_;
  if (mean_interval_->count()) options_.mean_interval_ms = mean_interval_ms_;
  if (ready_timeout_->count()) options_.ready_timeout_s = ready_timeout_s_;
  if (slo_ttft_->count()) options_.slo_ttft_ms = slo_ttft_ms_;
  if (slo_tpot_->count()) options_.slo_tpot_ms = slo_tpot_ms_;
  return BenchCommand(options_);
}

}  // namespace flover
