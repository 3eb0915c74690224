// What a client asks for: sampling and stopping parameters of one request, with
// validation against the model. Shared by the in-process engine, the coordinator's
// admission and the client, so that every entry point rejects the same bad input with
// the same message.
#pragma once

#include <array>
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
  // OpenAI's penalties over the tokens GENERATED so far (not the prompt), after the
  // repetition penalty: logit[t] -= frequency_penalty * count(t) + presence_penalty *
  // (count(t) > 0). 0 = off; -2..2.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Return each sampled token's log-probability (TokenLogprobs) and the top_logprobs
  // (0..20) most likely tokens of its step. They are of the model's own distribution:
  // log_softmax of the raw logits, before temperature, penalties, top-k and top-p.
  bool logprobs = false;
  int top_logprobs = 0;

  bool greedy() const { return temperature == 0.0f; }
  bool penalises_generated() const { return presence_penalty != 0.0f || frequency_penalty != 0.0f; }
  // The token is the argmax of the raw logits: nothing else is needed of them.
  bool argmax_only() const {
    return greedy() && repetition_penalty == 1.0f && !penalises_generated() && !logprobs;
  }
};

inline constexpr float kMaxPenalty = 2.0f;  // presence/frequency_penalty in [-2, 2]
inline constexpr int kMaxTopLogprobs = 20;

// A token and its log-probability.
struct TokenLogprob {
  int token = -1;
  float logprob = 0.0f;

  bool operator==(const TokenLogprob&) const = default;
};

// One sampled token's log-probability and its step's most likely tokens (by logprob
// descending, ties by lower id).
struct TokenLogprobs {
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;

  bool operator==(const TokenLogprobs&) const = default;
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
// (0, 1], top_k < 0, repetition_penalty <= 0, presence_penalty or frequency_penalty
// outside [-2, 2], top_logprobs outside [0, 20] or > 0 without logprobs, stop ids
// outside the vocabulary.
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
  std::array<int, ModelSpec::kMaxExtraEosIds> extra_eos_ids{};  // the first n_extra_eos count
  int n_extra_eos = 0;

  // ModelStops with `extra` (ModelSpec::extra_eos_ids; REQUIRES: at most kMaxExtraEosIds).
  static ModelStops Of(int max_seq_len, int bos_id, int eos_id, const std::vector<int>& extra);
  bool IsEndOfText(int token) const;  // eos, bos or an extra eos id
};
ModelStops StopsOf(const ModelSpec& spec);

// The finish rule: what the token a request just sampled does to it, when it had
// generated n_generated tokens before. Workers (Sequence) and the coordinator
// (Scheduler::Apply, which checks the workers' reports against it) both ask this
// function, so they cannot disagree unless a worker is broken:
//   kStop   - `token` is EOS, an extra eos id, or BOS (unless stop.ignore_eos; llama2.c models start the
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
