#include "coordinator/scheduler.h"

#include <algorithm>
#include <string>
#include <unordered_map>

#include "common/protocol.h"

namespace flover {
namespace {

bool OlderThan(const SchedRequest* a, const SchedRequest* b) { return a->arrival < b->arrival; }

bool JoinsBefore(const SchedRequest* a, const SchedRequest* b) {
  return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
}

template <typename Container>
void Erase(Container& c, const SchedRequest* r) {
  auto it = std::find(c.begin(), c.end(), r);
  if (it != c.end()) c.erase(it);
}

}  // namespace

int SchedulerConfig::running_limit() const {
  switch (policy) {
    case SchedulerPolicy::kSequential: return 1;
    case SchedulerPolicy::kDynamic: return std::min(max_running, max_batch);
    case SchedulerPolicy::kFused:
    case SchedulerPolicy::kInstances: break;
  }
  return max_running;
}

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), running_limit_(config.running_limit()), allocator_(config.n_blocks) {
  FLOVER_CHECK(config.n_blocks >= 1) << "n_blocks=" << config.n_blocks;
  FLOVER_CHECK(config.block_size >= 1) << "block_size=" << config.block_size;
  FLOVER_CHECK(config.max_step_tokens >= 1) << "max_step_tokens=" << config.max_step_tokens;
  FLOVER_CHECK(config.max_running >= 1) << "max_running=" << config.max_running;
  FLOVER_CHECK(config.max_seq_len >= 1) << "max_seq_len=" << config.max_seq_len;
  FLOVER_CHECK(config.pipeline_depth >= 1) << "pipeline_depth=" << config.pipeline_depth;
  FLOVER_CHECK(config.batch_window >= Clock::duration::zero())
      << "batch_window=" << std::chrono::duration<double, std::milli>(config.batch_window).count() << " ms";
  FLOVER_CHECK(config.max_batch >= 1) << "max_batch=" << config.max_batch;
}

void Scheduler::UpdateSettings(const SchedulerConfig& config) {
  FLOVER_CHECK(config.replica == config_.replica && config.n_blocks == config_.n_blocks &&
               config.block_size == config_.block_size && config.max_seq_len == config_.max_seq_len)
      << "only the scheduling settings may change";
  FLOVER_CHECK(config.max_step_tokens >= 1 && config.max_running >= 1 && config.pipeline_depth >= 1 &&
               config.batch_window >= Clock::duration::zero() && config.max_batch >= 1)
      << "max_step_tokens=" << config.max_step_tokens << " max_running=" << config.max_running
      << " pipeline_depth=" << config.pipeline_depth << " max_batch=" << config.max_batch;
  const bool was_dynamic = config_.policy == SchedulerPolicy::kDynamic;
  const bool dynamic = config.policy == SchedulerPolicy::kDynamic;
  config_.max_step_tokens = config.max_step_tokens;
  config_.max_running = config.max_running;
  config_.pipeline_depth = config.pipeline_depth;
  config_.policy = config.policy;
  config_.batch_window = config.batch_window;
  config_.max_batch = config.max_batch;
  running_limit_ = config_.running_limit();
  if (was_dynamic == dynamic) return;
  for (auto& [id, r] : requests_) r->in_batch = false;
  n_batch_ = 0;
  if (!dynamic) return;
  for (SchedRequest* r : running_) r->in_batch = true;  // what runs is the current batch
  n_batch_ = n_running();
}

void Scheduler::Add(uint64_t id, RequestParams params, int priority, Clock::time_point arrived,
                    std::vector<int> generated) {
  FLOVER_CHECK(!requests_.contains(id)) << "request " << id << " added twice";
  FLOVER_CHECK(!StopsByLength(static_cast<int>(params.prompt.size()), static_cast<int>(generated.size()),
                              params.stop.max_tokens, config_.max_seq_len))
      << "request " << id << " has " << generated.size() << " generated tokens already";
  auto r = std::make_unique<SchedRequest>();
  r->id = id;
  r->arrival = next_arrival_++;
  r->arrived = arrived;
  r->priority = priority;
  r->params = std::move(params);
  r->generated = std::move(generated);
  InsertWaiting(r.get());
  requests_.emplace(id, std::move(r));
}

