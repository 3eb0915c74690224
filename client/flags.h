// Command-line flags shared by the subcommands that submit requests (run, generate),
// so every entry point spells and validates them the same way.
#pragma once

#include <CLI/CLI.hpp>

#include "common/request_params.h"

namespace flover {

inline void AddRequestFlags(CLI::App* cmd, SamplingParams* sampling, StopParams* stop) {
  cmd->add_option("--max-tokens", stop->max_tokens, "Tokens to generate per prompt")->capture_default_str();
  cmd->add_option("--temperature", sampling->temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", sampling->top_k, "0 = off")->capture_default_str();
  cmd->add_option("--top-p", sampling->top_p, "1 = off")->capture_default_str();
  cmd->add_option("--repetition-penalty", sampling->repetition_penalty, "1 = off")->capture_default_str();
  cmd->add_option("--seed", sampling->seed, "RNG seed; prompt i uses seed + i")->capture_default_str();
  cmd->add_option("--stop-token", stop->stop_token_ids, "Extra stop token id (repeatable)");
  cmd->add_flag("--ignore-eos", stop->ignore_eos, "Generate exactly --max-tokens tokens");
}

}  // namespace flover
