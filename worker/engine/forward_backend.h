// ForwardBackend: what the Executor needs from a device to run a fused step: one forward
// pass over the step's entries (or one pass per entry, for policy `instances`), then one
// sampled token per entry that completes its request's tokens. The CPU backend
// (cpu_backend.h) runs the Decoder over a host KvCache and samples on the host; the
// CUDA backend (worker/engine/cuda/) keeps weights, KV cache, logits and sampling on the
// GPU and returns only the tokens.
//
// Every rank of a tensor-parallel group calls Step with the same arguments, so their
// collectives stay matched and they sample the same tokens.
//
// Thread-safety: one thread drives a backend.
#pragma once

#include <cstdint>
#include <span>

#include "common/model_spec.h"
#include "common/request_params.h"
#include "common/status.h"
#include "worker/engine/decoder.h"

namespace flover {

// How to sample the token of one entry with want_logits.
struct SampleRow {
  const SamplingParams* params = nullptr;
  std::span<const int> history;  // prompt + generated tokens (the penalties)
  uint64_t draw_index = 0;       // tokens generated so far (the counter of the RNG; the
                                 // last draw_index tokens of history)
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;

  virtual const ModelSpec& spec() const = 0;  // the full model's shape
  virtual int kv_blocks() const = 0;          // blocks in the paged KV pool
  virtual int kv_block_size() const = 0;      // token slots per block

  // Runs `entries` in one fused pass (or, with separate_passes, one pass per entry in
  // order), then samples tokens[j] for the j-th entry with want_logits using rows[j],
  // with the CPU Sampler's semantics (sampler.h); logprobs[j] gets the token's
  // log-probabilities when rows[j].params->logprobs (and is untouched otherwise).
  // REQUIRES: rows.size() == tokens.size() == logprobs.size() == number of entries with
  // want_logits; the Decoder's REQUIRES on entries. Errors: the communicator's or the
  // device's; the KV slots of the step may then be half written (harmless: rewritten
  // on retry).
  virtual Status Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
                      std::span<int> tokens, std::span<TokenLogprobs> logprobs) = 0;
};

}  // namespace flover
