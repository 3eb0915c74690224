// Scheduler tests as tables of steps: each row is one Schedule() -> fake executor ->
// Apply() round with the expected plan (entries, joins, resets, leaves) and the requests
// that finished. The fake executor plays the worker's side of the contract and checks
// every plan against its own state (start positions, block tables, plan sequence).
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "common/block_allocator.h"
#include "common/protocol.h"

namespace flover {
namespace {

constexpr int kEos = 2;
constexpr int kBos = 1;

// The worker side: keeps each request's tokens, KV progress and block table, samples
// scripted tokens (default 100 + index of the generated token) and applies the stop
// rules of worker/engine/sequence.cc.
class FakeExecutor {
 public:
  FakeExecutor(int block_size, int n_blocks, int max_seq_len)
      : block_size_(block_size), n_blocks_(n_blocks), max_seq_len_(max_seq_len) {}

  void Script(uint64_t id, std::vector<int> tokens) { scripts_[id] = std::move(tokens); }
  int n_stale_entries() const { return n_stale_; }
  bool knows(uint64_t id) const { return seqs_.contains(id); }

  proto::StepResult Execute(const proto::StepPlan& plan) {
    EXPECT_EQ(plan.seq(), last_seq_ + 1) << "plan sequence gap";
    last_seq_ = plan.seq();
    for (uint64_t id : plan.leaves()) seqs_.erase(id);
    for (uint64_t id : plan.resets()) {
      auto it = seqs_.find(id);
      if (it == seqs_.end()) continue;
      it->second.n_computed = 0;
      it->second.blocks.clear();
    }
    for (const proto::JoinRequest& join : plan.joins()) {
      EXPECT_FALSE(seqs_.contains(join.request_id())) << "joined twice: " << join.request_id();
      Seq& s = seqs_[join.request_id()];
      s.tokens.assign(join.prompt().begin(), join.prompt().end());
      s.n_prompt = static_cast<int>(s.tokens.size());
      s.stop = FromProto(join.stop());
    }
    proto::StepResult result;
    result.set_replica(plan.replica());
    result.set_seq(plan.seq());
    for (const proto::PlanEntry& e : plan.entries()) {
      auto it = seqs_.find(e.request_id());
      if (it == seqs_.end()) {
        ++n_stale_;
        continue;
      }
      Seq& s = it->second;
      EXPECT_EQ(e.start_pos(), s.n_computed) << "request " << e.request_id();
      EXPECT_GE(e.n_tokens(), 1);
      s.blocks.insert(s.blocks.end(), e.new_blocks().begin(), e.new_blocks().end());
      EXPECT_LE(s.n_computed + e.n_tokens(), static_cast<int>(s.tokens.size())) << "request " << e.request_id();
      EXPECT_GE(static_cast<int>(s.blocks.size()), BlockAllocator::BlocksFor(s.n_computed + e.n_tokens(), block_size_))
          << "block table too short for request " << e.request_id();
      s.n_computed += e.n_tokens();
      if (s.n_computed == static_cast<int>(s.tokens.size())) Sample(e.request_id(), s, &result);
    }
    CheckBlocksDisjoint();
    return result;
  }

 private:
  struct Seq {
    std::vector<int> tokens;
    int n_prompt = 0;
    int n_computed = 0;
    std::vector<int> blocks;
    StopParams stop;
  };

  void Sample(uint64_t id, Seq& s, proto::StepResult* result) {
    const int n_generated = static_cast<int>(s.tokens.size()) - s.n_prompt;
    const auto script = scripts_.find(id);
    const int token = script != scripts_.end() && n_generated < static_cast<int>(script->second.size())
                          ? script->second[n_generated]
                          : 100 + n_generated;
    proto::TokenOutput* out = result->add_outputs();
    out->set_request_id(id);
    if ((token == kEos || token == kBos) && !s.stop.ignore_eos) {
      out->set_token(-1);
      out->set_finish(proto::FINISH_STOP);
      seqs_.erase(id);
      return;
    }
    out->set_token(token);
    s.tokens.push_back(token);
    if (static_cast<int>(s.tokens.size()) - s.n_prompt >= s.stop.max_tokens ||
        static_cast<int>(s.tokens.size()) - 1 >= max_seq_len_) {
      out->set_finish(proto::FINISH_LENGTH);
      seqs_.erase(id);
    }
  }

