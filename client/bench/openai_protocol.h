// The OpenAI-compatible HTTP API as `flover bench --api openai` speaks it, as pure
// functions (no I/O; openai_backend.cc does the HTTP): the endpoint URL, the streamed
// /v1/completions request, the meaning of each Server-Sent Event of its answer, the
// /v1/models list and error bodies.
//
// Request: {"model", "prompt": [token ids] (or the text), "max_tokens", "temperature": 0,
// "seed", "stream": true, "stream_options": {"include_usage": true}, and for exact
// lengths "ignore_eos": true with "min_tokens" = max_tokens} (two extensions: vLLM's,
// llama.cpp's and Flover's servers honour ignore_eos; vLLM and llama-cpp-python honour
// min_tokens, which keeps EOS away until then; servers ignore fields they do not know).
// Random prompts go as token-id arrays so every server sees the same tokens whatever its
// tokenizer does to text (llama-cpp-python's server takes text prompts only: use
// --prompt TEXT there).
//
// Answer, one SSE event at a time:
//  * "[DONE]": the end of the stream;
//  * a JSON object with "error" (or an "error" event type): the request failed;
//  * a chunk: choices[0].text, choices[0].finish_reason, and "usage" (with
//    include_usage, a last chunk with no choices and the token counts).
// A chunk counts as ONE output token when its choice has non-empty text, or empty text
// and no finish reason (a token whose bytes do not form a whole character yet): servers
// stream one token per chunk. The request's token count is usage.completion_tokens when
// the server sends it, else the chunks counted. A stream that ends ([DONE], or the end of
// the body) without any finish reason was cut short by the server: the request fails.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "client/bench/sse_parser.h"
#include "common/status.h"

namespace flover {

struct HttpEndpoint {
  std::string host;
  std::string port;       // "80" when the URL has none
  std::string base_path;  // "" or "/prefix" (a trailing "/v1" is dropped: paths add it)
  std::string ToString() const { return "http://" + host + ":" + port + base_path; }
};

// "http://HOST[:PORT][/PATH]" (HOST may be [v6]). InvalidArgument naming the URL for
// anything else; https is refused with what to do instead.
Result<HttpEndpoint> ParseServerUrl(const std::string& url);

struct CompletionRequest {
  std::string model;
  std::vector<int> prompt_ids;  // the prompt, or
  std::string prompt_text;      // when prompt_ids is empty
  int max_tokens = 0;
  uint64_t seed = 0;
  bool ignore_eos = false;
};
std::string CompletionRequestBody(const CompletionRequest& request);

// One event of a streamed completion, interpreted.
struct StreamEvent {
  enum Kind { kChunk, kDone, kError };
  Kind kind = kChunk;
  bool token = false;                   // kChunk: carries one output token
  std::string finish_reason;            // kChunk: "" until the last choice chunk
  std::optional<int> prompt_tokens;     // kChunk with usage
  std::optional<int> completion_tokens;
  std::string error;                    // kError: the server's message
};
// An event whose data is not JSON, or not an object, is a kError saying so.
StreamEvent InterpretStreamEvent(const SseEvent& event);

// The text of a failed HTTP answer: "HTTP 400: <the error's message>" from an OpenAI
// error body ({"error": {"message"}} or {"error": "text"}, {"message"}, {"detail"}),
// else the body itself (cut to 300 bytes).
std::string HttpErrorText(int status, const std::string& body);

// What /v1/models says of the model to use: `wanted` when given (NotFound listing the
// ids when the server does not serve it), else the first one. vocab_size and context
// length when the server says them (llama.cpp's "meta": n_vocab, n_ctx_train; vLLM's
// max_model_len). InvalidArgument for a body that is not a model list.
struct ServedModelInfo {
  std::string id;
  int vocab_size = 0;
  int max_seq_len = 0;
};
Result<ServedModelInfo> ParseModelList(const std::string& body, const std::string& wanted);

}  // namespace flover
