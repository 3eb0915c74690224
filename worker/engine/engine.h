// Engine: the in-process server. Owns a Decoder, a paged KvCache and an Executor (which
// holds every request's token state and runs fused steps), plus the scheduling half that
// the coordinator does in a cluster: a BlockAllocator, the running and waiting queues.
// It runs temporal fusion: each Step() is ONE forward
// pass over every running request (decode tokens first, then prefill chunks of joining
// requests under a per-step token budget). Requests join at the next step after Add()
// and leave the step they finish, freeing their KV blocks at once.
//
// When the KV pool runs out, the youngest running request is preempted: its blocks are
// freed and it is re-queued ahead of newer arrivals, to be recomputed later from prompt
// + generated tokens. Callers still see every token exactly once, in order.
//
// Tensor parallelism: an engine may run one rank's shard of the model (shard.h) with the
// group's Communicator. Every rank runs its own engine, fed the same Add/Cancel calls
// in the same order and stepped in lockstep; since all ranks compute the same full
// logits, they schedule, sample and finish identically, and every rank reports the same
// events.
//
// Thread-safety: not thread-safe; drive it from one thread. Step() parallelises
// internally (OpenMP).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/block_allocator.h"
#include "common/request_params.h"
#include "common/status.h"
#include "worker/engine/decoder.h"
#include "worker/engine/kv_cache.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/executor.h"

namespace flover {

struct EngineConfig {
  KvCacheConfig kv;
  int max_step_tokens = 512;  // tokens computed per step (decodes + prefill chunks)
  int max_running = 256;      // requests in the running batch
};

// One thing that happened to a request during a step: a generated token, its end, or
// both (the last token of a request that stops on length carries finish = kLength).
struct EngineEvent {
  uint64_t request_id = 0;
  int token = -1;                              // -1: no token in this event
  FinishReason finish = FinishReason::kNone;   // kNone: the request goes on
};

struct StepStats {
  int n_entries = 0;         // requests in the step
  int n_tokens = 0;          // tokens computed
  int n_decode = 0;          // entries computing one generated token
  int n_prefill_tokens = 0;  // prompt (or recomputed) tokens
  int n_preempted = 0;
};

class Engine {
 public:
  // Fails when the weights are inconsistent (ValidateShard), the KV budget holds no
  // block, or `comm` does not match `shard`. `weights` is the full model when
  // shard.world == 1 (comm may then be null), else rank shard.rank's shard
  // (ShardWeights) and comm the group's communicator with that rank and world size.
  // comm is not owned and must outlive the engine.
  static Result<std::unique_ptr<Engine>> Create(ModelWeights weights, const EngineConfig& config,
                                                ShardInfo shard = {}, Communicator* comm = nullptr);

  const ModelSpec& spec() const { return decoder_.spec(); }

  // Validates and queues a request; it joins the batch at the next Step(). Errors:
  // InvalidArgument (ValidateRequest), ResourceExhausted if prompt + max_tokens can never
  // fit in the whole KV pool.
  Result<uint64_t> Add(RequestParams request);

  // Removes a queued or running request and frees its blocks now; the next Step()
  // reports it with finish = kCancelled. NotFound if the id is unknown or finished.
  Status Cancel(uint64_t request_id);

  // Runs one fused step (if there is work) and appends what happened to `events`.
  // Fails only on communicator errors (tensor parallelism; Unavailable); the engine's
  // communicator is then broken and the group has to be rebuilt.
  Status Step(std::vector<EngineEvent>* events, StepStats* stats = nullptr);

  bool has_work() const { return !running_.empty() || !waiting_.empty() || !pending_events_.empty(); }
  int n_running() const { return static_cast<int>(running_.size()); }
  int n_waiting() const { return static_cast<int>(waiting_.size()); }
  int n_blocks() const { return allocator_.n_blocks(); }
  int n_free_blocks() const { return allocator_.n_free(); }
  int block_size() const { return kv_->block_size(); }

 private:
  struct Scheduled {
    uint64_t id;
    int n_tokens;
    std::vector<int> new_blocks;  // allocated this step, handed to the executor
  };

  Engine(ModelWeights weights, std::unique_ptr<KvCache> kv, const EngineConfig& config, ShardInfo shard,
         Communicator* comm);

  const Sequence& seq(uint64_t id) const { return *executor_.Find(id); }
  // Builds this step's batch into scheduled_; may preempt.
  void Schedule(StepStats* stats);
  // Allocates blocks so that `s` covers its request's next s.n_tokens tokens. False if
  // blocks ran out (nothing allocated).
  bool Reserve(Scheduled& s);
  // Preempts the youngest running request: frees its blocks (also those reserved this
  // step), re-queues it for recompute. Returns its id.
  uint64_t PreemptYoungest(StepStats* stats);
  // Drops `id` from the queues and this step's schedule; frees its blocks.
  void Release(uint64_t id, std::vector<int> blocks);

  // Constant after construction.
  EngineConfig config_;
  Decoder decoder_;
  std::unique_ptr<KvCache> kv_;
  CpuBackend backend_;
  Executor executor_;
  BlockAllocator allocator_;
  std::vector<uint64_t> running_;  // ascending arrival (= id)
  std::deque<uint64_t> waiting_;   // ascending arrival
  std::vector<EngineEvent> pending_events_;  // cancellations, reported at the next step
  uint64_t next_id_ = 1;

  // Per-step scratch.
  std::vector<Scheduled> scheduled_;
  std::vector<ExecEntry> entries_;
  std::vector<ExecOutput> outputs_;
};

}  // namespace flover
