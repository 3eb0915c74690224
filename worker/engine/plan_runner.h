// PlanRunner: executes one proto::StepPlan (protocol.md, "Step plans") on an Executor
// and builds its proto::StepResult. The one path from a scheduler's plan to the device,
// shared by the worker daemon (plans from the coordinator) and the in-process Engine
// (plans from its own Scheduler), so both modes run exactly the same steps.
//
// In plan order: `leaves` drop their requests, `resets` forget their KV progress
// (preemption), `joins` add requests (with tokens generated elsewhere), then the
// entries run as one fused step (or one pass per entry with separate_passes), and the
// requests that finished in it leave. Entries of requests the executor does not hold
// are stale (pipelined plans) and skipped.
//
// Thread-safety: not thread-safe; the thread that drives the executor calls Run.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "common/status.h"
#include "flover.pb.h"
#include "worker/engine/executor.h"

namespace flover {

class PlanRunner {
 public:
  using Clock = std::chrono::steady_clock;

  // `executor` must outlive the runner. `clock` (tests) replaces steady_clock::now.
  explicit PlanRunner(Executor* executor, std::function<Clock::time_point()> clock = nullptr);

  // Applies `plan` to the executor and fills `result`: replica and seq of the plan, one
  // TokenOutput per entry that sampled or finished, in entry order (with its
  // log-probabilities when the request asked), step_seconds, and wait_seconds: the time
  // from the end of the previous Run to the start of this one when an entry of this
  // plan belongs to a request that had an entry in the previous plan (the step it waited
  // for), else 0.
  // Errors (nothing in `result`): a join the executor refuses (Executor::Join), an
  // entry that does not fit its request, or the device's / communicator's failure
  // (Executor::Run); the executor may then have applied the leaves, resets and joins
  // before the failing one, and the caller must treat the replica as failed.
  Status Run(const proto::StepPlan& plan, proto::StepResult* result);

 private:
  Executor* executor_;
  std::function<Clock::time_point()> clock_;

  // The previous plan: when its Run ended and its entries' requests (sorted).
  std::optional<Clock::time_point> last_end_;
  std::vector<uint64_t> last_requests_;

  // Per-plan scratch, reused.
  std::vector<ExecEntry> entries_;
  std::vector<ExecOutput> outputs_;
  std::vector<uint64_t> requests_;
};

}  // namespace flover