  void CheckBlocksDisjoint() const {
    std::set<int> seen;
    for (const auto& [id, s] : seqs_) {
      for (int b : s.blocks) {
        EXPECT_GE(b, 0);
        EXPECT_LT(b, n_blocks_);
        EXPECT_TRUE(seen.insert(b).second) << "block " << b << " used twice (request " << id << ")";
      }
    }
  }

  const int block_size_;
  const int n_blocks_;
  const int max_seq_len_;
  std::map<uint64_t, Seq> seqs_;
  std::map<uint64_t, std::vector<int>> scripts_;
  uint64_t last_seq_ = 0;
  int n_stale_ = 0;
};

using Entries = std::vector<std::pair<uint64_t, int>>;  // (request id, n_tokens) in plan order
using Ids = std::vector<uint64_t>;

struct Step {
  Entries scheduled;
  Ids joined;
  Ids preempted;  // resets
  Ids finished;
  Ids left = {};  // leaves
};

RequestParams Prompt(int n, int max_tokens) {
  RequestParams r;
  for (int i = 0; i < n; ++i) r.prompt.push_back(10 + i);
  r.stop.max_tokens = max_tokens;
  return r;
}

template <typename Repeated>
Ids ToIds(const Repeated& field) {
  return Ids(field.begin(), field.end());
}

class SchedulerTest : public ::testing::Test {
 protected:
  void Init(SchedulerConfig config) {
    config_ = config;
    scheduler_ = std::make_unique<Scheduler>(config);
    executor_ = std::make_unique<FakeExecutor>(config.block_size, config.n_blocks, config.max_seq_len);
  }

  // Runs one round and checks it against `step`. Returns the applied events.
  std::vector<RequestEvent> RunStep(const Step& step, int index) {
    SCOPED_TRACE("step " + std::to_string(index + 1));
    std::optional<proto::StepPlan> plan = scheduler_->Schedule();
    if (!plan) {
      ADD_FAILURE() << "no plan";
      return {};
    }
    EXPECT_EQ(plan->seq(), static_cast<uint64_t>(++seq_));
    Entries scheduled;
    for (const proto::PlanEntry& e : plan->entries()) scheduled.emplace_back(e.request_id(), e.n_tokens());
    Ids joined;
    for (const proto::JoinRequest& j : plan->joins()) joined.push_back(j.request_id());
    EXPECT_EQ(scheduled, step.scheduled);
    EXPECT_EQ(joined, step.joined);
    EXPECT_EQ(ToIds(plan->resets()), step.preempted);
    EXPECT_EQ(ToIds(plan->leaves()), step.left);
    EXPECT_FALSE(scheduler_->can_schedule());  // lock-step: one plan in flight

    Result<AppliedStep> applied = scheduler_->Apply(executor_->Execute(*plan));
    EXPECT_TRUE(applied.ok()) << applied.status().ToString();
    if (!applied.ok()) return {};
    Ids finished;
    for (const RequestEvent& ev : applied->events) {
      if (ev.token >= 0) tokens_[ev.request_id].push_back(ev.token);
      if (ev.finish != FinishReason::kNone) finished.push_back(ev.request_id);
    }
    EXPECT_EQ(finished, step.finished);
    CheckBlockAccounting();
    return applied->events;
  }

  void RunTable(const std::vector<Step>& steps) {
    for (size_t i = 0; i < steps.size(); ++i) RunStep(steps[i], static_cast<int>(i));
  }

