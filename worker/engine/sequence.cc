#include "worker/engine/sequence.h"

#include <algorithm>

namespace flover {

FinishReason Sequence::Append(int token, const ModelSpec& spec) {
  const bool end_of_text = token == spec.eos_id || token == spec.bos_id;
  if ((end_of_text && !stop.ignore_eos) ||
      std::find(stop.stop_token_ids.begin(), stop.stop_token_ids.end(), token) != stop.stop_token_ids.end()) {
    return FinishReason::kStop;
  }
  tokens.push_back(token);
  return StopsByLength(n_prompt, n_generated(), stop.max_tokens, spec.max_seq_len) ? FinishReason::kLength
                                                                                    : FinishReason::kNone;
}

}  // namespace flover
