// The Exchange of both generation endpoints: sends one SubmitRequest per choice and
// assembles the cluster's replies into one OpenAI response, in the endpoint's
// ResponseFormat.
//
// Non-streaming: nothing is written until every choice is Done; then 200 and the whole
// JSON (choices in index order, usage).
// Streaming: the head (200, text/event-stream) goes out once every choice is accepted,
// or with the first text, whichever comes first, with each choice's opening chunk; then
// a chunk per TokenEvent with text (or log-probabilities), a last chunk per choice with
// its finish reason, a usage chunk (empty choices) when include_usage, and [DONE].
// Usage counts each prompt's tokens once (n choices share a prompt) and every choice's
// completion tokens.
// Errors: an Error reply for any choice (or a Done that is neither stop nor length, or
// log-probabilities missing when asked for) ends the whole exchange (done = true; the
// server cancels the other choices). Before the head it is the response: the error's
// status and ErrorBody; after it, an SSE event {"error":{...}} then [DONE].
// Replies after done, and keepalives, write nothing.
//
// Thread-safety: none (the HTTP thread owns every Exchange).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "common/proto/flover.pb.h"
#include "coordinator/openai/exchange.h"
#include "coordinator/openai/response_format.h"

namespace flover {
class Tokenizer;
}

namespace flover::openai {

struct ChoiceSetup {
  size_t prompt_index = 0;
  std::string echo;     // the prompt text shown before the completion (completions' echo), or ""
  int prev_token = -1;  // the prompt's last token (what the first generated token follows)
};

struct ExchangeSetup {
  std::vector<proto::SubmitRequest> submits;  // one per choice
  std::vector<ChoiceSetup> choices;           // one per submit
  size_t n_prompts = 1;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;                      // the submits ask for log-probabilities
  std::string model_id;
  const Tokenizer* tokenizer = nullptr;       // for the token strings of log-probabilities
  std::unique_ptr<ResponseFormat> format;
};

// REQUIRES: setup.submits.size() == setup.choices.size() >= 1; every prompt_index < n_prompts.
std::unique_ptr<Exchange> MakeChoiceExchange(ExchangeSetup setup);

}  // namespace flover::openai
