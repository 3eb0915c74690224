#include "worker/engine/sequence.h"

namespace flover {

FinishReason Sequence::Append(int token, const ModelSpec& spec) {
  const FinishReason reason = FinishAfterSample(token, stop, n_prompt, n_generated(), StopsOf(spec));
  if (reason != FinishReason::kStop) tokens.push_back(token);
  return reason;
}

}  // namespace flover
