// flover: the command-line entry point. Parses flags and dispatches to a subcommand;
// the work lives in *_command.cc.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "client/bench/bench_flags.h"
#include "client/flags.h"
#include "client/generate_command.h"
#include "client/keygen_command.h"
#include "client/run_command.h"
#include "client/reload_command.h"
#include "client/status_command.h"
#include "client/up_command.h"
#include "common/protobuf_log.h"
#include "common/version.h"

int main(int argc, char** argv) {
  // Library log lines (a loader's notes, a worker's warnings under `up`) go to stderr:
  // stdout carries the commands' output (--json lines, generated text).
  spdlog::set_default_logger(spdlog::stderr_color_mt("flover"));
  CLI::App app{"Flover: temporal-fusion LLM serving runtime"};
  app.require_subcommand(1);
  app.set_version_flag("--version", flover::VersionLine("flover"));

  flover::RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "Generate with the in-process engine (no daemons)");
  run_cmd->add_option("--model", run.model, "Model: llama2.c .bin, .gguf, a Hugging Face folder, or dummy:<preset>")->required();
  run_cmd->add_option("--tokenizer", run.tokenizer, "Tokenizer: tokenizer.json, a Hugging Face folder or a llama2.c .bin; default: the model's own");
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
  run_cmd->add_option("--dtype", run.dtype,
                      "Weight precision (model.dtype): auto, fp32, fp16, bf16; on cpu also q8_0, q4_0, q4_k")
      ->capture_default_str();
  run_cmd->add_option("--policy", run.policy, "Scheduling policy: fused, dynamic, instances or sequential")
      ->capture_default_str();
  run_cmd->add_option("--pipeline-depth", run.pipeline_depth, "Plans scheduled ahead of their results")
      ->check(CLI::PositiveNumber)->capture_default_str();
  run_cmd->add_option("--threads", run.threads, "Compute threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--block-size", run.block_size, "KV cache block size in tokens")->capture_default_str();
  run_cmd->add_option("--kv-cache-mib", run.kv_cache_mib, "KV cache memory budget (MiB)")->capture_default_str();
  run_cmd->add_option("--kv-dtype", run.kv_dtype,
                      "KV cache element type (kv_cache.dtype): fp32, fp16 or bf16; default fp32 on cpu, the weights' "
                      "type on cuda (the only one it takes)");
  run_cmd->add_option("--max-step-tokens", run.max_step_tokens, "Tokens per fused step")->capture_default_str();
  run_cmd->add_option("--max-running", run.max_running, "Requests per fused step")->capture_default_str();
  run_cmd->add_option("--dummy-seed", run.dummy_seed, "Seed of dummy:<preset> weights")->capture_default_str();

  flover::UpOptions up;
  CLI::App* up_cmd = app.add_subcommand("up", "Start the cluster of a YAML file on this host");
  up_cmd->add_option("--config", up.config, "Cluster YAML file")->required();
  up_cmd->add_option("--exec", up.exec, "Run this shell command once ready ($FLOVER_ENDPOINT, $FLOVER_HTTP_ENDPOINT, $FLOVER_COORDINATOR_PID set), then stop");
  up_cmd->add_option("--ready-timeout", up.ready_timeout_s, "Seconds to wait for every replica")->capture_default_str();
  up_cmd->add_option("--bin-dir", up.bin_dir, "Folder with flover-coordinator and flover-worker");
  up_cmd->add_flag("--no-restart", up.no_restart, "Leave a failed worker stopped (default: restart it)");
  up_cmd->add_option("--drain-timeout", up.drain_timeout_s,
                     "On Ctrl-C/SIGTERM, seconds to let the requests in flight finish (new ones are refused); a "
                     "second signal stops at once")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();

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
  gen_cmd->add_flag("--chat", gen.chat,
                    "Send each prompt as a chat: one user message, rendered with the chat template");
  gen_cmd->add_option("--chat-template", gen.chat_template,
                      "With --chat: a built-in template (chatml, llama2, llama3, mistral, zephyr, gemma, phi3) or a "
                      "file holding a Jinja template; default: the model file's own");
  gen_cmd->add_option("--system", gen.system, "With --chat: a system message before each prompt");
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

  flover::ReloadOptions reload;
  CLI::App* reload_cmd = app.add_subcommand(
      "reload", "Make a running coordinator read its cluster file again and apply what may change live (replicas, "
                "scheduler settings; needs an admin key on a secured cluster)");
  reload_cmd->add_option("--endpoint", reload.endpoint, "Coordinator client endpoint")->envname("FLOVER_ENDPOINT")
      ->capture_default_str();
  flover::AddKeyFlags(reload_cmd, &reload.keys);
  reload_cmd->add_option("--timeout", reload.timeout_s, "Seconds to wait for the coordinator's answer")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  flover::BenchSubcommand bench(&app);

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
  if (reload_cmd->parsed()) return flover::ReloadCommand(reload);
  if (keygen_cmd->parsed()) return flover::KeygenCommand(keygen);
  if (bench.parsed()) return bench.Run();
  return 1;
}
