#include "coordinator/replica.h"

#include <algorithm>

namespace flover {

const char* WorkerStateName(WorkerState state) {
  switch (state) {
    case WorkerState::kAbsent: return "absent";
    case WorkerState::kRegistered: return "registered";
    case WorkerState::kReady: return "ready";
    case WorkerState::kDead: return "dead";
  }
  return "unknown";
}

// ---------------------------------------------------------------- StepRate

void StepRate::Add(Clock::time_point done, int n_generated) {
  if (!since_) since_ = done;
  steps_.push_back({done, n_generated});
  Trim(done);
}

void StepRate::Trim(Clock::time_point now) const {
  while (!steps_.empty() && steps_.front().done < now - window_) steps_.pop_front();
}

double StepRate::Span(Clock::time_point now) const {
  if (!since_) return 0.0;
  const Clock::duration span = std::min(window_, now - *since_);
  return std::chrono::duration<double>(span).count();
}

double StepRate::steps_per_second(Clock::time_point now) const {
  Trim(now);
  const double span = Span(now);
  return span > 0.0 ? static_cast<double>(steps_.size()) / span : 0.0;
}

double StepRate::tokens_per_second(Clock::time_point now) const {
  Trim(now);
  const double span = Span(now);
  int64_t n = 0;
  for (const Step& s : steps_) n += s.n_generated;
  return span > 0.0 ? static_cast<double>(n) / span : 0.0;
}

// ---------------------------------------------------------------- Replica

const char* Replica::StateName(State state) {
  switch (state) {
    case State::kStarting: return "starting";
    case State::kReady: return "ready";
    case State::kUnhealthy: return "unhealthy";
  }
  return "unknown";
}

Replica::Replica(int index, int tensor_parallel) : index_(index), workers_(tensor_parallel) {
  for (int rank = 0; rank < tensor_parallel; ++rank) {
    workers_[rank].replica = index;
    workers_[rank].rank = rank;
  }
}

bool Replica::all_ready() const {
  return std::all_of(workers_.begin(), workers_.end(),
                     [](const WorkerSlot& w) { return w.state == WorkerState::kReady; });
}

void Replica::MakeReady(const SchedulerConfig& config, const proto::ModelInfo& model) {
  FLOVER_CHECK(state_ == State::kStarting) << "replica " << index_ << " state " << StateName(state_);
  state_ = State::kReady;
  error_.clear();
  scheduler_ = std::make_unique<Scheduler>(config);
  model_ = model;
  published_.clear();
  rate_.Clear();
}

std::vector<TakenRequest> Replica::MakeUnhealthy(std::string error) {
  FLOVER_CHECK(state_ != State::kUnhealthy) << "replica " << index_ << " is already unhealthy";
  state_ = State::kUnhealthy;
  error_ = std::move(error);
  for (WorkerSlot& w : workers_) {
    if (w.live()) w.state = WorkerState::kDead;
    w.identity.clear();
  }
  std::vector<TakenRequest> taken;
  if (scheduler_) taken = scheduler_->TakeAll();
  scheduler_.reset();
  published_.clear();
  return taken;
}

void Replica::Restart() {
  if (state_ == State::kUnhealthy) state_ = State::kStarting;
}

void Replica::OnPlanPublished(uint64_t seq, Clock::time_point now) { published_.emplace_back(seq, now); }

void Replica::OnResult(uint64_t seq, Clock::time_point now, int n_generated, double compute_seconds,
                       double wait_seconds) {
  while (!published_.empty() && published_.front().first <= seq) published_.pop_front();
  ++steps_;
  tokens_generated_ += n_generated;
  if (compute_seconds > 0 && compute_seconds < 3600) step_compute_seconds_ += compute_seconds;
  if (wait_seconds > 0 && wait_seconds < 3600) step_wait_seconds_ += wait_seconds;
  rate_.Add(now, n_generated);
}

std::optional<std::pair<uint64_t, Clock::time_point>> Replica::oldest_in_flight() const {
  if (published_.empty()) return std::nullopt;
  return published_.front();
}

}  // namespace flover
