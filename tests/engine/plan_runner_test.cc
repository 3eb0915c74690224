// PlanRunner: a StepPlan's leaves, resets, joins and entries reach the executor in that
// order, finished requests leave, stale entries are skipped, and the StepResult carries
// the plan's replica and seq and one output per sampled entry. On the real stories260K.
#include "worker/engine/plan_runner.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "common/protocol.h"
#include "tests/test_paths.h"
#include "worker/engine/cpu_backend.h"
#include "worker/model/model_loader.h"

namespace flover {
namespace {

class PlanRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<LoadedModel> m = LoadModel(testing::Stories260kBin());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    Result<std::unique_ptr<CpuBackend>> backend =
        CpuBackend::Create(std::move(m->weights), {}, nullptr, KvCacheConfig{16, int64_t{1} << 40, 64});
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    backend_ = std::move(backend).value();
    executor_ = std::make_unique<Executor>(backend_.get());
    runner_ = std::make_unique<PlanRunner>(executor_.get());
  }

  static void Join(proto::StepPlan* plan, uint64_t id, int max_tokens) {
    proto::JoinRequest* j = plan->add_joins();
    j->set_request_id(id);
    for (int t : {1, 403, 407, 261}) j->add_prompt(t);
    StopParams stop;
    stop.max_tokens = max_tokens;
    stop.ignore_eos = true;
    *j->mutable_stop() = ToProto(stop);
    *j->mutable_sampling() = ToProto(SamplingParams{});
  }

  static void Entry(proto::StepPlan* plan, uint64_t id, int start, int n, std::vector<int> blocks = {}) {
    proto::PlanEntry* e = plan->add_entries();
    e->set_request_id(id);
    e->set_start_pos(start);
    e->set_n_tokens(n);
    for (int b : blocks) e->add_new_blocks(b);
  }

  static proto::StepPlan Plan(uint64_t seq) {
    proto::StepPlan plan;
    plan.set_replica(3);
    plan.set_seq(seq);
    return plan;
  }

  std::unique_ptr<CpuBackend> backend_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<PlanRunner> runner_;
};

TEST_F(PlanRunnerTest, RunsJoinsEntriesAndLeavesInPlanOrder) {
  proto::StepPlan p1 = Plan(1);
  Join(&p1, 7, 2);
  Join(&p1, 8, 5);
  Entry(&p1, 7, 0, 4, {0});
  Entry(&p1, 8, 0, 4, {1});
  proto::StepResult r;
  ASSERT_TRUE(runner_->Run(p1, &r).ok());
  EXPECT_EQ(r.replica(), 3);
  EXPECT_EQ(r.seq(), 1u);
  EXPECT_GE(r.step_seconds(), 0.0);
  ASSERT_EQ(r.outputs_size(), 2);
  EXPECT_EQ(r.outputs(0).request_id(), 7u);
  EXPECT_EQ(r.outputs(1).request_id(), 8u);
  EXPECT_EQ(r.outputs(0).token(), r.outputs(1).token()) << "same prompt, greedy";
  EXPECT_EQ(r.outputs(0).finish(), proto::FINISH_NONE);

  // Request 7 generates its second and last token (max_tokens 2) and leaves.
  proto::StepPlan p2 = Plan(2);
  Entry(&p2, 7, 4, 1);
  Entry(&p2, 8, 4, 1);
  ASSERT_TRUE(runner_->Run(p2, &r).ok());
  ASSERT_EQ(r.outputs_size(), 2);
  EXPECT_EQ(r.outputs(0).finish(), proto::FINISH_LENGTH);
  EXPECT_EQ(r.outputs(1).finish(), proto::FINISH_NONE);
  EXPECT_EQ(executor_->Find(7), nullptr);
  EXPECT_EQ(executor_->n_requests(), 1);

  // A pipelined plan's entry for 7 is stale: skipped, no output.
  proto::StepPlan p3 = Plan(3);
  Entry(&p3, 7, 5, 1);
  Entry(&p3, 8, 5, 1);
  ASSERT_TRUE(runner_->Run(p3, &r).ok());
  ASSERT_EQ(r.outputs_size(), 1);
  EXPECT_EQ(r.outputs(0).request_id(), 8u);

  // A reset (preemption) sends 8 back to position 0; the same plan recomputes it.
  proto::StepPlan p4 = Plan(4);
  p4.add_resets(8);
  Entry(&p4, 8, 0, 7, {5});
  ASSERT_TRUE(runner_->Run(p4, &r).ok());
  ASSERT_EQ(r.outputs_size(), 1);
  EXPECT_EQ(executor_->Find(8)->block_table, std::vector<int>{5});

  proto::StepPlan p5 = Plan(5);
  p5.add_leaves(8);
  ASSERT_TRUE(runner_->Run(p5, &r).ok());
  EXPECT_EQ(r.outputs_size(), 0);
  EXPECT_EQ(r.seq(), 5u);
  EXPECT_EQ(executor_->n_requests(), 0);
}