  void CheckBlockAccounting() {
    int used = 0;
    for (uint64_t id = 1; id <= 64; ++id)
      if (const SchedRequest* r = scheduler_->Find(id)) used += static_cast<int>(r->block_table.size());
    EXPECT_EQ(used, scheduler_->n_used_blocks());
  }

  SchedulerConfig config_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<FakeExecutor> executor_;
  std::map<uint64_t, std::vector<int>> tokens_;  // generated, as the client sees them
  int seq_ = 0;
};

SchedulerConfig Config(int block_size, int n_blocks, int max_step_tokens, int max_running, int depth = 1) {
  SchedulerConfig c;
  c.replica = 0;
  c.block_size = block_size;
  c.n_blocks = n_blocks;
  c.max_step_tokens = max_step_tokens;
  c.max_running = max_running;
  c.max_seq_len = 64;
  c.pipeline_depth = depth;
  return c;
}

TEST_F(SchedulerTest, ChunkedPrefillThenDecodeUntilLength) {
  Init(Config(/*block_size=*/4, /*n_blocks=*/8, /*max_step_tokens=*/8, /*max_running=*/4));
  scheduler_->Add(1, Prompt(10, 3));
  RunTable({
      {{{1, 8}}, {1}, {}, {}},   // first chunk of the prompt
      {{{1, 2}}, {}, {}, {}},    // rest of the prompt: samples token 1
      {{{1, 1}}, {}, {}, {}},    // decode: token 2
      {{{1, 1}}, {}, {}, {1}},   // decode: token 3 = max_tokens
  });
  EXPECT_EQ(tokens_[1], (std::vector<int>{100, 101, 102}));
  EXPECT_FALSE(scheduler_->has_work());
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
  EXPECT_FALSE(scheduler_->Schedule().has_value());
}

TEST_F(SchedulerTest, PlanCarriesNewBlocksAndStartPositions) {
  Init(Config(4, 8, 8, 4));
  scheduler_->Add(1, Prompt(6, 4));
  std::optional<proto::StepPlan> plan = scheduler_->Schedule();
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->entries_size(), 1);
  EXPECT_EQ(plan->entries(0).start_pos(), 0);
  EXPECT_EQ(plan->entries(0).n_tokens(), 6);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 2);  // 6 tokens in blocks of 4
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_EQ(plan->joins(0).prompt_size(), 6);
  EXPECT_EQ(plan->joins(0).stop().max_tokens(), 4);
  ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*plan)).ok());
  // Token 7 lands at position 6, still in block 2: no new block.
  plan = scheduler_->Schedule();
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->entries(0).start_pos(), 6);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 0);
  EXPECT_EQ(plan->joins_size(), 0);
  ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*plan)).ok());
  // Position 7 is the last slot of block 2; position 8 needs block 3.
  plan = scheduler_->Schedule();
  ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*plan)).ok());
  plan = scheduler_->Schedule();
  EXPECT_EQ(plan->entries(0).start_pos(), 8);
  EXPECT_EQ(plan->entries(0).new_blocks_size(), 1);
}

TEST_F(SchedulerTest, DecodesFirstThenPrefillChunksThenJoins) {
  Init(Config(4, 8, 8, 4));
  scheduler_->Add(1, Prompt(3, 5));
  RunStep({{{1, 3}}, {1}, {}, {}}, 0);
  scheduler_->Add(2, Prompt(12, 2));
  RunTable({
      {{{1, 1}, {2, 7}}, {2}, {}, {}},  // decode of 1, then 2 joins with a 7-token chunk
      {{{1, 1}, {2, 5}}, {}, {}, {}},   // rest of 2's prompt: samples
      {{{1, 1}, {2, 1}}, {}, {}, {2}},  // 2 reaches max_tokens 2
      {{{1, 1}}, {}, {}, {1}},          // 1 reaches max_tokens 5
  });
  EXPECT_EQ(tokens_[1].size(), 5u);
  EXPECT_EQ(tokens_[2].size(), 2u);
}

