// Replica: what the coordinator knows about one replica, i.e. the tensor_parallel
// workers that together hold one copy of the model, and the scheduler that feeds them.
//
// Life cycle:
//   starting  --all ranks ready, same model-->  ready  --failure-->  unhealthy
//   unhealthy --a worker registers again-->     starting
// A scheduler exists only while ready; plans of a new incarnation count from seq 1.
// Worker slots: absent (never registered) -> registered -> ready -> dead; a dead or
// absent slot accepts a new registration.
//
// Time comes in as parameters (the coordinator owns the clock).
// Thread-safety: none; owned by the coordinator's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/scheduler.h"
#include "flover.pb.h"

namespace flover {

enum class WorkerState { kAbsent, kRegistered, kReady, kDead };
const char* WorkerStateName(WorkerState state);  // "absent", "registered", "ready", "dead"

struct WorkerSlot {
  int replica = 0;
  int rank = 0;
  WorkerState state = WorkerState::kAbsent;
  std::string identity;  // ROUTER identity of its control DEALER (while live)
  int pid = 0;
  std::string host;
  std::string device;
  Clock::time_point last_seen{};  // any message counts as a heartbeat
  proto::ModelInfo model;         // from WorkerReady
  int kv_blocks = 0;              // from WorkerReady

  bool live() const { return state == WorkerState::kRegistered || state == WorkerState::kReady; }
};

// Steps and generated tokens per second over a sliding window of completed steps.
class StepRate {
 public:
  explicit StepRate(Clock::duration window = std::chrono::seconds(10)) : window_(window) {}
  void Add(Clock::time_point done, int n_generated);
  double steps_per_second(Clock::time_point now) const;
  double tokens_per_second(Clock::time_point now) const;
  void Clear() {
    steps_.clear();
    since_.reset();
  }

 private:
  struct Step {
    Clock::time_point done;
    int n_generated;
  };
  // Seconds the rate is measured over: the window, or less right after the first step.
  double Span(Clock::time_point now) const;
  void Trim(Clock::time_point now) const;

  Clock::duration window_;
  mutable std::deque<Step> steps_;  // ascending time, within the window
  std::optional<Clock::time_point> since_;
};

class Replica {
 public:
  enum class State { kStarting, kReady, kUnhealthy };
  static const char* StateName(State state);  // "starting", "ready", "unhealthy"

  Replica(int index, int tensor_parallel);

  int index() const { return index_; }
  State state() const { return state_; }
  const std::string& error() const { return error_; }  // why unhealthy (kept until ready again)

  std::vector<WorkerSlot>& workers() { return workers_; }
  const std::vector<WorkerSlot>& workers() const { return workers_; }
  WorkerSlot& worker(int rank) { return workers_.at(rank); }
  bool all_ready() const;

  // starting -> ready with a fresh scheduler. REQUIRES: state starting.
  void MakeReady(const SchedulerConfig& config, const proto::ModelInfo& model);
  // -> unhealthy: live slots turn dead, the scheduler is dropped. Returns its requests,
  // oldest first (to move them to another replica, or fail them). REQUIRES: state not
  // unhealthy.
  std::vector<TakenRequest> MakeUnhealthy(std::string error);
  // unhealthy -> starting, when a worker registers into it.
  void Restart();

  // Non-null only while ready.
  Scheduler* scheduler() { return scheduler_.get(); }
  const Scheduler* scheduler() const { return scheduler_.get(); }
  const proto::ModelInfo& model() const { return model_; }
  int n_kv_blocks() const { return scheduler_ ? scheduler_->n_blocks() : 0; }
  int load() const { return scheduler_ ? scheduler_->n_running() + scheduler_->n_waiting() : 0; }

  // Plans in flight, for the step timeout.
  void OnPlanPublished(uint64_t seq, Clock::time_point now);
  // `compute_seconds`, `wait_seconds`: the worker's own time for the step and its wait
  // for the plan (StepResult.step_seconds, wait_seconds); values outside [0, 1 h) are
  // not counted (a worker's clock or a hostile peer).
  void OnResult(uint64_t seq, Clock::time_point now, int n_generated, double compute_seconds, double wait_seconds);
  // When the oldest plan in flight was published.
  std::optional<std::pair<uint64_t, Clock::time_point>> oldest_in_flight() const;
  uint64_t last_plan_seq() const { return scheduler_ ? scheduler_->last_seq() : 0; }

  uint64_t steps() const { return steps_; }
  uint64_t tokens_generated() const { return tokens_generated_; }
  double step_compute_seconds() const { return step_compute_seconds_; }
  double step_wait_seconds() const { return step_wait_seconds_; }
  const StepRate& rate() const { return rate_; }

 private:
  int index_;  // constant after construction

  State state_ = State::kStarting;
  std::string error_;
  std::vector<WorkerSlot> workers_;  // [tensor_parallel], by rank
  std::unique_ptr<Scheduler> scheduler_;
  proto::ModelInfo model_;
  std::deque<std::pair<uint64_t, Clock::time_point>> published_;  // plans in flight: seq, when
  uint64_t steps_ = 0;                                            // results applied, over every incarnation
  uint64_t tokens_generated_ = 0;
  double step_compute_seconds_ = 0;
  double step_wait_seconds_ = 0;
  StepRate rate_;
};

}  // namespace flover