TEST_F(PlanRunnerTest, RefusedJoinsAndBadEntriesAreErrors) {
  proto::StepPlan p1 = Plan(1);
  Join(&p1, 7, 2);
  p1.mutable_joins(0)->add_prompt(512);  // outside the vocabulary
  proto::StepResult r;
  Status s = runner_->Run(p1, &r);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("outside the vocabulary"), std::string::npos) << s.ToString();

  proto::StepPlan p2 = Plan(2);
  Join(&p2, 9, 2);
  Entry(&p2, 9, 1, 3, {0});  // starts past its progress
  s = runner_->Run(p2, &r);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
}

// TokenOutput carries the log-probabilities a request asked for, and none otherwise;
// asking changes no token.
TEST_F(PlanRunnerTest, OutputsCarryTheLogprobsTheRequestAskedFor) {
  proto::StepPlan p1 = Plan(1);
  Join(&p1, 7, 4);
  Join(&p1, 8, 4);
  SamplingParams asking;
  asking.logprobs = true;
  asking.top_logprobs = 4;
  *p1.mutable_joins(1)->mutable_sampling() = ToProto(asking);
  Entry(&p1, 7, 0, 4, {0});
  Entry(&p1, 8, 0, 4, {1});
  proto::StepResult r;
  ASSERT_TRUE(runner_->Run(p1, &r).ok());
  ASSERT_EQ(r.outputs_size(), 2);
  const proto::TokenOutput& plain = r.outputs(0);
  const proto::TokenOutput& asked = r.outputs(1);
  EXPECT_EQ(plain.logprob(), 0.0f);
  EXPECT_EQ(plain.top_logprobs_size(), 0);
  EXPECT_EQ(asked.token(), plain.token()) << "same prompt, greedy: asking changes no token";
  ASSERT_EQ(asked.top_logprobs_size(), 4);
  EXPECT_EQ(asked.top_logprobs(0).token(), asked.token()) << "greedy takes the most likely";
  EXPECT_EQ(asked.top_logprobs(0).logprob(), asked.logprob());
  EXPECT_LT(asked.logprob(), 0.0f);
  EXPECT_TRUE(CheckOutputLogprobs(asked, backend_->spec().vocab_size).ok());
}

// wait_seconds: from the end of the previous step to the start of this one, counted only
// when this plan goes on with a request of the previous one (the worker waited for it);
// a plan of new requests only, the first plan and the one after a failed step count 0.
// On a scripted clock: each Run reads it at its start and at its end.
TEST_F(PlanRunnerTest, WaitIsTheGapBeforeAStepThatGoesOnWithARequest) {
  std::vector<double> reads_ms = {0, 5, 12, 15, 40, 44, 50, 53};
  size_t next = 0;
  PlanRunner runner(executor_.get(), [&] {
    const double ms = next < reads_ms.size() ? reads_ms[next++] : 1000;
    return PlanRunner::Clock::time_point(std::chrono::microseconds(static_cast<int64_t>(ms * 1000)));
  });
  proto::StepResult r;
  proto::StepPlan p1 = Plan(1);
  Join(&p1, 7, 8);
  Entry(&p1, 7, 0, 4, {0});
  ASSERT_TRUE(runner.Run(p1, &r).ok());
  EXPECT_DOUBLE_EQ(r.step_seconds(), 0.005);
  EXPECT_EQ(r.wait_seconds(), 0.0) << "the first plan";

  proto::StepPlan p2 = Plan(2);
  Entry(&p2, 7, 4, 1);
  ASSERT_TRUE(runner.Run(p2, &r).ok());
  EXPECT_DOUBLE_EQ(r.wait_seconds(), 0.007) << "request 7 waited from 5 ms to 12 ms";

  proto::StepPlan p3 = Plan(3);  // only a new request: the worker was idle, not waiting
  Join(&p3, 8, 8);
  Entry(&p3, 8, 0, 4, {1});
  ASSERT_TRUE(runner.Run(p3, &r).ok());
  EXPECT_EQ(r.wait_seconds(), 0.0);

  proto::StepPlan p4 = Plan(4);  // request 8 goes on, and 7 again (not in the previous plan)
  Entry(&p4, 7, 5, 1);
  Entry(&p4, 8, 4, 1);
  ASSERT_TRUE(runner.Run(p4, &r).ok());
  EXPECT_DOUBLE_EQ(r.wait_seconds(), 0.006) << "from 44 ms to 50 ms";
}

}  // namespace
}  // namespace flover
