// Scheduler: the step scheduler of ONE replica, data in and data out.
//
// Schedule() turns the state (running and waiting requests, the replica's KV block pool,
// the current time) into the next StepPlan; Apply() consumes the StepResult of a plan.
// No sockets or threads, and it never reads a clock: the coordinator passes the time in
// and calls both from its event loop; tests drive them with a fake executor and made-up
// times.
//
// Each request mirrors the workers' progress with one number that catches up:
//   n_tokens()  = prompt + generated + pending (samples expected from plans in flight)
//   n_computed  = tokens whose KV is computed, or being computed by a plan in flight
// A plan entry covers [n_computed, n_computed + n); when it reaches n_tokens() the
// workers sample a token, so chunked prefill and decode are the same code path.
//
// One step (temporal fusion): running requests with exactly one token left decode,
// oldest first; then running requests with more left get prefill chunks, oldest first;
// then waiting requests join in (priority, arrival) order, no overtaking, while the
// running limit, the step's token budget (max_step_tokens) and the KV pool allow: a
// request joins when the blocks of its first chunk can be allocated. The first plan
// that runs a request carries its JoinRequest. When a running request needs a block and
// none is free, the youngest running request is preempted (it may be the requester
// itself): its blocks are freed, it goes back to waiting ahead of younger arrivals, its
// id is sent in the next plan's `resets`, and it later recomputes prompt + generated
// tokens from 0.
//
// Policies (scheduler.policy; the paper's comparisons). All of them build their steps as
// above, so a request's tokens are the same under every policy; they differ in who may
// join and in how the workers run a step:
//   fused       the above: requests join the running batch at any step.
//   sequential  one request at a time (running limit 1): FCFS among equal priorities,
//               each runs to completion (or cancellation) before the next joins.
//   dynamic     FasterTransformer-style dynamic batching. While no batch runs, the
//               window is open: a batch forms when `batch_window` has passed since the
//               oldest waiting request arrived, or at once when running_limit() requests
//               wait. The batch takes waiting requests in join order, at most
//               running_limit() = min(max_running, max_batch) of them, while the blocks
//               of their current tokens fit the free pool (the first always does). Its
//               members then run fused, step by step, until ALL of them have finished
//               or been cancelled; only members join (or rejoin after a preemption)
//               meanwhile; requests arriving meanwhile wait for the next batch.
//   instances   FasterTransformer's concurrent model instances: scheduled like fused,
//               but every plan has `separate_passes`, so the workers run each entry in
//               its own forward pass (no weight reads shared between requests).
//
// Up to pipeline_depth plans may be in flight. A request with a pending sample is
// assumed to get its token and decodes the next one in the next plan (unless that
// sample may be its last: max_tokens or the context reached); if it finishes instead,
// the entry is stale and the workers skip it. Results must arrive in plan order.
//
// Invariants: a request is in exactly one of running_ / waiting_; each block is owned
// by at most one request; sum of block-table sizes == allocator_.n_used(); requests join
// only while fewer than running_limit() run (more may run for a while after
// UpdateSettings lowered it); under dynamic every running request is a member of the
// current batch and n_batch_ counts the members (running or waiting).
//
// Thread-safety: none; owned by the coordinator's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/block_allocator.h"
#include "common/request_params.h"
#include "common/scheduler_policy.h"
#include "common/status.h"
#include "flover.pb.h"

namespace flover {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct SchedulerConfig {
  int replica = 0;            // copied into every plan
  int n_blocks = 0;           // the replica's KV pool, >= 1
  int block_size = 16;        // tokens per block, >= 1
  int max_step_tokens = 512;  // tokens computed per step, >= 1
  int max_running = 64;       // requests in the running batch, >= 1
  int max_seq_len = 0;        // the model's context length, >= 1
  int bos_id = 1;             // the model's end-of-text ids (the finish rule: FinishAfterSample)
  int eos_id = 2;
  std::vector<int> extra_eos_ids;  // ModelSpec::extra_eos_ids
  int pipeline_depth = 1;     // plans in flight ahead of results, >= 1
  SchedulerPolicy policy = SchedulerPolicy::kFused;
  Clock::duration batch_window = std::chrono::milliseconds(10);  // dynamic: >= 0
  int max_batch = 32;                                            // dynamic: >= 1

