// The request fields /v1/completions and /v1/chat/completions share (model, sampling,
// stop strings, n, penalties, streaming), read into the SubmitRequests one request
// becomes: n per prompt, seeds seed, seed+1, ... when a seed is given (a fresh random
// seed per choice otherwise, so that choices differ).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/proto/flover.pb.h"
#include "coordinator/openai/choice_exchange.h"
#include "coordinator/openai/exchange.h"
#include "coordinator/openai/json_fields.h"

namespace flover::openai {

struct GenerationOptions {
  proto::SamplingParams sampling;  // everything but the seed
  std::optional<uint64_t> seed;
  proto::StopParams stop;          // max_tokens is the endpoint's to set
  int n = 1;
  bool stream = false;
  bool include_usage = false;      // stream_options.include_usage
};

// Checks `model` (404 model_not_found when it names another model than the served one)
// and reads: temperature (0..2, default 1), top_p (0 excluded..1), top_k (-1 or 0 = off),
// seed, stop (a string or up to 4; "" is none), n (1..max_n), presence_penalty and
// frequency_penalty (-2..2), repetition_penalty (> 0), ignore_eos, user (ignored),
// stream, stream_options (only with stream). Refuses logit_bias (not supported). Returns
// the first error, or nothing.
std::optional<ApiError> ReadGenerationOptions(FieldReader& fields, const ServedModel& model,
                                              GenerationOptions* options);

// Refuses field `name` unless it is absent, null, or `harmless` says it asks for nothing
// (e.g. an empty list): "<name> is not supported by this server" + `why`.
void RefuseUnsupported(FieldReader& fields, const std::string& name, const std::string& why,
                       bool (*harmless)(const nlohmann::json&));
bool IsEmptyValue(const nlohmann::json& value);  // "", [], {}

// The submits of `prompts` (each with only its prompt set), n each, prompt-major:
// index = prompt_index * n + i. 400 naming `n` when prompts * n is over model.max_n.
std::optional<ApiError> CheckChoiceCount(size_t n_prompts, int n, const ServedModel& model);
// What the options say of the exchange: stream, include_usage, the model's id and tokenizer.
ExchangeSetup ExchangeSetupOf(const GenerationOptions& options, const ServedModel& model);

std::vector<proto::SubmitRequest> ExpandSubmits(const std::vector<proto::SubmitRequest>& prompts,
                                                const GenerationOptions& options, const ServedModel& model);

}  // namespace flover::openai
