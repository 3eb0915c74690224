// `flover generate`: submits prompts to a running cluster (its client endpoint), all at
// once over one connection, and prints the completions: streamed text for one prompt,
// one story per prompt otherwise, or one JSON object per prompt (--json), in prompt
// order, with the same shape as `flover run --json` (plus "error" for one that failed).
// With --stream --json it prints NDJSON as replies come: {"event":"token","index",
// "tokens","text"} per token event and {"event":"done","index", the completion's fields}
// when a prompt ends. The requests go through one RequestSession: Ctrl-C cancels what is
// in flight (each completion ends `cancelled`; exit 130); a request that fails (an
// Error, the connection closed, no reply for `timeout_s`) is reported on stderr and
// exits 1. Bad flags exit 2 before anything is sent: a --prompt or --stop that is not
// valid UTF-8 (the protocol carries UTF-8 text only), bad --prompt-ids. Nothing
// answering at the endpoint within `connect_timeout_s` exits 1 at once.
#pragma once

#include <string>
#include <vector>

#include "client/client.h"
#include "common/request_params.h"

namespace flover {

struct GenerateOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  ClientKeyFiles keys;  // CURVE: --key / --server-key
  std::vector<std::string> prompts;
  std::vector<std::string> prompt_ids;
  SamplingParams sampling;
  StopParams stop;
  bool stream = false;
  bool json = false;
  double timeout_s = 60;  // give up when the coordinator is silent this long
  double connect_timeout_s = 5;  // give up when nothing answers at the endpoint this long
  double deadline_s = 0;  // per request, at the coordinator (SubmitRequest.timeout_ms); 0: none
};

int GenerateCommand(const GenerateOptions& options);

}  // namespace flover
