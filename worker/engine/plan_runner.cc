#include "worker/engine/plan_runner.h"

#include <chrono>
#include <span>

#include "common/protocol.h"

namespace flover {

PlanRunner::PlanRunner(Executor* executor) : executor_(executor) {}

Status PlanRunner::Run(const proto::StepPlan& plan, proto::StepResult* result) {
  const auto t0 = std::chrono::steady_clock::now();
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
  result->set_step_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return Status::Ok();
}

}  // namespace flover
