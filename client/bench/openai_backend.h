// The OpenAI BenchBackend: any OpenAI-compatible HTTP server (Flover's own, llama.cpp's,
// vLLM) through POST /v1/completions with "stream": true (openai_protocol.h says what is
// sent and how the Server-Sent Events are read). Boost.Asio/Beast, every request on ONE
// thread (the caller's, inside Poll): any number of concurrent streams, no thread per
// request. Each request has its own connection, opened when it is sent and closed at its
// end (a client that leaves mid-stream cancels its request at the server).
//  * time to first token: the first chunk carrying a token; every later chunk is timed
//    as one token (servers stream one token per chunk); the count at the end is usage's
//    completion_tokens (stream_options.include_usage) when the server sends it, else
//    the chunks;
//  * WaitReady: GET /v1/models answers 200 (retried until the timeout); the model id is
//    --model or the first listed; vocabulary and context when the server says them;
//  * no Accepted, no server queue time, no step counters (the table shows "-");
//  * $OPENAI_API_KEY, when set, goes as "Authorization: Bearer".
//
// Thread-safety: none (BenchBackend).
#pragma once

#include <memory>
#include <string>

#include "client/bench/bench_backend.h"
#include "client/bench/openai_protocol.h"

namespace flover {

struct OpenAiBackendOptions {
  HttpEndpoint endpoint;
  std::string model;    // the model id to request; "" = the first of /v1/models
  std::string api_key;  // "" = none
  double silence_timeout_s = 60;
};

// Resolves the host (Unavailable when it cannot be); connects nothing yet.
Result<std::unique_ptr<BenchBackend>> CreateOpenAiBackend(const OpenAiBackendOptions& options);

}  // namespace flover
