// Engine: the in-process server (`flover run`, tests, benchmarks): the coordinator's
// step Scheduler (coordinator/scheduler.h) and a worker's Executor in one process, joined
// by the PlanRunner (plan_runner.h) the worker daemon uses. Each Step() asks the
// scheduler for a StepPlan, runs it on the executor and feeds the StepResult back, so a
// request goes through exactly the scheduling and execution of a cluster replica: every
// policy (fused, dynamic, instances, sequential), chunked prefill under the step's token
// budget, preemption with recompute when the KV pool runs out, pipelined plans.
//
// Layering: this is the one place where worker/engine composes coordinator/scheduler
// (flover_scheduler: no sockets, no threads, no tensors); the daemons do not use it.
//
// Under temporal fusion (the default policy) each Step() is ONE forward pass over every
// running request; requests join at the next step after Add() and leave the step they
// finish, freeing their KV blocks at once. Callers see every token exactly once, in
// order, also across preemptions.
//
// Pipelining (pipeline_depth d > 1) is emulated as the coordinator runs it: plans run
// one after another here, but a plan's result is applied only once d plans have been
// executed, so the scheduler plans ahead of results exactly as with d plans in flight
// (stale entries included), and a step's events come out d - 1 Step() calls later.
//
// Tensor parallelism: every rank runs its own engine over its rank's backend
// (CreateBackend with a BackendGroup), fed the same Add/Cancel calls in the same order
// and stepped in lockstep; all ranks compute the same full logits, so they schedule,
// sample and finish identically, and every rank reports the same events. (Under
// `dynamic`, whose batch window reads the clock, ranks could disagree: use another
// policy for in-process tensor parallelism.)
//
// Thread-safety: not thread-safe; drive it from one thread. Step() parallelises
// internally (the backend's threads or device).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "common/request_params.h"
#include "common/status.h"
#include "coordinator/scheduler.h"
#include "worker/engine/executor.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/plan_runner.h"

namespace flover {

struct EngineConfig {
  int max_step_tokens = 512;  // tokens computed per step (decodes + prefill chunks), >= 1
  int max_running = 256;      // requests in the running batch, >= 1
  SchedulerPolicy policy = SchedulerPolicy::kFused;
  int pipeline_depth = 1;     // plans scheduled ahead of their results, >= 1
  Clock::duration batch_window = std::chrono::milliseconds(10);  // dynamic: >= 0
  int max_batch = 32;                                            // dynamic: >= 1
};

// One thing that happened to a request during a step: a generated token (-1: none), its
// end (finish != kNone), or both (the last token of a request that stops on length).
using EngineEvent = RequestEvent;

struct StepStats {
  int n_entries = 0;         // requests in the step
  int n_tokens = 0;          // tokens computed
  int n_decode = 0;          // entries computing one generated token
  int n_prefill_tokens = 0;  // prompt (or recomputed) tokens
  int n_preempted = 0;       // requests sent back to recompute by this step's plan
};

class Engine {
 public:
  // Runs requests on `backend` (CreateBackend, worker/backend.h). InvalidArgument for a
  // config field outside its range.
  static Result<std::unique_ptr<Engine>> Create(std::unique_ptr<ForwardBackend> backend, const EngineConfig& config);

  const ModelSpec& spec() const { return backend_->spec(); }
  const EngineConfig& config() const { return config_; }

  // Validates and queues a request; it joins the batch at a later Step(). Errors:
  // InvalidArgument (ValidateRequest), ResourceExhausted if it could never fit in the
  // whole KV pool (MaxKvPositions).
  Result<uint64_t> Add(RequestParams request);

  // Removes a queued or running request and frees its blocks now; the next Step()
  // reports it with finish = kCancelled. NotFound if the id is unknown or finished.
  Status Cancel(uint64_t request_id);

  // Runs one step (if there is work) and appends what happened to `events`. Under
  // dynamic, while a batch window is open and nothing else can run, it first waits for
  // the window to close. Fails on the backend's errors (a communicator or device
  // failure: Unavailable); the engine is then unusable (with tensor parallelism the
  // group has to be rebuilt).
  Status Step(std::vector<EngineEvent>* events, StepStats* stats = nullptr);

  bool has_work() const { return scheduler_.has_work() || !unapplied_.empty() || !pending_events_.empty(); }
  int n_running() const { return scheduler_.n_running(); }
  int n_waiting() const { return scheduler_.n_waiting(); }
  int n_blocks() const { return scheduler_.n_blocks(); }
  int n_free_blocks() const { return scheduler_.n_blocks() - scheduler_.n_used_blocks(); }
  int block_size() const { return backend_->kv_block_size(); }

 private:
  Engine(std::unique_ptr<ForwardBackend> backend, const EngineConfig& config);

  // Applies the oldest executed result to the scheduler; its events go to `events`.
  Status ApplyOldest(std::vector<EngineEvent>* events);

  // Constant after construction; destroyed bottom-up (the runner before the executor
  // before the backend).
  const EngineConfig config_;
  std::unique_ptr<ForwardBackend> backend_;
  Executor executor_;
  PlanRunner runner_;

  Scheduler scheduler_;
  std::deque<proto::StepResult> unapplied_;  // executed plans' results, oldest first
  std::vector<EngineEvent> pending_events_;  // cancellations, reported at the next step
  uint64_t next_id_ = 1;
};

}  // namespace flover
