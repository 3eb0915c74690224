#include "worker/engine/engine.h"

#include <string>
#include <thread>

namespace flover {
namespace {

SchedulerConfig SchedulerConfigFor(const ForwardBackend& backend, const EngineConfig& config) {
  SchedulerConfig s;
  s.n_blocks = backend.kv_blocks();
  s.block_size = backend.kv_block_size();
  s.max_step_tokens = config.max_step_tokens;
  s.max_running = config.max_running;
  s.max_seq_len = backend.spec().max_seq_len;
  s.bos_id = backend.spec().bos_id;
  s.eos_id = backend.spec().eos_id;
  s.extra_eos_ids = backend.spec().extra_eos_ids;
  s.pipeline_depth = config.pipeline_depth;
  s.policy = config.policy;
  s.batch_window = config.batch_window;
  s.max_batch = config.max_batch;
  return s;
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<ForwardBackend> backend, const EngineConfig& config) {
  FLOVER_CHECK(backend != nullptr);
  auto at_least = [](const char* name, int value, int min) {
    return value >= min ? Status::Ok()
                        : InvalidArgument(std::string(name) + " must be >= " + std::to_string(min) + ", got " +
                                          std::to_string(value));
  };
  FLOVER_RETURN_IF_ERROR(at_least("max_step_tokens", config.max_step_tokens, 1));
  FLOVER_RETURN_IF_ERROR(at_least("max_running", config.max_running, 1));
  FLOVER_RETURN_IF_ERROR(at_least("pipeline_depth", config.pipeline_depth, 1));
  FLOVER_RETURN_IF_ERROR(at_least("max_batch", config.max_batch, 1));
  if (config.batch_window < Clock::duration::zero()) return InvalidArgument("batch_window must be >= 0");
  return std::unique_ptr<Engine>(new Engine(std::move(backend), config));
}

Engine::Engine(std::unique_ptr<ForwardBackend> backend, const EngineConfig& config)
    : config_(config),
      backend_(std::move(backend)),
      executor_(backend_.get()),
      runner_(&executor_),
      scheduler_(SchedulerConfigFor(*backend_, config)) {}

Result<uint64_t> Engine::Add(RequestParams request) {
  FLOVER_RETURN_IF_ERROR(ValidateRequest(request, spec()));
  const int64_t max_positions = MaxKvPositions(request, spec());
  const int64_t capacity = static_cast<int64_t>(n_blocks()) * block_size();
  if (max_positions > capacity)
    return ResourceExhausted("request needs up to " + std::to_string(max_positions) + " KV slots (prompt " +
                             std::to_string(request.prompt.size()) + " + max_tokens " +
                             std::to_string(request.stop.max_tokens) + "), more than the whole KV cache holds (" +
                             std::to_string(capacity) + ")");
  const uint64_t id = next_id_++;
  scheduler_.Add(id, std::move(request), /*priority=*/0, Clock::now());
  return id;
}

Status Engine::Cancel(uint64_t request_id) {
  if (!scheduler_.Cancel(request_id))
    return NotFound("request " + std::to_string(request_id) + " is not running or queued");
  pending_events_.push_back(EngineEvent{request_id, -1, FinishReason::kCancelled, std::nullopt});
  return Status::Ok();
}

Status Engine::ApplyOldest(std::vector<EngineEvent>* events) {
  FLOVER_ASSIGN_OR_RETURN(AppliedStep applied, scheduler_.Apply(unapplied_.front()));
  unapplied_.pop_front();
  events->insert(events->end(), applied.events.begin(), applied.events.end());
  return Status::Ok();
}

Status Engine::Step(std::vector<EngineEvent>* events, StepStats* stats) {
  StepStats local;
  if (!stats) stats = &local;
  *stats = StepStats{};
  events->insert(events->end(), pending_events_.begin(), pending_events_.end());
  pending_events_.clear();
  // Every executed plan is in flight until applied, and one is applied as soon as
  // pipeline_depth are: a plan can always be scheduled here.
  FLOVER_CHECK(scheduler_.can_schedule()) << "in flight " << scheduler_.n_in_flight();

  std::optional<proto::StepPlan> plan = scheduler_.Schedule(Clock::now());
  if (!plan && unapplied_.empty()) {
    // Only a batch window (dynamic) can hold work back with nothing in flight.
    if (const std::optional<Clock::time_point> closes = scheduler_.batch_deadline()) {
      std::this_thread::sleep_until(*closes);
      plan = scheduler_.Schedule(Clock::now());
    }
  }
  if (!plan) return unapplied_.empty() ? Status::Ok() : ApplyOldest(events);

  for (const proto::PlanEntry& e : plan->entries()) {
    const SchedRequest* r = scheduler_.Find(e.request_id());
    ++stats->n_entries;
    stats->n_tokens += e.n_tokens();
    if (e.start_pos() >= r->n_prompt() && e.n_tokens() == 1) {
      ++stats->n_decode;
    } else {
      stats->n_prefill_tokens += e.n_tokens();
    }
  }
  stats->n_preempted = plan->resets_size();

  proto::StepResult result;
  FLOVER_RETURN_IF_ERROR(runner_.Run(*plan, &result));
  unapplied_.push_back(std::move(result));
  if (scheduler_.n_in_flight() >= config_.pipeline_depth) return ApplyOldest(events);
  return Status::Ok();
}

}  // namespace flover
