// Sequence: one request's token state inside an executor.
//
// Progress is one number, n_computed (tokens whose K/V are in the cache), that catches
// up with tokens.size(): a prefill chunk and a decode step are the same thing, "compute
// the next tokens". After a step that computes the last token, the sequence samples one
// more token and Append() decides whether it finishes.
//
// Thread-safety: none; owned by the engine's step loop.
#pragma once

#include <cstdint>
#include <vector>

#include "common/model_spec.h"
#include "common/request_params.h"

namespace flover {

struct Sequence {
  uint64_t id = 0;
  uint64_t arrival = 0;       // admission order; lower = older
  SamplingParams sampling;
  StopParams stop;
  std::vector<int> tokens;    // prompt + generated
  int n_prompt = 0;
  int n_computed = 0;         // tokens[0, n_computed) have K/V in the cache
  std::vector<int> block_table;
  FinishReason finish = FinishReason::kNone;

  int n_generated() const { return static_cast<int>(tokens.size()) - n_prompt; }
  int n_uncomputed() const { return static_cast<int>(tokens.size()) - n_computed; }

  // Takes the sampled `token`: returns kNone to go on, or why the sequence ends, by the
  // finish rule (FinishAfterSample, request_params.h). The token is appended in every
  // case but kStop.
  FinishReason Append(int token, const ModelSpec& spec);
};

}  // namespace flover