bool Scheduler::Cancel(uint64_t id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  SchedRequest* r = it->second.get();
  Forget(r);
  if (r->known) {
    leaves_.push_back(id);
    resets_.erase(std::remove(resets_.begin(), resets_.end(), id), resets_.end());
  }
  requests_.erase(it);
  return true;
}

const SchedRequest* Scheduler::Find(uint64_t id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

int Scheduler::Schedulable(const SchedRequest& r) const {
  const int left = r.n_tokens() - r.n_computed;
  if (left <= 0) return 0;
  if (r.n_pending > 0) {
    // The pending sample may end the request: wait for its result.
    const int n_generated = static_cast<int>(r.generated.size()) + r.n_pending;
    if (StopsByLength(r.n_prompt(), n_generated, r.params.stop.max_tokens, config_.max_seq_len)) return 0;
  }
  return left;
}

bool Scheduler::Reserve(SchedRequest* r, int n_tokens) {
  const int need = BlockAllocator::BlocksFor(n_tokens, config_.block_size) - static_cast<int>(r->block_table.size());
  if (need <= 0) return true;
  std::optional<std::vector<int>> blocks = allocator_.Allocate(need);
  if (!blocks) return false;
  r->block_table.insert(r->block_table.end(), blocks->begin(), blocks->end());
  return true;
}

void Scheduler::Release(SchedRequest* r) {
  allocator_.Free(r->block_table);
  r->block_table.clear();
  Erase(running_, r);
  Erase(waiting_, r);
}

void Scheduler::Forget(SchedRequest* r) {
  Release(r);
  if (r->in_batch) {
    r->in_batch = false;
    --n_batch_;
  }
}

void Scheduler::InsertWaiting(SchedRequest* r) {
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), r, JoinsBefore), r);
}

int Scheduler::Preempt(SchedRequest* victim, std::vector<Pick>* picks) {
  Release(victim);
  int freed_tokens = 0;
  for (const Pick& p : *picks)
    if (p.request == victim) freed_tokens += p.n_tokens;
  picks->erase(std::remove_if(picks->begin(), picks->end(), [victim](const Pick& p) { return p.request == victim; }),
               picks->end());
  victim->n_computed = 0;
  InsertWaiting(victim);
  if (victim->known) resets_.push_back(victim->id);
  return freed_tokens;
}

std::optional<Clock::time_point> Scheduler::batch_deadline() const {
  if (config_.policy != SchedulerPolicy::kDynamic || n_batch_ > 0 || waiting_.empty()) return std::nullopt;
  const SchedRequest* oldest = *std::min_element(waiting_.begin(), waiting_.end(),
                                                 [](const SchedRequest* a, const SchedRequest* b) {
                                                   return a->arrived < b->arrived;
                                                 });
  // A full batch waits no longer.
  if (n_waiting() >= running_limit_) return oldest->arrived;
  return oldest->arrived + config_.batch_window;
}

void Scheduler::FormBatch(Clock::time_point now) {
  FLOVER_CHECK(n_batch_ == 0) << "a batch of " << n_batch_ << " runs";
  const std::optional<Clock::time_point> closes = batch_deadline();
  if (!closes || now < *closes) return;
  int n_free = allocator_.n_free();
  for (SchedRequest* r : waiting_) {
    if (n_batch_ == running_limit_) break;
    const int need = BlockAllocator::BlocksFor(r->n_tokens(), config_.block_size);
    if (n_batch_ > 0 && need > n_free) break;  // in join order: no overtaking
    n_free -= need;
    r->in_batch = true;
    ++n_batch_;
  }
}

