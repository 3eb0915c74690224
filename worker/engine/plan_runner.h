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

#include <vector>

#include "common/status.h"
#include "flover.pb.h"
#include "worker/engine/executor.h"

namespace flover {

class PlanRunner {
 public:
  // `executor` must outlive the runner.
  explicit PlanRunner(Executor* executor);

  // Applies `plan` to the executor and fills `result`: replica and seq of the plan, one
  // TokenOutput per entry that sampled or finished, in entry order (with its
  // log-probabilities when the request asked), and step_seconds.
  // Errors (nothing in `result`): a join the executor refuses (Executor::Join), an
  // entry that does not fit its request, or the device's / communicator's failure
  // (Executor::Run); the executor may then have applied the leaves, resets and joins
  // before the failing one, and the caller must treat the replica as failed.
  Status Run(const proto::StepPlan& plan, proto::StepResult* result);

 private:
  Executor* executor_;

  // Per-plan scratch, reused.
  std::vector<ExecEntry> entries_;
  std::vector<ExecOutput> outputs_;
};

}  // namespace flover