TEST_F(SchedulerTest, MaxRunningBoundsTheBatchAndWaitingJoinFcfs) {
  Init(Config(4, 8, 16, /*max_running=*/2));
  for (uint64_t id = 1; id <= 3; ++id) scheduler_->Add(id, Prompt(2, 2));
  RunTable({
      {{{1, 2}, {2, 2}}, {1, 2}, {}, {}},
      {{{1, 1}, {2, 1}}, {}, {}, {1, 2}},
      {{{3, 2}}, {3}, {}, {}},
      {{{3, 1}}, {}, {}, {3}},
  });
}

TEST_F(SchedulerTest, StepTokenBudgetSplitsPrefillAcrossRequests) {
  Init(Config(4, 16, /*max_step_tokens=*/6, 4));
  scheduler_->Add(1, Prompt(4, 1));
  scheduler_->Add(2, Prompt(5, 1));
  RunTable({
      {{{1, 4}, {2, 2}}, {1, 2}, {}, {1}},  // 1 samples its only token; 2 gets what is left
      {{{2, 3}}, {}, {}, {2}},
  });
}

TEST_F(SchedulerTest, PreemptsTheYoungestWhenBlocksRunOutAndRecomputesIt) {
  // 4 blocks of 4 tokens; each request alone fits, together they do not.
  Init(Config(4, /*n_blocks=*/4, 16, 4));
  scheduler_->Add(1, Prompt(7, 6));  // up to 12 positions: 3 blocks
  scheduler_->Add(2, Prompt(4, 6));  // up to 9 positions: 3 blocks
  RunTable({
      {{{1, 7}, {2, 4}}, {1, 2}, {}, {}},  // 2 + 1 blocks
      {{{1, 1}, {2, 1}}, {}, {}, {}},      // 2 takes the last block for position 4
      {{{1, 1}}, {}, {2}, {}},             // 1 needs a 3rd block: 2 (youngest) is preempted, cannot rejoin yet
      {{{1, 1}}, {}, {}, {}},
      {{{1, 1}}, {}, {}, {}},
      {{{1, 1}}, {}, {}, {1}},             // 1 finishes and frees its blocks
      {{{2, 6}}, {}, {}, {}},              // 2 rejoins (no JoinRequest) and recomputes prompt + 2 tokens from 0
      {{{2, 1}}, {}, {}, {}},
      {{{2, 1}}, {}, {}, {}},
      {{{2, 1}}, {}, {}, {2}},
  });
  // Nothing lost or repeated across the preemption.
  EXPECT_EQ(tokens_[2], (std::vector<int>{100, 101, 102, 103, 104, 105}));
  EXPECT_EQ(tokens_[1], (std::vector<int>{100, 101, 102, 103, 104, 105}));
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
}

TEST_F(SchedulerTest, YoungestRequestPreemptsItselfRatherThanAnOlderOne) {
  Init(Config(4, /*n_blocks=*/3, 16, 4));
  scheduler_->Add(1, Prompt(5, 3));  // 2 blocks now, up to 7 positions
  scheduler_->Add(2, Prompt(4, 3));  // 1 block now, needs a 2nd for position 4
  RunTable({
      {{{1, 5}, {2, 4}}, {1, 2}, {}, {}},
      {{{1, 1}}, {}, {2}, {}},   // 2 needs a block, none free, 2 is the youngest: it yields
      {{{1, 1}}, {}, {}, {1}},   // 2 still waits (needs 2 blocks, 1 free)
      {{{2, 5}}, {}, {}, {}},    // rejoin: prompt 4 + 1 generated, from position 0
      {{{2, 1}}, {}, {}, {2}},
  });
  EXPECT_EQ(tokens_[2], (std::vector<int>{100, 101, 102}));
}

