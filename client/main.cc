// flover: the command-line entry point. Parses flags and dispatches to a subcommand;
// the work lives in *_command.cc.
#include <CLI/CLI.hpp>

#include "client/run_command.h"

int main(int argc, char** argv) {
  CLI::App app{"Flover: temporal-fusion LLM serving runtime"};
  app.require_subcommand(1);

  flover::RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "Generate with the in-process engine (no daemons)");
  run_cmd->add_option("--model", run.model, "Model: llama2.c .bin, .gguf, or dummy:<preset>")->required();
  run_cmd->add_option("--tokenizer", run.tokenizer, "llama2.c tokenizer (.bin); default: embedded or beside the model");
  auto* prompt = run_cmd->add_option("--prompt", run.prompts, "Prompt text (repeatable)");
  auto* file = run_cmd->add_option("--prompts-file", run.prompts_file, "File with one prompt per line")
                   ->check(CLI::ExistingFile);
  auto* ids = run_cmd->add_option("--prompt-ids", run.prompt_ids, "Prompt as token ids, e.g. 1,301,295 (repeatable)");
  prompt->excludes(file);
  run_cmd->add_option("--max-tokens", run.stop.max_tokens, "Tokens to generate per prompt")->capture_default_str();
  run_cmd->add_option("--temperature", run.sampling.temperature, "0 = greedy")->capture_default_str();
  run_cmd->add_option("--top-k", run.sampling.top_k, "0 = off")->capture_default_str();
  run_cmd->add_option("--top-p", run.sampling.top_p, "1 = off")->capture_default_str();
  run_cmd->add_option("--repetition-penalty", run.sampling.repetition_penalty, "1 = off")->capture_default_str();
  run_cmd->add_option("--seed", run.sampling.seed, "RNG seed; prompt i uses seed + i")->capture_default_str();
  run_cmd->add_option("--stop-token", run.stop.stop_token_ids, "Extra stop token id (repeatable)");
  run_cmd->add_flag("--ignore-eos", run.stop.ignore_eos, "Generate exactly --max-tokens tokens");
  run_cmd->add_option("--stagger", run.stagger, "Admit one prompt every N steps (0 = all at once)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  run_cmd->add_flag("--json", run.json, "One JSON object per prompt on stdout");
  run_cmd->add_option("--threads", run.threads, "Compute threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--block-size", run.block_size, "KV cache block size in tokens")->capture_default_str();
  run_cmd->add_option("--kv-cache-mib", run.kv_cache_mib, "KV cache memory budget (MiB)")->capture_default_str();
  run_cmd->add_option("--max-step-tokens", run.max_step_tokens, "Tokens per fused step")->capture_default_str();
  run_cmd->add_option("--max-running", run.max_running, "Requests per fused step")->capture_default_str();
  run_cmd->add_option("--dummy-seed", run.dummy_seed, "Seed of dummy:<preset> weights")->capture_default_str();
  (void)ids;

  CLI11_PARSE(app, argc, argv);
  if (run_cmd->parsed()) return flover::RunCommand(run);
  return 1;
}