  // How many requests may run at once under the policy: 1 (sequential),
  // min(max_running, max_batch) (dynamic) or max_running.
  int running_limit() const;
  ModelStops stops() const { return ModelStops::Of(max_seq_len, bos_id, eos_id, extra_eos_ids); }
};

// One request as the scheduler sees it.
struct SchedRequest {
  uint64_t id = 0;
  uint64_t arrival = 0;  // Add() order; lower = older
  Clock::time_point arrived{};  // as given to Add()
  int priority = 0;      // lower joins first
  RequestParams params;
  std::vector<int> generated;  // tokens reported by StepResults
  int n_pending = 0;           // samples expected from plans in flight
  int n_computed = 0;
  std::vector<int> block_table;
  bool known = false;     // the workers got its JoinRequest
  bool in_batch = false;  // dynamic: a member of the current batch

  int n_prompt() const { return static_cast<int>(params.prompt.size()); }
  int n_tokens() const { return n_prompt() + static_cast<int>(generated.size()) + n_pending; }
};

// A request taken out of a failed replica, with what it needs to go on elsewhere.
struct TakenRequest {
  uint64_t id = 0;
  RequestParams params;
  std::vector<int> generated;  // tokens reported by StepResults
};

// What a StepResult did to one request.
struct RequestEvent {
  uint64_t request_id = 0;
  int token = -1;  // -1: no token (the request stopped on a stop token, which is not output)
  FinishReason finish = FinishReason::kNone;
  std::optional<TokenLogprobs> logprobs;  // the output's, when the request asked (sampling.logprobs)
};

struct AppliedStep {
  uint64_t seq = 0;
  std::vector<RequestEvent> events;  // in output order; stale outputs left out
  int n_stale = 0;                   // outputs for requests no longer here
  int n_step_tokens = 0;             // tokens the plan computed
  int n_generated = 0;               // tokens generated (events with token >= 0)
};

class Scheduler {
 public:
  // REQUIRES: every field of `config` in its documented range.
  explicit Scheduler(const SchedulerConfig& config);

  const SchedulerConfig& config() const { return config_; }

  // Takes the settings a running replica may change (a reload of the cluster file):
  // max_step_tokens, max_running, pipeline_depth, policy, batch_window and max_batch of
  // `config`, from the next Schedule() on; the other fields must equal this scheduler's.
  // Nothing running is stopped: with a lower running limit no request joins until fewer
  // run; with fewer plans allowed in flight none is scheduled until results come back.
  // Into dynamic, the running requests become the current batch; out of it, the batch
  // ends. REQUIRES: the new values in their documented ranges.
  void UpdateSettings(const SchedulerConfig& config);

  // Queues a request that arrived at `arrived` (opens or joins the batch window under
  // dynamic); it joins at a later Schedule(). REQUIRES: id not known here, and the
  // request fits the pool: MaxKvPositions(params, max_seq_len) <= n_blocks * block_size
  // (admission checks it).
  // Times: only dynamic reads them; callers of the other policies may leave them out
  // (the clock's epoch), dynamic's callers must pass real ones consistently.
  // `generated`: tokens the request already generated elsewhere (a failed replica); it
  // joins with them (JoinRequest.generated) and recomputes prompt + generated before
  // its next sample. REQUIRES: !StopsByLength(prompt, generated, ...) (what a request
  // that has not finished has).
  void Add(uint64_t id, RequestParams params, int priority = 0, Clock::time_point arrived = {},
           std::vector<int> generated = {});

  // Forgets a queued or running request now and frees its blocks; when the workers know
  // it, it is listed in the next plan's `leaves`. False if the id is unknown (finished,
  // cancelled or never added).
  bool Cancel(uint64_t id);

  // True while fewer than pipeline_depth plans are in flight.
  bool can_schedule() const { return static_cast<int>(in_flight_.size()) < config_.pipeline_depth; }

  // The next plan at time `now`, or nullopt when no request can make progress now (then
  // nothing is in flight for it; leaves and resets wait for the next plan). Under
  // dynamic, forms the next batch first when none runs and its window has closed by
  // `now`. REQUIRES: can_schedule().
  std::optional<proto::StepPlan> Schedule(Clock::time_point now = {});