TEST_F(SchedulerTest, CancelFreesBlocksAtOnceAndLeavesInTheNextPlan) {
  Init(Config(4, 8, 16, 4));
  scheduler_->Add(1, Prompt(5, 10));
  scheduler_->Add(2, Prompt(3, 10));
  RunStep({{{1, 5}, {2, 3}}, {1, 2}, {}, {}}, 0);
  EXPECT_EQ(scheduler_->n_used_blocks(), 3);
  scheduler_->Add(3, Prompt(2, 10));  // queued, then cancelled before it ever ran
  scheduler_->Add(4, Prompt(2, 10));
  EXPECT_TRUE(scheduler_->Cancel(1));
  EXPECT_TRUE(scheduler_->Cancel(3));
  EXPECT_FALSE(scheduler_->Cancel(1));   // already gone
  EXPECT_FALSE(scheduler_->Cancel(99));  // never known
  EXPECT_EQ(scheduler_->n_used_blocks(), 1);
  EXPECT_EQ(scheduler_->Find(1), nullptr);
  // Only 1 was known to the workers: 3 never joined.
  RunStep({{{2, 1}, {4, 2}}, {4}, {}, {}, /*left=*/{1}}, 1);
  EXPECT_FALSE(executor_->knows(1));
  RunStep({{{2, 1}, {4, 1}}, {}, {}, {}}, 2);  // leaves are sent once
}

TEST_F(SchedulerTest, OutputsForRetiredRequestsAreStale) {
  Init(Config(4, 8, 16, 4));
  scheduler_->Add(1, Prompt(3, 10));
  scheduler_->Add(2, Prompt(3, 10));
  std::optional<proto::StepPlan> plan = scheduler_->Schedule();
  ASSERT_TRUE(plan.has_value());
  // Cancelled while its plan is in flight: the worker still computes and samples it.
  EXPECT_TRUE(scheduler_->Cancel(1));
  Result<AppliedStep> applied = scheduler_->Apply(executor_->Execute(*plan));
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->n_stale, 1);
  ASSERT_EQ(applied->events.size(), 1u);
  EXPECT_EQ(applied->events[0].request_id, 2u);
  EXPECT_EQ(scheduler_->Find(2)->generated.size(), 1u);
}

TEST_F(SchedulerTest, ResultOfTheWrongPlanIsRejectedWithoutChange) {
  Init(Config(4, 8, 16, 4));
  proto::StepResult result;
  result.set_seq(1);
  EXPECT_FALSE(scheduler_->Apply(result).ok());  // nothing in flight
  scheduler_->Add(1, Prompt(3, 10));
  std::optional<proto::StepPlan> plan = scheduler_->Schedule();
  ASSERT_TRUE(plan.has_value());
  proto::StepResult wrong = executor_->Execute(*plan);
  wrong.set_seq(7);
  Result<AppliedStep> applied = scheduler_->Apply(wrong);
  ASSERT_FALSE(applied.ok());
  EXPECT_NE(applied.status().message().find("expected plan 1"), std::string::npos) << applied.status().message();
  EXPECT_EQ(scheduler_->n_in_flight(), 1);
  EXPECT_TRUE(scheduler_->Find(1)->generated.empty());
  wrong.set_seq(1);
  EXPECT_TRUE(scheduler_->Apply(wrong).ok());
  EXPECT_EQ(scheduler_->Find(1)->generated.size(), 1u);
}

TEST_F(SchedulerTest, StopTokenFinishesWithoutAToken) {
  Init(Config(4, 8, 16, 4));
  scheduler_->Add(1, Prompt(3, 10));
  executor_->Script(1, {50, kEos});
  std::vector<RequestEvent> events = RunStep({{{1, 3}}, {1}, {}, {}}, 0);
  events = RunStep({{{1, 1}}, {}, {}, {1}}, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].token, -1);
  EXPECT_EQ(events[0].finish, FinishReason::kStop);
  EXPECT_EQ(tokens_[1], (std::vector<int>{50}));
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
}

