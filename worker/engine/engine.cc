#include "worker/engine/engine.h"

#include <omp.h>

#include <algorithm>

namespace flover {
namespace {

// Inserts seq keeping the container sorted by ascending arrival.
template <typename Container>
void InsertByArrival(Container& c, Sequence* seq) {
  auto it = std::upper_bound(c.begin(), c.end(), seq,
                             [](const Sequence* a, const Sequence* b) { return a->arrival < b->arrival; });
  c.insert(it, seq);
}

template <typename Container>
void Erase(Container& c, const Sequence* seq) {
  auto it = std::find(c.begin(), c.end(), seq);
  if (it != c.end()) c.erase(it);
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Create(ModelWeights weights, const EngineConfig& config, ShardInfo shard,
                                               Communicator* comm) {
  FLOVER_RETURN_IF_ERROR(ValidateShard(weights, shard));
  if (shard.world > 1 && comm == nullptr)
    return InvalidArgument("tensor parallel size " + std::to_string(shard.world) + " needs a communicator");
  if (comm && (comm->rank() != shard.rank || comm->world_size() != shard.world))
    return InvalidArgument("communicator is rank " + std::to_string(comm->rank()) + " of " +
                           std::to_string(comm->world_size()) + ", the shard is rank " + std::to_string(shard.rank) +
                           " of " + std::to_string(shard.world));
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
      allocator_(kv_->n_blocks()),
      samplers_(std::max(1, omp_get_max_threads())) {}

Result<uint64_t> Engine::Add(RequestParams request) {
  FLOVER_RETURN_IF_ERROR(ValidateRequest(request, spec()));
  const int n_prompt = static_cast<int>(request.prompt.size());
  // Positions ever computed: the prompt and all generated tokens but the last.
  const int64_t max_positions =
      std::min<int64_t>(static_cast<int64_t>(n_prompt) + request.stop.max_tokens - 1, spec().max_seq_len);
  const int64_t capacity = static_cast<int64_t>(allocator_.n_blocks()) * kv_->block_size();
  if (max_positions > capacity)
    return ResourceExhausted("request needs up to " + std::to_string(max_positions) +
                             " KV slots (prompt " + std::to_string(n_prompt) + " + max_tokens " +
                             std::to_string(request.stop.max_tokens) + "), more than the whole KV cache holds (" +
                             std::to_string(capacity) + ")");
  auto seq = std::make_unique<Sequence>();
  seq->id = next_id_++;
  seq->arrival = seq->id;
  seq->sampling = request.sampling;
  seq->stop = std::move(request.stop);
  seq->tokens = std::move(request.prompt);
  seq->n_prompt = n_prompt;
  waiting_.push_back(seq.get());
  const uint64_t id = seq->id;
  sequences_.emplace(id, std::move(seq));
  return id;
}

Status Engine::Cancel(uint64_t request_id) {
  auto it = sequences_.find(request_id);
  if (it == sequences_.end()) return NotFound("request " + std::to_string(request_id) + " is not running or queued");
  Release(it->second.get());
  sequences_.erase(it);
  pending_events_.push_back(EngineEvent{request_id, -1, FinishReason::kCancelled});
  return Status::Ok();
}

bool Engine::Reserve(Sequence* seq, int n_tokens) {
  const int need = BlockAllocator::BlocksFor(n_tokens, kv_->block_size()) - static_cast<int>(seq->block_table.size());
  if (need <= 0) return true;
  std::optional<std::vector<int>> blocks = allocator_.Allocate(need);
  if (!blocks) return false;
  seq->block_table.insert(seq->block_table.end(), blocks->begin(), blocks->end());
  return true;
}

void Engine::Release(Sequence* seq) {
  allocator_.Free(seq->block_table);
  seq->block_table.clear();
  Erase(running_, seq);
  Erase(waiting_, seq);
  auto it = std::find_if(scheduled_.begin(), scheduled_.end(), [seq](const Scheduled& s) { return s.seq == seq; });
  if (it != scheduled_.end()) scheduled_.erase(it);
}

bool Engine::PreemptYoungest(const Sequence* keep, StepStats* stats) {
  if (running_.empty()) return false;
  Sequence* victim = running_.back();  // youngest
  if (victim == keep && running_.size() == 1) return false;
  Release(victim);
  victim->n_computed = 0;  // recomputed from prompt + generated tokens when re-admitted
  InsertByArrival(waiting_, victim);
  if (stats) ++stats->n_preempted;
  return true;
}

void Engine::Schedule(StepStats* stats) {
  scheduled_.clear();
  int budget = config_.max_step_tokens;
  auto used = [this] {
    int n = 0;
    for (const Scheduled& s : scheduled_) n += s.n_tokens;
    return n;
  };

  // Running requests, oldest first: decodes, then the rest of partly prefilled prompts.
  for (bool decode_pass : {true, false}) {
    const std::vector<Sequence*> snapshot = running_;
    for (Sequence* seq : snapshot) {
      if (std::find(running_.begin(), running_.end(), seq) == running_.end()) continue;  // preempted meanwhile
      if ((seq->n_uncomputed() == 1) != decode_pass) continue;
      budget = config_.max_step_tokens - used();
      if (budget <= 0) break;
      const int n = std::min(seq->n_uncomputed(), budget);
      bool preempted_self = false;
      while (!Reserve(seq, seq->n_computed + n)) {
        if (running_.back() == seq) {  // seq is the youngest: it yields, not an older one
          preempted_self = PreemptYoungest(nullptr, stats);
          break;
        }
        PreemptYoungest(seq, stats);
      }
      if (!preempted_self) scheduled_.push_back({seq, n});
    }
  }

  // Waiting requests join in arrival order while the budget and the KV pool allow.
  while (!waiting_.empty() && static_cast<int>(running_.size()) < config_.max_running) {
    budget = config_.max_step_tokens - used();
    if (budget <= 0) break;
    Sequence* seq = waiting_.front();
    const int n = std::min(seq->n_uncomputed(), budget);
    if (!Reserve(seq, seq->n_computed + n)) break;  // wait for blocks; FCFS, no overtaking
    waiting_.pop_front();
    InsertByArrival(running_, seq);
    scheduled_.push_back({seq, n});
  }
}

void Engine::Finish(Sequence* seq, FinishReason reason) {
  seq->finish = reason;
  Release(seq);
  sequences_.erase(seq->id);
}

void Engine::Step(std::vector<EngineEvent>* events, StepStats* stats) {
  const Status s = RunStep(events, stats);
  FLOVER_CHECK(s.ok()) << s.ToString();
}

Status Engine::RunStep(std::vector<EngineEvent>* events, StepStats* stats) {
  StepStats local;
  if (!stats) stats = &local;
  *stats = StepStats{};
  events->insert(events->end(), pending_events_.begin(), pending_events_.end());
  pending_events_.clear();

  Schedule(stats);
  if (scheduled_.empty()) return Status::Ok();

  entries_.clear();
  sampled_.clear();
  for (const Scheduled& s : scheduled_) {
    Sequence* seq = s.seq;
    const bool last_chunk = seq->n_computed + s.n_tokens == static_cast<int>(seq->tokens.size());
    entries_.push_back(StepEntry{seq->tokens.data() + seq->n_computed, s.n_tokens, seq->n_computed,
                                 seq->block_table.data(), last_chunk});
    if (last_chunk) sampled_.push_back(seq);
    ++stats->n_entries;
    stats->n_tokens += s.n_tokens;
    if (seq->n_computed >= seq->n_prompt && s.n_tokens == 1) {
      ++stats->n_decode;
    } else {
      stats->n_prefill_tokens += s.n_tokens;
    }
  }

  const int vocab = spec().vocab_size;
  const int n_logits = static_cast<int>(sampled_.size());
  if (logits_.size() < static_cast<size_t>(n_logits) * vocab) logits_.resize(static_cast<size_t>(n_logits) * vocab);
  FLOVER_RETURN_IF_ERROR(decoder_.Forward(entries_, *kv_, logits_.data()));
  for (const Scheduled& s : scheduled_) s.seq->n_computed += s.n_tokens;

  next_tokens_.resize(n_logits);
#pragma omp parallel for schedule(dynamic, 1) if (n_logits > 1)
  for (int j = 0; j < n_logits; ++j) {
    Sequence* seq = sampled_[j];
    next_tokens_[j] = samplers_[omp_get_thread_num()].Sample(
        std::span<float>(logits_.data() + static_cast<size_t>(j) * vocab, vocab), seq->sampling, seq->tokens,
        static_cast<uint64_t>(seq->n_generated()));
  }

  for (int j = 0; j < n_logits; ++j) {
    Sequence* seq = sampled_[j];
    const FinishReason reason = seq->Append(next_tokens_[j], spec());
    events->push_back(EngineEvent{seq->id, reason == FinishReason::kStop ? -1 : next_tokens_[j], reason});
    if (reason != FinishReason::kNone) Finish(seq, reason);
  }
  return Status::Ok();
}

}  // namespace flover
