#include "worker/engine/engine.h"

#include <omp.h>

#include <algorithm>

namespace flover {
namespace {

template <typename Container>
void Erase(Container& c, uint64_t id) {
  auto it = std::find(c.begin(), c.end(), id);
  if (it != c.end()) c.erase(it);
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Create(ModelWeights weights, const EngineConfig& config, ShardInfo shard,
                                               Communicator* comm) {
  FLOVER_RETURN_IF_ERROR(ValidateShard(weights, shard));
  FLOVER_RETURN_IF_ERROR(CheckCommunicator(comm, shard.rank, shard.world));
  if (config.max_step_tokens < 1)
    return InvalidArgument("max_step_tokens must be >= 1, got " + std::to_string(config.max_step_tokens));
  if (config.max_running < 1)
    return InvalidArgument("max_running must be >= 1, got " + std::to_string(config.max_running));
  // Never more blocks than max_running full-context sequences can use.
  KvCacheConfig kv_config = config.kv;
  const int64_t useful = static_cast<int64_t>(config.max_running) *
                         BlockAllocator::BlocksFor(weights.spec.max_seq_len, std::max(1, kv_config.block_size));
  if (kv_config.max_blocks <= 0 || kv_config.max_blocks > useful)
    kv_config.max_blocks = static_cast<int>(std::min<int64_t>(useful, 1 << 30));
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> kv, KvCache::Create(weights.spec, kv_config, shard.world));
  return std::unique_ptr<Engine>(new Engine(std::move(weights), std::move(kv), config, shard, comm));
}

Engine::Engine(ModelWeights weights, std::unique_ptr<KvCache> kv, const EngineConfig& config, ShardInfo shard,
               Communicator* comm)
    : config_(config),
      decoder_(std::move(weights), shard, comm),
      kv_(std::move(kv)),
      backend_(&decoder_, kv_.get()),
      executor_(&backend_),
      allocator_(kv_->n_blocks()) {}

Result<uint64_t> Engine::Add(RequestParams request) {
  FLOVER_RETURN_IF_ERROR(ValidateRequest(request, spec()));
  const int n_prompt = static_cast<int>(request.prompt.size());
  const int64_t max_positions = MaxKvPositions(request, spec());
  const int64_t capacity = static_cast<int64_t>(allocator_.n_blocks()) * kv_->block_size();
  if (max_positions > capacity)
    return ResourceExhausted("request needs up to " + std::to_string(max_positions) +
                             " KV slots (prompt " + std::to_string(n_prompt) + " + max_tokens " +
                             std::to_string(request.stop.max_tokens) + "), more than the whole KV cache holds (" +
                             std::to_string(capacity) + ")");
  const uint64_t id = next_id_++;
  FLOVER_RETURN_IF_ERROR(executor_.Join(id, std::move(request)));
  waiting_.push_back(id);
  return id;
}

Status Engine::Cancel(uint64_t request_id) {
  if (!executor_.Find(request_id))
    return NotFound("request " + std::to_string(request_id) + " is not running or queued");
  Release(request_id, executor_.Leave(request_id));
  pending_events_.push_back(EngineEvent{request_id, -1, FinishReason::kCancelled});
  return Status::Ok();
}

bool Engine::Reserve(Scheduled& s) {
  const Sequence& q = seq(s.id);
  const int have = static_cast<int>(q.block_table.size() + s.new_blocks.size());
  const int need = BlockAllocator::BlocksFor(q.n_computed + s.n_tokens, kv_->block_size()) - have;
  if (need <= 0) return true;
  std::optional<std::vector<int>> blocks = allocator_.Allocate(need);
  if (!blocks) return false;
  s.new_blocks.insert(s.new_blocks.end(), blocks->begin(), blocks->end());
  return true;
}

void Engine::Release(uint64_t id, std::vector<int> blocks) {
  Erase(running_, id);
  Erase(waiting_, id);
  auto it = std::find_if(scheduled_.begin(), scheduled_.end(), [id](const Scheduled& s) { return s.id == id; });
  if (it != scheduled_.end()) {
    blocks.insert(blocks.end(), it->new_blocks.begin(), it->new_blocks.end());
    scheduled_.erase(it);
  }
  allocator_.Free(blocks);
}

uint64_t Engine::PreemptYoungest(StepStats* stats) {
  const uint64_t victim = running_.back();
  Release(victim, executor_.Reset(victim));  // recomputed from prompt + generated tokens later
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), victim), victim);
  ++stats->n_preempted;
  return victim;
}

