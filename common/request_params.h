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

// The length rule: how far a request may go. Everything that decides when a request
// stops by length, or how much KV memory it may ever need, asks these two functions
// (the finish rule below, the workers' Executor, the coordinator's Scheduler and
// admission, the in-process Engine).
//
// A request with an n_prompt-token prompt that has generated n_generated tokens holds
// n_prompt + n_generated tokens; its newest token sits at position
// n_prompt + n_generated - 1, and the next step computes that position to sample the
// token after it. It stops by length (FinishReason::kLength) as soon as
//   n_generated >= max_tokens                        (it has all it asked for), or
//   n_prompt + n_generated - 1 >= max_seq_len        (no step can compute the newest).
// A request that does not stop by length can always take one more step.
// REQUIRES: n_prompt >= 1, n_generated >= 0, max_tokens >= 1, max_seq_len >= 1.
bool StopsByLength(int n_prompt, int n_generated, int max_tokens, int max_seq_len);

// What the finish rule needs of the model: its context length and the ids that end a
// text (ModelSpec's fields of the same names).
struct ModelStops {
  int max_seq_len = 0;
  int bos_id = 1;
  int eos_id = 2;
};
ModelStops StopsOf(const ModelSpec& spec);

// The finish rule: what the token a request just sampled does to it, when it had
// generated n_generated tokens before. Workers (Sequence) and the coordinator
// (Scheduler::Apply, which checks the workers' reports against it) both ask this
// function, so they cannot disagree unless a worker is broken:
//   kStop   - `token` is EOS or BOS (unless stop.ignore_eos; llama2.c models start the
//             next document with BOS) or one of stop.stop_token_ids: the request ends
//             and the token is NOT output;
//   kLength - otherwise the token is output, and the request stops by length with it:
//             StopsByLength(n_prompt, n_generated + 1, ...);
//   kNone   - the token is output and the request goes on.
FinishReason FinishAfterSample(int token, const StopParams& stop, int n_prompt, int n_generated,
                               const ModelStops& model);

// The KV positions a request may ever occupy: every token it holds except the last
// one, which it never computes (it stops first), at the latest when it stops by length:
// min(prompt + max_tokens - 1, max_seq_len). A pool of fewer slots can never finish it.
int64_t MaxKvPositions(const RequestParams& request, int max_seq_len);
inline int64_t MaxKvPositions(const RequestParams& request, const ModelSpec& model) {
  return MaxKvPositions(request, model.max_seq_len);
}

}  // namespace flover
