// Command-line flags shared by the subcommands that submit requests (run, generate),
// so every entry point spells and validates them the same way.
#pragma once

#include <CLI/CLI.hpp>

#include "client/client.h"
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

// --key / --server-key (environment FLOVER_KEY / FLOVER_SERVER_KEY): the CURVE
// credentials of a client of a cluster with `security.mode: curve` (docs/security.md).
inline void AddKeyFlags(CLI::App* cmd, ClientKeyFiles* files) {
  cmd->add_option("--key", files->key, "This client's CURVE key pair (flover keygen's NAME.key)")
      ->envname("FLOVER_KEY");
  cmd->add_option("--server-key", files->server_key, "The coordinator's CURVE public key (NAME.pub), pinned")
      ->envname("FLOVER_SERVER_KEY");
}

}  // namespace flover
