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
//
// With --chat each prompt is sent as a chat conversation (client/chat_prompts.h): one
// user message after the optional --system message, rendered with --chat-template or
// the model file's template, the template's end-of-turn texts added to the stop
// strings; the output shows the answers without the rendered prompt (--json's "prompt"
// is the text sent). A bad --chat-template, --system without --chat, or --chat with
// --prompt-ids exits 2 before anything is sent; a cluster whose model has no template,
// or a template that refuses the conversation, exits 1.
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
  bool chat = false;          // render each prompt with a chat template
  std::string chat_template;  // --chat-template: a built-in name or a template file; "": the model's own
  std::string system;         // --system: a system message before each prompt (with --chat)
};

int GenerateCommand(const GenerateOptions& options);

}  // namespace flover
