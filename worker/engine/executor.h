// Executor: the execution half of a fused step, shared by the in-process Engine and the
// worker daemon. It holds every request's token state (a Sequence: tokens, KV progress,
// block table, sampling and stop parameters) and runs what it is told: "compute n tokens
// of request r from position p, with these blocks appended to its table", for many
// requests in ONE forward pass (or, for policy `instances`, one pass per request), then
// samples and applies stop conditions for each request whose tokens are all computed.
//
// Which tokens and which blocks is decided outside, by the Scheduler's step plans (the
// coordinator's, or the in-process Engine's), which PlanRunner turns into calls here, so
// every rank of a tensor-parallel group executing the same entries stays identical. Entries for requests the executor does not hold are skipped
// (stale entries of pipelined plans). A request that finishes stays until Leave().
//
// Thread-safety: not thread-safe; one thread drives it. Run() parallelises internally.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/request_params.h"
#include "common/status.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/sequence.h"

namespace flover {

struct ExecEntry {
  uint64_t request_id = 0;
  int start_pos = 0;              // must equal the request's progress (n_computed)
  int n_tokens = 0;               // >= 1, within the request's uncomputed tokens
  std::span<const int> new_blocks;  // appended to the block table before the step
};

struct ExecOutput {
  uint64_t request_id = 0;
  int token = -1;                              // sampled (kStop: the stop token, not output)
  FinishReason finish = FinishReason::kNone;
  std::optional<TokenLogprobs> logprobs;       // when the request asked (sampling.logprobs)
};

class Executor {
 public:
  // `backend` (the device: CPU or CUDA) must outlive the executor.
  explicit Executor(ForwardBackend* backend);

  const ModelSpec& spec() const { return backend_->spec(); }

  // Takes a new request. InvalidArgument if the id is already held or the request is
  // invalid for this model (ValidateRequest). `generated`: tokens it already generated
  // on another replica (JoinRequest.generated); they count as generated (max_tokens,
  // repetition penalty, the RNG's draw counter) and are recomputed with the prompt.
  // InvalidArgument if one is outside the vocabulary, or if they leave no token to
  // generate (max_tokens reached, context full).
  Status Join(uint64_t request_id, RequestParams request, std::span<const int> generated = {});
  // Drops a request and returns its block table (for the caller's allocator). Unknown
  // ids return an empty table.
  std::vector<int> Leave(uint64_t request_id);
  // Preemption: forgets the KV progress and returns the block table; the tokens stay,
  // to be recomputed from position 0.
  std::vector<int> Reset(uint64_t request_id);

  const Sequence* Find(uint64_t request_id) const;
  int n_requests() const { return static_cast<int>(sequences_.size()); }

  // One fused step over `entries`. Appends one output per entry that completed its
  // request's tokens (a sampled token and/or a finish). InvalidArgument (and nothing
  // run) for an entry that does not fit its request: start_pos != progress, n_tokens
  // beyond the uncomputed tokens, block ids outside the pool, a table that does not
  // cover the positions, a request listed twice. Communicator failures: Unavailable.
  // With `separate_passes` (StepPlan.separate_passes, policy `instances`) each entry
  // runs in its own forward pass, in entry order, instead of one pass for all; the
  // validation, sampling, outputs and errors are the same, and so are the tokens (the
  // forward pass is batch-invariant). Every rank of a tensor-parallel group must pass
  // the same value, so that their collectives stay matched.
  Status Run(std::span<const ExecEntry> entries, std::vector<ExecOutput>* outputs, bool separate_passes = false);

 private:
  Status Check(const ExecEntry& e, const Sequence& seq) const;

  ForwardBackend* backend_;
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> sequences_;

  // Per-step scratch, reused.
  std::vector<Sequence*> stepping_;   // per entry (nullptr = stale)
  std::vector<StepEntry> entries_;
  std::vector<Sequence*> sampled_;
  std::vector<SampleRow> rows_;
  std::vector<int> next_tokens_;
  std::vector<TokenLogprobs> next_logprobs_;
};

}  // namespace flover
