// `flover generate`: submits prompts to a running cluster (its client endpoint), all at
// once over one connection, and prints the completions: streamed text for one prompt,
// one story per prompt otherwise, or one JSON object per prompt (--json), in prompt
// order, with the same shape as `flover run --json`. The requests go through one
// RequestSession: Ctrl-C cancels what is in flight (each completion ends `cancelled`;
// exit 130); a request that fails (an Error, the connection closed, no reply for
// `timeout_s`) is reported on stderr and exits 1.
#pragma once

#include <string>

#include "client/client.h"
#include <vector>

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
  double deadline_s = 0;  // per request, at the coordinator (SubmitRequest.timeout_ms); 0: none
};

int GenerateCommand(const GenerateOptions& options);

}  // namespace flover
