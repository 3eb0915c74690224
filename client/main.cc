// flover: the command-line entry point. Parses flags and dispatches to a subcommand;
// the work lives in *_command.cc.
#include <CLI/CLI.hpp>

#include "client/bench/bench_command.h"
#include "client/flags.h"
#include "client/generate_command.h"
#include "client/keygen_command.h"
#include "client/run_command.h"
#include "client/status_command.h"
#include "client/up_command.h"
#include "common/protobuf_log.h"
#include "common/version.h"

int main(int argc, char** argv) {
  CLI::App app{"Flover: temporal-fusion LLM serving runtime"};
  app.require_subcommand(1);
  app.set_version_flag("--version", flover::VersionLine("flover"));

  flover::RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "Generate with the in-process engine (no daemons)");
  run_cmd->add_option("--model", run.model, "Model: llama2.c .bin, .gguf, or dummy:<preset>")->required();
  run_cmd->add_option("--tokenizer", run.tokenizer, "llama2.c tokenizer (.bin); default: embedded or beside the model");
  auto* prompt = run_cmd->add_option("--prompt", run.prompts, "Prompt text (repeatable)");
  auto* file = run_cmd->add_option("--prompts-file", run.prompts_file, "File with one prompt per line")
                   ->check(CLI::ExistingFile);
  run_cmd->add_option("--prompt-ids", run.prompt_ids, "Prompt as token ids, e.g. 1,301,295 (repeatable)");
  prompt->excludes(file);
  flover::AddRequestFlags(run_cmd, &run.sampling, &run.stop);
  run_cmd->add_option("--stagger", run.stagger, "Admit one prompt every N steps (0 = all at once)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  run_cmd->add_flag("--json", run.json, "One JSON object per prompt on stdout");
  run_cmd->add_option("--device", run.device, "Backend: cpu or cuda:N")->capture_default_str();
  run_cmd->add_option("--policy", run.policy, "Scheduling policy: fused, dynamic, instances or sequential")
      ->capture_default_str();
  run_cmd->add_option("--pipeline-depth", run.pipeline_depth, "Plans scheduled ahead of their results")
      ->check(CLI::PositiveNumber)->capture_default_str();
  run_cmd->add_option("--threads", run.threads, "Compute threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--block-size", run.block_size, "KV cache block size in tokens")->capture_default_str();
  run_cmd->add_option("--kv-cache-mib", run.kv_cache_mib, "KV cache memory budget (MiB)")->capture_default_str();
  run_cmd->add_option("--max-step-tokens", run.max_step_tokens, "Tokens per fused step")->capture_default_str();
  run_cmd->add_option("--max-running", run.max_running, "Requests per fused step")->capture_default_str();
  run_cmd->add_option("--dummy-seed", run.dummy_seed, "Seed of dummy:<preset> weights")->capture_default_str();

  flover::UpOptions up;
  CLI::App* up_cmd = app.add_subcommand("up", "Start the cluster of a YAML file on this host");
  up_cmd->add_option("--config", up.config, "Cluster YAML file")->required();
  up_cmd->add_option("--exec", up.exec, "Run this shell command once ready ($FLOVER_ENDPOINT set), then stop");
  up_cmd->add_option("--ready-timeout", up.ready_timeout_s, "Seconds to wait for every replica")->capture_default_str();
  up_cmd->add_option("--bin-dir", up.bin_dir, "Folder with flover-coordinator and flover-worker");
  up_cmd->add_flag("--no-restart", up.no_restart, "Leave a failed worker stopped (default: restart it)");

  flover::GenerateOptions gen;
  CLI::App* gen_cmd = app.add_subcommand("generate", "Submit prompts to a running cluster");
  gen_cmd->add_option("--endpoint", gen.endpoint, "Coordinator client endpoint")->envname("FLOVER_ENDPOINT")
      ->capture_default_str();
  flover::AddKeyFlags(gen_cmd, &gen.keys);
  gen_cmd->add_option("--prompt", gen.prompts, "Prompt text (repeatable)");
  gen_cmd->add_option("--prompt-ids", gen.prompt_ids, "Prompt as token ids, e.g. 1,301,295 (repeatable)");
  flover::AddRequestFlags(gen_cmd, &gen.sampling, &gen.stop);
  gen_cmd->add_option("--stop", gen.stop.stop_strings,
                      "Text that ends a completion where it appears (repeatable); not part of the output");
  gen_cmd->add_flag("--stream", gen.stream, "Stream tokens as they are generated");
  gen_cmd->add_flag("--json", gen.json,
                    "One JSON object per prompt on stdout; with --stream, one per event as they come (NDJSON)");
  gen_cmd->add_option("--timeout", gen.timeout_s, "Give up after this many silent seconds")->capture_default_str();
  gen_cmd->add_option("--connect-timeout", gen.connect_timeout_s,
                      "Give up when nothing answers at the endpoint within this many seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  gen_cmd->add_option("--deadline", gen.deadline_s,
                      "Seconds each request may take at the cluster (then DeadlineExceeded; 0 = none)")
      ->check(CLI::Range(0.0, 4.0e6));

  flover::StatusOptions status;
  CLI::App* status_cmd = app.add_subcommand("status", "Show a running cluster");
  status_cmd->add_option("--endpoint", status.endpoint, "Coordinator client endpoint")->envname("FLOVER_ENDPOINT")
      ->capture_default_str();
  flover::AddKeyFlags(status_cmd, &status.keys);
  status_cmd->add_flag("--json", status.json, "Print the status as one JSON object (snake_case, numbers as numbers)");
  status_cmd->add_option("--wait-ready", status.wait_ready_s, "Wait up to S seconds for every replica to be ready");
  status_cmd->add_flag("--probe", status.probe,
                       "Health check (Kubernetes readinessProbe): exit 0 if some replica is ready to serve, else 1");
  status_cmd->add_option("--timeout", status.timeout_s, "Seconds to wait for the coordinator's answer")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  flover::BenchOptions bench;
  double interval_ms = 0, rate = 0, mean_interval_ms = 0, bench_ready_timeout_s = 0;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench", "Measure a workload: on a running cluster, or under each policy on clusters started from a config");
  auto* endpoint = bench_cmd->add_option("--endpoint", bench.endpoint,
                                         "Benchmark a running cluster (default tcp://127.0.0.1:5555)");
  auto* config = bench_cmd->add_option("--config", bench.config, "Start a cluster from this YAML file per policy");
  endpoint->excludes(config);
  bench_cmd->add_option("--model", bench.model, "With --config: replace model.path (path or dummy:<preset>)")
      ->needs(config);
  bench_cmd->add_option("--tokenizer", bench.tokenizer, "With --config: replace model.tokenizer")->needs(config);
  bench_cmd->add_option("--policies", bench.policies, "With --config: policies to run, e.g. fused,sequential")
      ->delimiter(',')->needs(config);
  bench_cmd->add_option("--label", bench.label, "With --endpoint: the run's name in the results")
      ->capture_default_str();
  flover::AddKeyFlags(bench_cmd, &bench.keys);
  bench_cmd->add_option("--requests", bench.requests, "Requests in the workload")->capture_default_str();
  auto* interval = bench_cmd->add_option("--interval-ms", interval_ms,
                                         "Fixed gap between arrivals (0 = all at once; the default)");
  auto* poisson_rate = bench_cmd->add_option("--rate", rate, "Poisson arrivals, requests per second");
  auto* poisson_mean = bench_cmd->add_option("--mean-interval-ms", mean_interval_ms,
                                             "Poisson arrivals, mean gap in ms");
  interval->excludes(poisson_rate)->excludes(poisson_mean);
  poisson_rate->excludes(poisson_mean);
  bench_cmd->add_option("--seed", bench.seed, "Seed of arrivals, prompts and output lengths")->capture_default_str();
  auto* prompt_len = bench_cmd->add_option("--prompt-len", bench.prompt_len, "Random prompt token ids per request")
                         ->capture_default_str();
  bench_cmd->add_option("--prompt", bench.prompt, "One text prompt for every request (needs a tokenizer)")
      ->excludes(prompt_len);
  bench_cmd->add_option("--output-len", bench.output_len, "Output tokens: N, or A:B drawn uniformly")
      ->capture_default_str();
  bench_cmd->add_flag("--ignore-eos", bench.ignore_eos, "Generate exactly the output length");
  bench_cmd->add_option("--json", bench.json, "Write one JSON object per run (an array) to this file");
  bench_cmd->add_option("--plot", bench.plot, "Draw request timelines and throughput into this PNG (gnuplot)");
  auto* bench_ready = bench_cmd->add_option("--ready-timeout", bench_ready_timeout_s,
                                            "Seconds to wait for every replica (default 300 with --config, 30 else)");
  bench_cmd->add_option("--timeout", bench.timeout_s, "Fail what is in flight after this many silent seconds")
      ->capture_default_str();
  bench_cmd->add_option("--bin-dir", bench.bin_dir, "Folder with flover-coordinator and flover-worker");

  flover::KeygenOptions keygen;
  CLI::App* keygen_cmd = app.add_subcommand(
      "keygen", "Make a CURVE key pair: DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub (docs/security.md)");
  keygen_cmd->add_option("--out", keygen.out, "DIR/NAME of the two files; existing files are never overwritten")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every bad flag (unknown, missing, invalid) exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  flover::RouteProtobufLogs();
  if (run_cmd->parsed()) return flover::RunCommand(run);
  if (up_cmd->parsed()) return flover::UpCommand(up);
  if (gen_cmd->parsed()) return flover::GenerateCommand(gen);
  if (status_cmd->parsed()) return flover::StatusCommand(status);
  if (keygen_cmd->parsed()) return flover::KeygenCommand(keygen);
  if (bench_cmd->parsed()) {
    if (interval->count()) bench.interval_ms = interval_ms;
    if (poisson_rate->count()) bench.rate = rate;
    if (poisson_mean->count()) bench.mean_interval_ms = mean_interval_ms;
    if (bench_ready->count()) bench.ready_timeout_s = bench_ready_timeout_s;
    return flover::BenchCommand(bench);
  }
  return 1;
}