void Engine::Schedule(StepStats* stats) {
  scheduled_.clear();
  auto budget_left = [this] {
    int used = 0;
    for (const Scheduled& s : scheduled_) used += s.n_tokens;
    return config_.max_step_tokens - used;
  };

  // Running requests, oldest first: decodes, then the rest of partly prefilled prompts.
  // When blocks run out, the youngest running request yields (possibly this one).
  for (bool decode_pass : {true, false}) {
    const std::vector<uint64_t> snapshot = running_;
    for (uint64_t id : snapshot) {
      if (std::find(running_.begin(), running_.end(), id) == running_.end()) continue;  // preempted meanwhile
      if ((seq(id).n_uncomputed() == 1) != decode_pass) continue;
      const int budget = budget_left();
      if (budget <= 0) break;
      Scheduled s{id, std::min(seq(id).n_uncomputed(), budget), {}};
      bool preempted_self = false;
      while (!Reserve(s)) {
        if (PreemptYoungest(stats) == id) {
          allocator_.Free(s.new_blocks);
          preempted_self = true;
          break;
        }
      }
      if (!preempted_self) scheduled_.push_back(std::move(s));
    }
  }

  // Waiting requests join in arrival order while the budget and the KV pool allow.
  while (!waiting_.empty() && static_cast<int>(running_.size()) < config_.max_running) {
    const int budget = budget_left();
    if (budget <= 0) break;
    const uint64_t id = waiting_.front();
    Scheduled s{id, std::min(seq(id).n_uncomputed(), budget), {}};
    if (!Reserve(s)) break;  // wait for blocks; FCFS, no overtaking
    waiting_.pop_front();
    running_.insert(std::upper_bound(running_.begin(), running_.end(), id), id);
    scheduled_.push_back(std::move(s));
  }
}

Status Engine::Step(std::vector<EngineEvent>* events, StepStats* stats) {
  StepStats local;
  if (!stats) stats = &local;
  *stats = StepStats{};
  events->insert(events->end(), pending_events_.begin(), pending_events_.end());
  pending_events_.clear();

  Schedule(stats);
  if (scheduled_.empty()) return Status::Ok();

  entries_.clear();
  for (const Scheduled& s : scheduled_) {
    const Sequence& q = seq(s.id);
    entries_.push_back(ExecEntry{s.id, q.n_computed, s.n_tokens, s.new_blocks});
    ++stats->n_entries;
    stats->n_tokens += s.n_tokens;
    if (q.n_computed >= q.n_prompt && s.n_tokens == 1) {
      ++stats->n_decode;
    } else {
      stats->n_prefill_tokens += s.n_tokens;
    }
  }
  outputs_.clear();
  if (Status s = executor_.Run(entries_, &outputs_); !s.ok()) {
    for (Scheduled& sc : scheduled_) allocator_.Free(sc.new_blocks);  // nothing advanced
    scheduled_.clear();
    return s;
  }
  scheduled_.clear();  // the executor holds the new blocks now
  for (const ExecOutput& o : outputs_) {
    events->push_back(EngineEvent{o.request_id, o.token, o.finish});
    if (o.finish != FinishReason::kNone) Release(o.request_id, executor_.Leave(o.request_id));
  }
  return Status::Ok();
}

}  // namespace flover