  // Under dynamic, while no batch runs and requests wait: when the window closes, i.e.
  // the earliest `now` at which Schedule() forms a batch of the requests waiting now
  // (in the past when it is due already). nullopt otherwise: no other policy waits for
  // time, and a running batch ends with a result, not at a time.
  std::optional<Clock::time_point> batch_deadline() const;

  // Consumes the result of the oldest plan in flight: appends tokens, retires finished
  // requests (their blocks are free at once). The scheduler decides each finish itself
  // with the finish rule (FinishAfterSample): max_tokens, the context, stop ids and
  // EOS/BOS (unless ignore_eos); a stop token is not output.
  // InvalidArgument, and no change at all, when the result cannot be the workers' honest
  // answer to that plan (the replica's workers are broken): result.seq is not the oldest
  // plan's; an output for a request the plan did not compute, or whose entry did not
  // reach a sample, or two for one request; an output whose finish differs from the
  // rule's; more top log-probabilities than the request asked for; or no output for a
  // request that sampled in the plan and is still here. An event carries the output's
  // log-probabilities when its request asked for them. Outputs for requests no longer
  // here (cancelled, or finished by an earlier result: pipelining makes such entries
  // stale) are skipped. Does not look at result.error or
  // check tokens or log-probabilities against the vocabulary (the caller does:
  // CheckOutputLogprobs).
  Result<AppliedStep> Apply(const proto::StepResult& result);

  // Forgets everything (the replica failed) and returns every request, oldest first,
  // with its parameters and generated tokens. Plans in flight are forgotten too.
  std::vector<TakenRequest> TakeAll();

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  const SchedRequest* Find(uint64_t id) const;
  int n_running() const { return static_cast<int>(running_.size()); }
  int n_waiting() const { return static_cast<int>(waiting_.size()); }
  int n_requests() const { return static_cast<int>(requests_.size()); }
  int n_blocks() const { return allocator_.n_blocks(); }
  int n_used_blocks() const { return allocator_.n_used(); }
  int n_in_flight() const { return static_cast<int>(in_flight_.size()); }
  int n_batch() const { return n_batch_; }  // dynamic: members of the current batch
  uint64_t last_seq() const { return last_seq_; }

 private:
  struct Pick {
    SchedRequest* request;
    int n_tokens;
    size_t first_new_block;  // block_table[first_new_block..] were allocated this step
    bool join;               // send its JoinRequest
  };
  struct InFlightPlan {
    uint64_t seq;
    int n_tokens;
    std::vector<std::pair<uint64_t, bool>> entries;  // request id, whether it samples
  };
  // Checks `result` against the oldest plan in flight (see Apply).
  Status Check(const proto::StepResult& result) const;

  // Tokens of `r` that can be computed now; 0 while its pending sample may be its last.
  int Schedulable(const SchedRequest& r) const;
  // Grows r's block table to hold n_tokens tokens. False (no change) if blocks ran out.
  bool Reserve(SchedRequest* r, int n_tokens);
  // Frees the blocks of a running request and sends it back to waiting; drops its
  // picks of this step and returns how many tokens they had.
  int Preempt(SchedRequest* victim, std::vector<Pick>* picks);
  void InsertWaiting(SchedRequest* r);
  void Release(SchedRequest* r);  // frees blocks, drops from running_ / waiting_
  void Forget(SchedRequest* r);   // Release, leaves the batch; the caller erases it
  // Dynamic: makes waiting requests the members of a new batch if the window has closed.
  // REQUIRES: n_batch_ == 0.
  void FormBatch(Clock::time_point now);

  // Constant after construction but for UpdateSettings()'s fields.
  SchedulerConfig config_;
  int running_limit_;  // config_.running_limit()

  BlockAllocator allocator_;
  std::unordered_map<uint64_t, std::unique_ptr<SchedRequest>> requests_;
  std::vector<SchedRequest*> running_;  // ascending arrival
  std::deque<SchedRequest*> waiting_;   // ascending (priority, arrival)
  std::vector<uint64_t> leaves_;        // for the next plan
  std::vector<uint64_t> resets_;        // for the next plan
  std::deque<InFlightPlan> in_flight_;  // ascending seq
  int n_batch_ = 0;                     // dynamic: members of the current batch
  uint64_t next_arrival_ = 1;
  uint64_t last_seq_ = 0;
};

}  // namespace flover
