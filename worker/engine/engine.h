// Engine: the in-process executor. Owns a Decoder, a paged KvCache, a BlockAllocator
// and the state of every request, and runs temporal fusion: each Step() is ONE forward
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
#include "worker/engine/sampler.h"
#include "worker/engine/sequence.h"

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
  // Fails only on communicator errors (tensor parallelism; Unavailable). The step then
  // has not advanced any request (cancellations already appended to `events` stand), so
  // the engine stays consistent, but its communicator is broken: the group has to be
  // rebuilt.
  Status RunStep(std::vector<EngineEvent>* events, StepStats* stats = nullptr);

  // RunStep for callers without a communicator that can fail (one rank, or
  // LocalCommunicator): aborts through FLOVER_CHECK if the step fails.
  void Step(std::vector<EngineEvent>* events, StepStats* stats = nullptr);

  bool has_work() const { return !running_.empty() || !waiting_.empty() || !pending_events_.empty(); }
  int n_running() const { return static_cast<int>(running_.size()); }
  int n_waiting() const { return static_cast<int>(waiting_.size()); }
  int n_blocks() const { return allocator_.n_blocks(); }
  int n_free_blocks() const { return allocator_.n_free(); }
  int block_size() const { return kv_->block_size(); }

 private:
  struct Scheduled {
    Sequence* seq;
    int n_tokens;
  };

  Engine(ModelWeights weights, std::unique_ptr<KvCache> kv, const EngineConfig& config, ShardInfo shard,
         Communicator* comm);

  // Builds this step's batch into scheduled_; may preempt.
  void Schedule(StepStats* stats);
  // Grows seq's block table to hold n_tokens tokens. False if blocks ran out.
  bool Reserve(Sequence* seq, int n_tokens);
  // Frees the youngest running sequence other than `keep` and re-queues it. False if none.
  bool PreemptYoungest(const Sequence* keep, StepStats* stats);
  void Release(Sequence* seq);  // frees blocks, drops from running_/waiting_/scheduled_
  void Finish(Sequence* seq, FinishReason reason);

  // Constant after construction.
  EngineConfig config_;
  Decoder decoder_;
  std::unique_ptr<KvCache> kv_;

  BlockAllocator allocator_;
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> sequences_;
  std::vector<Sequence*> running_;  // ascending arrival
  std::deque<Sequence*> waiting_;   // ascending arrival
  std::vector<EngineEvent> pending_events_;  // cancellations, reported at the next step
  uint64_t next_id_ = 1;

  // Per-step scratch.
  std::vector<Scheduled> scheduled_;
  std::vector<StepEntry> entries_;
  std::vector<float> logits_;           // [n_logits, vocab]
  std::vector<Sequence*> sampled_;      // sequences whose logits are in logits_, in order
  std::vector<int> next_tokens_;
  std::vector<Sampler> samplers_;       // one per OpenMP thread
};

}  // namespace flover