std::optional<proto::StepPlan> Scheduler::Schedule(Clock::time_point now) {
  FLOVER_CHECK(can_schedule()) << "plans in flight=" << in_flight_.size();
  const bool dynamic = config_.policy == SchedulerPolicy::kDynamic;
  if (dynamic && n_batch_ == 0) FormBatch(now);
  std::vector<Pick> picks;
  int used = 0;  // tokens picked so far (kept, not recounted: this runs for every request)

  // Running requests, oldest first: decodes, then the rest of partly computed prompts.
  // Preemption always takes running_.back(), and nothing joins running_ in these
  // passes, so running_ stays a prefix of the snapshot: index >= size means preempted.
  for (const bool decode_pass : {true, false}) {
    const std::vector<SchedRequest*> snapshot = running_;
    for (size_t i = 0; i < snapshot.size() && i < running_.size(); ++i) {
      SchedRequest* r = snapshot[i];
      const int left = Schedulable(*r);
      if (left == 0 || (left == 1) != decode_pass) continue;
      const int budget = config_.max_step_tokens - used;
      if (budget <= 0) break;
      const int n = std::min(left, budget);
      const size_t first_new = r->block_table.size();
      bool preempted_self = false;
      while (!Reserve(r, r->n_computed + n)) {
        // The youngest yields; when that is r itself, r waits for blocks.
        SchedRequest* victim = running_.back();
        used -= Preempt(victim, &picks);
        if (victim == r) {
          preempted_self = true;
          break;
        }
      }
      if (!preempted_self) {
        picks.push_back({r, n, first_new, false});
        used += n;
      }
    }
  }

  // Waiting requests join in order while the running limit, the budget and the pool
  // allow. Under dynamic only members of the current batch may join.
  for (auto it = waiting_.begin(); it != waiting_.end() && n_running() < running_limit_;) {
    SchedRequest* r = *it;
    if (dynamic && !r->in_batch) {  // waits for the next batch
      ++it;
      continue;
    }
    const int budget = config_.max_step_tokens - used;
    if (budget <= 0) break;
    const int left = Schedulable(*r);
    if (left == 0) break;  // its pending sample may finish it; no overtaking meanwhile
    const int n = std::min(left, budget);
    const size_t first_new = r->block_table.size();
    if (!Reserve(r, r->n_computed + n)) break;  // wait for blocks; FCFS, no overtaking
    it = waiting_.erase(it);
    running_.insert(std::upper_bound(running_.begin(), running_.end(), r, OlderThan), r);
    picks.push_back({r, n, first_new, !r->known});
    used += n;
  }

  if (picks.empty()) return std::nullopt;

  proto::StepPlan plan;
  plan.set_replica(config_.replica);
  plan.set_seq(++last_seq_);
  plan.set_separate_passes(config_.policy == SchedulerPolicy::kInstances);
  for (uint64_t id : leaves_) plan.add_leaves(id);
  for (uint64_t id : resets_) plan.add_resets(id);
  leaves_.clear();
  resets_.clear();
  int n_step_tokens = 0;
  InFlightPlan& in_flight = in_flight_.emplace_back(InFlightPlan{plan.seq(), 0, {}});
  for (const Pick& p : picks) {
    SchedRequest* r = p.request;
    if (p.join) {
      proto::JoinRequest* join = plan.add_joins();
      join->set_request_id(r->id);
      join->mutable_prompt()->Add(r->params.prompt.begin(), r->params.prompt.end());
      *join->mutable_sampling() = ToProto(r->params.sampling);
      *join->mutable_stop() = ToProto(r->params.stop);
      join->mutable_generated()->Add(r->generated.begin(), r->generated.end());
      r->known = true;
    }
    proto::PlanEntry* entry = plan.add_entries();
    entry->set_request_id(r->id);
    entry->set_start_pos(r->n_computed);
    entry->set_n_tokens(p.n_tokens);
    for (size_t i = p.first_new_block; i < r->block_table.size(); ++i) entry->add_new_blocks(r->block_table[i]);
    r->n_computed += p.n_tokens;
    const bool samples = r->n_computed == r->n_tokens();
    if (samples) ++r->n_pending;
    in_flight.entries.emplace_back(r->id, samples);
    n_step_tokens += p.n_tokens;
  }
  in_flight.n_tokens = n_step_tokens;
  return plan;
}

