#include "worker/engine/plan_runner.h"

#include <algorithm>
#include <chrono>
#include <span>

#include "common/protocol.h"

namespace flover {

PlanRunner::PlanRunner(Executor* executor, std::function<Clock::time_point()> clock)
    : executor_(executor), clock_(clock ? std::move(clock) : [] { return Clock::now(); }) {}

Status PlanRunner::Run(const proto::StepPlan& plan, proto::StepResult* result) {
  const Clock::time_point t0 = clock_();
  requests_.clear();
  for (const proto::PlanEntry& e : plan.entries()) requests_.push_back(e.request_id());
  std::sort(requests_.begin(), requests_.end());
  const bool goes_on = last_end_ && std::any_of(requests_.begin(), requests_.end(), [&](uint64_t id) {
                         return std::binary_search(last_requests_.begin(), last_requests_.end(), id);
                       });
  const double wait = goes_on ? std::chrono::duration<double>(t0 - *last_end_).count() : 0.0;
  last_end_.reset();  // a failed step leaves nothing to measure the next one against
  last_requests_.swap(requests_);
  for (uint64_t id : plan.leaves()) executor_->Leave(id);
  for (uint64_t id : plan.resets()) executor_->Reset(id);
  for (const proto::JoinRequest& j : plan.joins()) {
    RequestParams request{std::vector<int>(j.prompt().begin(), j.prompt().end()), FromProto(j.sampling()),
                          FromProto(j.stop())};
    FLOVER_RETURN_IF_ERROR(executor_->Join(j.request_id(), std::move(request),
                                           std::span<const int>(j.generated().data(), j.generated().size())));
  }
  entries_.clear();
  for (const proto::PlanEntry& e : plan.entries())
    entries_.push_back(ExecEntry{e.request_id(), e.start_pos(), e.n_tokens(),
                                 std::span<const int>(e.new_blocks().data(), e.new_blocks().size())});
  outputs_.clear();
  FLOVER_RETURN_IF_ERROR(executor_->Run(entries_, &outputs_, plan.separate_passes()));

  result->Clear();
  result->set_replica(plan.replica());
  result->set_seq(plan.seq());
  for (const ExecOutput& o : outputs_) {
    if (o.finish != FinishReason::kNone) executor_->Leave(o.request_id);
    proto::TokenOutput* t = result->add_outputs();
    t->set_request_id(o.request_id);
    t->set_token(o.token);
    t->set_finish(ToProto(o.finish));
    if (o.logprobs) SetLogprobs(*o.logprobs, t);
  }
  const Clock::time_point t1 = clock_();
  result->set_step_seconds(std::chrono::duration<double>(t1 - t0).count());
  result->set_wait_seconds(wait > 0 ? wait : 0.0);
  last_end_ = t1;
  return Status::Ok();
}

}  // namespace flover
