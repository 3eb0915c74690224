#include "common/request_params.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/check.h"

namespace flover {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

Status ValidateRequest(const RequestParams& request, const ModelSpec& spec) {
  const int n_prompt = static_cast<int>(request.prompt.size());
  if (n_prompt == 0) return InvalidArgument("prompt is empty");
  if (n_prompt > spec.max_seq_len)
    return InvalidArgument("prompt has " + std::to_string(n_prompt) + " tokens; this model allows " +
                           std::to_string(spec.max_seq_len));
  for (int i = 0; i < n_prompt; ++i) {
    const int id = request.prompt[i];
    if (id < 0 || id >= spec.vocab_size)
      return InvalidArgument("prompt token " + std::to_string(i) + " has id " + std::to_string(id) +
                             ", outside the vocabulary [0, " + std::to_string(spec.vocab_size) + ")");
  }
  const SamplingParams& s = request.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0.0f)
    return InvalidArgument("temperature must be a finite value >= 0, got " + std::to_string(s.temperature));
  if (s.top_k < 0) return InvalidArgument("top_k must be >= 0 (0 = off), got " + std::to_string(s.top_k));
  if (!std::isfinite(s.top_p) || s.top_p <= 0.0f || s.top_p > 1.0f)
    return InvalidArgument("top_p must be in (0, 1], got " + std::to_string(s.top_p));
  if (!std::isfinite(s.repetition_penalty) || s.repetition_penalty <= 0.0f)
    return InvalidArgument("repetition_penalty must be > 0, got " + std::to_string(s.repetition_penalty));
  for (const auto& [name, value] : {std::pair{"presence_penalty", s.presence_penalty},
                                    std::pair{"frequency_penalty", s.frequency_penalty}})
    if (!(value >= -kMaxPenalty && value <= kMaxPenalty))  // NaN fails too
      return InvalidArgument(std::string(name) + " must be in [-2, 2] (0 = off), got " + std::to_string(value));
  if (s.top_logprobs < 0 || s.top_logprobs > kMaxTopLogprobs)
    return InvalidArgument("top_logprobs must be in [0, " + std::to_string(kMaxTopLogprobs) + "], got " +
                           std::to_string(s.top_logprobs));
  if (s.top_logprobs > 0 && !s.logprobs)
    return InvalidArgument("top_logprobs = " + std::to_string(s.top_logprobs) + " needs logprobs = true");
  const StopParams& stop = request.stop;
  if (stop.max_tokens < 1) return InvalidArgument("max_tokens must be >= 1, got " + std::to_string(stop.max_tokens));
  for (int id : stop.stop_token_ids) {
    if (id < 0 || id >= spec.vocab_size)
      return InvalidArgument("stop token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(spec.vocab_size) + ")");
  }
  return Status::Ok();
}

bool StopsByLength(int n_prompt, int n_generated, int max_tokens, int max_seq_len) {
  return n_generated >= max_tokens || n_prompt + n_generated - 1 >= max_seq_len;
}

ModelStops ModelStops::Of(int max_seq_len, int bos_id, int eos_id, const std::vector<int>& extra) {
  FLOVER_CHECK(extra.size() <= ModelSpec::kMaxExtraEosIds) << extra.size() << " extra eos ids";
  ModelStops stops{.max_seq_len = max_seq_len, .bos_id = bos_id, .eos_id = eos_id};
  std::copy(extra.begin(), extra.end(), stops.extra_eos_ids.begin());
  stops.n_extra_eos = static_cast<int>(extra.size());
  return stops;
}

bool ModelStops::IsEndOfText(int token) const {
  if (token == eos_id || token == bos_id) return true;
  return std::find(extra_eos_ids.begin(), extra_eos_ids.begin() + n_extra_eos, token) !=
         extra_eos_ids.begin() + n_extra_eos;
}

ModelStops StopsOf(const ModelSpec& spec) {
  return ModelStops::Of(spec.max_seq_len, spec.bos_id, spec.eos_id, spec.extra_eos_ids);
}

FinishReason FinishAfterSample(int token, const StopParams& stop, int n_prompt, int n_generated,
                               const ModelStops& model) {
  const bool end_of_text = model.IsEndOfText(token);
  if ((end_of_text && !stop.ignore_eos) ||
      std::find(stop.stop_token_ids.begin(), stop.stop_token_ids.end(), token) != stop.stop_token_ids.end())
    return FinishReason::kStop;
  return StopsByLength(n_prompt, n_generated + 1, stop.max_tokens, model.max_seq_len) ? FinishReason::kLength
                                                                                      : FinishReason::kNone;
}

int64_t MaxKvPositions(const RequestParams& request, int max_seq_len) {
  const int64_t n_prompt = static_cast<int64_t>(request.prompt.size());
  return std::min<int64_t>(n_prompt + request.stop.max_tokens - 1, max_seq_len);
}

}  // namespace flover
