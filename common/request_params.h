// What a client asks for: sampling and stopping parameters of one request, with
// validation against the model. Shared by the in-process engine, the coordinator's
// admission and the client, so that every entry point rejects the same bad input with
// the same message.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"

namespace flover {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy (argmax)
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float repetition_penalty = 1.0f;  // 1 = off; CTRL-style over prompt + generated tokens
  uint64_t seed = 0;                // the request's own RNG stream

  bool greedy() const { return temperature == 0.0f; }
};

struct StopParams {
  int max_tokens = 256;             // generated tokens, >= 1
  std::vector<int> stop_token_ids;  // finish (reason "stop") when one is generated
  bool ignore_eos = false;          // keep going past EOS/BOS (for exact-length benchmarks)
  std::vector<std::string> stop_strings;  // text that ends the request (the coordinator applies them)
};

// Why a request left the batch.
enum class FinishReason { kNone = 0, kStop, kLength, kCancelled, kError };
const char* FinishReasonName(FinishReason reason);  // "stop", "length", "cancelled", "error"

struct RequestParams {
  std::vector<int> prompt;  // token ids, BOS included when wanted
  SamplingParams sampling;
  StopParams stop;
};

// InvalidArgument naming the field: empty prompt, prompt longer than the context, ids
// outside the vocabulary, max_tokens < 1, temperature < 0 or not finite, top_p outside
// (0, 1], top_k < 0, repetition_penalty <= 0, stop ids outside the vocabulary.
Status ValidateRequest(const RequestParams& request, const ModelSpec& spec);

}  // namespace flover