Status Scheduler::Check(const proto::StepResult& result) const {
  const std::string step = "step " + std::to_string(result.seq());
  if (in_flight_.empty()) return InvalidArgument("the result of " + step + " arrived with no plan in flight");
  const InFlightPlan& plan = in_flight_.front();
  if (result.seq() != plan.seq)
    return InvalidArgument("the result of " + step + " arrived; expected the result of step " +
                           std::to_string(plan.seq));
  // An honest answer has at most one output per entry (none for a stale one).
  if (result.outputs_size() > static_cast<int>(plan.entries.size()))
    return InvalidArgument(step + " has " + std::to_string(result.outputs_size()) + " outputs for " +
                           std::to_string(plan.entries.size()) + " entries");
  // Each entry of the plan: whether it reaches a sample, and whether an output answered
  // it. A map, so that a step of n requests costs O(n), not O(n^2).
  struct Answer {
    bool samples = false;
    bool answered = false;
  };
  std::unordered_map<uint64_t, Answer> answers;
  answers.reserve(plan.entries.size());
  for (const auto& [id, samples] : plan.entries) answers.emplace(id, Answer{.samples = samples});
  for (const proto::TokenOutput& out : result.outputs()) {
    const uint64_t id = out.request_id();
    const std::string who = step + ": request " + std::to_string(id);
    const auto entry = answers.find(id);
    if (entry == answers.end()) return InvalidArgument(who + " has an output but is not in the plan");
    const auto it = requests_.find(id);
    if (it == requests_.end()) continue;  // stale: cancelled or finished meanwhile
    if (!entry->second.samples) return InvalidArgument(who + " has an output, but its entry does not reach a sample");
    if (entry->second.answered) return InvalidArgument(who + " has two outputs");
    entry->second.answered = true;
    const SchedRequest& r = *it->second;
    const FinishReason finish = FinishAfterSample(out.token(), r.params.stop, r.n_prompt(),
                                                  static_cast<int>(r.generated.size()), config_.stops());
    if (out.finish() != ToProto(finish))
      return InvalidArgument(who + " sampled token " + std::to_string(out.token()) + " after " +
                             std::to_string(r.generated.size()) + " generated token(s) and was reported finished '" +
                             proto::FinishReason_Name(out.finish()) + "'; by its stop conditions it is '" +
                             FinishReasonName(finish) + "'");
    const int asked = r.params.sampling.logprobs ? r.params.sampling.top_logprobs : 0;
    if (out.top_logprobs_size() > asked)
      return InvalidArgument(who + " has " + std::to_string(out.top_logprobs_size()) + " top log-probabilities; it asked for " +
                             std::to_string(asked));
  }
  for (const auto& [id, samples] : plan.entries)
    if (samples && !answers.at(id).answered && requests_.contains(id))
      return InvalidArgument(step + ": request " + std::to_string(id) + " sampled in it but has no output");
  return Status::Ok();
}

Result<AppliedStep> Scheduler::Apply(const proto::StepResult& result) {
  FLOVER_RETURN_IF_ERROR(Check(result));
  AppliedStep applied;
  applied.seq = result.seq();
  applied.n_step_tokens = in_flight_.front().n_tokens;
  in_flight_.pop_front();
  for (const proto::TokenOutput& out : result.outputs()) {
    auto it = requests_.find(out.request_id());
    if (it == requests_.end()) {
      ++applied.n_stale;
      continue;
    }
    SchedRequest* r = it->second.get();
    if (r->n_pending > 0) --r->n_pending;
    const FinishReason finish = FromProto(out.finish());  // the rule's (Check)
    const int token = finish == FinishReason::kStop ? -1 : out.token();
    if (token >= 0) {
      r->generated.push_back(token);
      ++applied.n_generated;
    }
    RequestEvent& event = applied.events.emplace_back(RequestEvent{r->id, token, finish, std::nullopt});
    if (r->params.sampling.logprobs) event.logprobs = LogprobsOf(out);
    if (finish != FinishReason::kNone) {
      Forget(r);
      requests_.erase(it);
    }
  }
  return applied;
}

std::vector<TakenRequest> Scheduler::TakeAll() {
  std::vector<SchedRequest*> all(running_.begin(), running_.end());
  all.insert(all.end(), waiting_.begin(), waiting_.end());
  std::sort(all.begin(), all.end(), OlderThan);
  std::vector<TakenRequest> taken;
  taken.reserve(all.size());
  for (SchedRequest* r : all) {
    Release(r);
    taken.push_back(TakenRequest{r->id, std::move(r->params), std::move(r->generated)});
  }
  requests_.clear();
  n_batch_ = 0;
  leaves_.clear();
  resets_.clear();
  in_flight_.clear();
  return taken;
}

}  // namespace flover