TEST_F(SchedulerTest, LowerPriorityValueJoinsFirstFcfsAmongEquals) {
  Init(Config(4, 8, 16, /*max_running=*/1));
  scheduler_->Add(1, Prompt(2, 1), /*priority=*/0);
  scheduler_->Add(2, Prompt(2, 1), /*priority=*/-1);
  scheduler_->Add(3, Prompt(2, 1), /*priority=*/0);
  RunTable({
      {{{2, 2}}, {2}, {}, {2}},
      {{{1, 2}}, {1}, {}, {1}},
      {{{3, 2}}, {3}, {}, {3}},
  });
}

TEST_F(SchedulerTest, PipelineDepthTwoDecodesAheadOfResults) {
  Init(Config(4, 8, 16, 4, /*depth=*/2));
  scheduler_->Add(1, Prompt(3, 3));
  std::optional<proto::StepPlan> p1 = scheduler_->Schedule();
  ASSERT_TRUE(p1.has_value());
  ASSERT_TRUE(scheduler_->can_schedule());
  std::optional<proto::StepPlan> p2 = scheduler_->Schedule();  // decodes the token p1 will sample
  ASSERT_TRUE(p2.has_value());
  EXPECT_FALSE(scheduler_->can_schedule());
  ASSERT_EQ(p2->entries_size(), 1);
  EXPECT_EQ(p2->entries(0).start_pos(), 3);
  EXPECT_EQ(p2->entries(0).n_tokens(), 1);
  ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*p1)).ok());
  std::optional<proto::StepPlan> p3 = scheduler_->Schedule();
  ASSERT_TRUE(p3.has_value());
  EXPECT_EQ(p3->entries(0).start_pos(), 4);
  ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*p2)).ok());
  // Token 3 (from p3) may be the last (max_tokens 3): nothing more until its result.
  EXPECT_FALSE(scheduler_->Schedule().has_value());
  Result<AppliedStep> last = scheduler_->Apply(executor_->Execute(*p3));
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(last->events.size(), 1u);
  EXPECT_EQ(last->events[0].finish, FinishReason::kLength);
  EXPECT_EQ(scheduler_->Find(1), nullptr);
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
}

TEST_F(SchedulerTest, PipelinedEntryAfterAStopIsSkippedByTheWorker) {
  Init(Config(4, 8, 16, 4, /*depth=*/2));
  scheduler_->Add(1, Prompt(3, 10));
  executor_->Script(1, {kEos});
  std::optional<proto::StepPlan> p1 = scheduler_->Schedule();
  std::optional<proto::StepPlan> p2 = scheduler_->Schedule();
  ASSERT_TRUE(p1 && p2);
  Result<AppliedStep> a1 = scheduler_->Apply(executor_->Execute(*p1));
  ASSERT_TRUE(a1.ok());
  ASSERT_EQ(a1->events.size(), 1u);
  EXPECT_EQ(a1->events[0].finish, FinishReason::kStop);
  Result<AppliedStep> a2 = scheduler_->Apply(executor_->Execute(*p2));
  ASSERT_TRUE(a2.ok());
  EXPECT_TRUE(a2->events.empty());
  EXPECT_EQ(executor_->n_stale_entries(), 1);
  EXPECT_FALSE(scheduler_->has_work());
}

TEST_F(SchedulerTest, TakeAllEmptiesTheSchedulerOldestFirst) {
  Init(Config(4, 8, 16, 1));
  scheduler_->Add(5, Prompt(3, 10));
  scheduler_->Add(6, Prompt(3, 10));
  ASSERT_TRUE(scheduler_->Schedule().has_value());
  EXPECT_EQ(scheduler_->TakeAll(), (Ids{5, 6}));
  EXPECT_FALSE(scheduler_->has_work());
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
  EXPECT_EQ(scheduler_->n_in_flight(), 0);
  EXPECT_TRUE(scheduler_->can_schedule());
}

}  // namespace
}  // namespace flover
