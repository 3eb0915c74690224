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
  if (n_generated() >= stop.max_tokens) return FinishReason::kLength;
  // The newest token sits at position tokens.size() - 1; computing it needs that position.
  if (static_cast<int>(tokens.size()) - 1 >= spec.max_seq_len) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace flover
