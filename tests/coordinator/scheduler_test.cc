// Scheduler tests as tables of steps: each row is one Schedule() -> fake executor ->
// Apply() round with the expected plan (entries, joins, resets, leaves) and the requests
// that finished. The fake executor plays the worker's side of the contract and checks
// every plan against its own state (start positions, block tables, plan sequence).
// Policies that depend on time (dynamic) are tested with timed tables: each row says
// when it runs, which requests arrive and which are cancelled before Schedule(), and
// when the batch window closes afterwards.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "common/block_allocator.h"
#include "common/cluster_config.h"
#include "common/protocol.h"

namespace flover {
namespace {

constexpr int kEos = 2;
constexpr int kBos = 1;

// The worker side: keeps each request's tokens, KV progress and block table, samples
// scripted tokens (default 100 + index of the generated token) and applies the finish
// rule (FinishAfterSample: EOS/BOS, stop ids, and StopsByLength) as workers do.
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
      s.tokens.insert(s.tokens.end(), join.generated().begin(), join.generated().end());
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
    out->set_token(token);
    const FinishReason finish =
        FinishAfterSample(token, s.stop, s.n_prompt, n_generated, ModelStops{max_seq_len_, kBos, kEos});
    out->set_finish(ToProto(finish));
    if (finish != FinishReason::kStop) s.tokens.push_back(token);
    if (finish != FinishReason::kNone) seqs_.erase(id);
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
using std::chrono::milliseconds;

struct Step {
  Entries scheduled;
  Ids joined;
  Ids preempted;  // resets
  Ids finished;
  Ids left = {};  // leaves
};

struct Arrival {
  uint64_t id;
  int n_prompt;
  int max_tokens;
};

// One row of a timed table: at at_ms, `arrive` are added and `cancel` cancelled, then
// Schedule(at_ms) must return the plan described (none when `scheduled` is empty),
// which is executed and applied; afterwards batch_deadline() must be deadline_ms (-1:
// none).
struct TimedStep {
  int at_ms;
  std::vector<Arrival> arrive = {};
  Ids cancel = {};
  Entries scheduled = {};
  Ids joined = {};
  Ids preempted = {};
  Ids finished = {};
  Ids left = {};
  int deadline_ms = -1;
};

// Far from the clock's epoch, which the time parameters default to: a test that
// forgot to pass a time would show.
const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1);
Clock::time_point At(int ms) { return kT0 + milliseconds(ms); }

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
  Ids TakeAllIds() {
    Ids ids;
    for (const TakenRequest& r : scheduler_->TakeAll()) ids.push_back(r.id);
    return ids;
  }

  void Init(SchedulerConfig config) {
    config_ = config;
    scheduler_ = std::make_unique<Scheduler>(config);
    executor_ = std::make_unique<FakeExecutor>(config.block_size, config.n_blocks, config.max_seq_len);
  }

  // Runs one round at `now` and checks it against `step`. Returns the applied events.
  std::vector<RequestEvent> RunStep(const Step& step, int index, Clock::time_point now = kT0) {
    SCOPED_TRACE("step " + std::to_string(index + 1));
    std::optional<proto::StepPlan> plan = scheduler_->Schedule(now);
    if (!plan) {
      ADD_FAILURE() << "no plan";
      return {};
    }
    EXPECT_EQ(plan->seq(), static_cast<uint64_t>(++seq_));
    EXPECT_EQ(plan->separate_passes(), config_.policy == SchedulerPolicy::kInstances);
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

  void RunTimedTable(const std::vector<TimedStep>& rows) {
    for (size_t i = 0; i < rows.size(); ++i) {
      const TimedStep& row = rows[i];
      SCOPED_TRACE("row " + std::to_string(i + 1) + " at " + std::to_string(row.at_ms) + " ms");
      for (const Arrival& a : row.arrive) scheduler_->Add(a.id, Prompt(a.n_prompt, a.max_tokens), 0, At(row.at_ms));
      for (uint64_t id : row.cancel) EXPECT_TRUE(scheduler_->Cancel(id)) << "cancel " << id;
      if (row.scheduled.empty()) {
        if (std::optional<proto::StepPlan> plan = scheduler_->Schedule(At(row.at_ms))) {
          ADD_FAILURE() << "unexpected plan with " << plan->entries_size() << " entries";
          ++seq_;  // run it, so that the following rows report their own differences
          EXPECT_TRUE(scheduler_->Apply(executor_->Execute(*plan)).ok());
        }
      } else {
        RunStep({row.scheduled, row.joined, row.preempted, row.finished, row.left}, static_cast<int>(i),
                At(row.at_ms));
      }
      const std::optional<Clock::time_point> deadline = scheduler_->batch_deadline();
      if (row.deadline_ms < 0) {
        EXPECT_FALSE(deadline.has_value()) << "the window closes at "
                                           << std::chrono::duration_cast<milliseconds>(*deadline - kT0).count();
      } else {
        EXPECT_EQ(deadline, std::optional<Clock::time_point>(At(row.deadline_ms)));
      }
    }
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

SchedulerConfig Config(int block_size, int n_blocks, int max_step_tokens, int max_running, int depth = 1,
                       SchedulerPolicy policy = SchedulerPolicy::kFused) {
  SchedulerConfig c;
  c.replica = 0;
  c.block_size = block_size;
  c.n_blocks = n_blocks;
  c.max_step_tokens = max_step_tokens;
  c.max_running = max_running;
  c.max_seq_len = 64;
  c.pipeline_depth = depth;
  c.policy = policy;
  return c;
}

SchedulerConfig Dynamic(SchedulerConfig c, int window_ms, int max_batch) {
  c.policy = SchedulerPolicy::kDynamic;
  c.batch_window = milliseconds(window_ms);
  c.max_batch = max_batch;
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
  EXPECT_NE(applied.status().message().find("expected the result of step 1"), std::string::npos)
      << applied.status().message();
  EXPECT_EQ(scheduler_->n_in_flight(), 1);
  EXPECT_TRUE(scheduler_->Find(1)->generated.empty());
  wrong.set_seq(1);
  EXPECT_TRUE(scheduler_->Apply(wrong).ok());
  EXPECT_EQ(scheduler_->Find(1)->generated.size(), 1u);
}

// The scheduler decides when a request ends (FinishAfterSample), and takes nothing from
// a result that cannot be the workers' honest answer to the plan: no token of it is
// kept, so a request moved elsewhere goes on from what its client got.
TEST_F(SchedulerTest, ResultsThatCannotAnswerThePlanAreRejectedWithoutChange) {
  struct Row {
    const char* what;
    std::function<void(proto::StepResult*)>
        edit;  // of the honest result: request 1 samples 100, request 2 does not sample
    const char* error;
  };
  const std::vector<Row> rows = {
      {"no output for a request that sampled", [](proto::StepResult* r) { r->clear_outputs(); },
       "request 1 sampled in it but has no output"},
      {"an output for a request not in the plan",
       [](proto::StepResult* r) { r->mutable_outputs(0)->set_request_id(3); },
       "request 3 has an output but is not in the plan"},
      {"an output for an entry that does not sample",
       [](proto::StepResult* r) { r->mutable_outputs(0)->set_request_id(2); },
       "request 2 has an output, but its entry does not reach a sample"},
      {"two outputs for one request", [](proto::StepResult* r) { *r->add_outputs() = r->outputs(0); },
       "request 1 has two outputs"},
      {"past max_tokens", [](proto::StepResult* r) { r->mutable_outputs(0)->set_finish(proto::FINISH_NONE); },
       "request 1 sampled token 100 after 0 generated token(s) and was reported finished 'FINISH_NONE'; by its stop "
       "conditions it is 'length'"},
      {"past EOS",
       [](proto::StepResult* r) {
         r->mutable_outputs(0)->set_token(kEos);
         r->mutable_outputs(0)->set_finish(proto::FINISH_LENGTH);
       },
       "it is 'stop'"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    Init(Config(4, 8, /*max_step_tokens=*/6, 4));
    scheduler_->Add(1, Prompt(2, /*max_tokens=*/1));
    scheduler_->Add(2, Prompt(8, 3));  // 4 of its 8 tokens in this step: no sample
    std::optional<proto::StepPlan> plan = scheduler_->Schedule();
    ASSERT_TRUE(plan.has_value());
    ASSERT_EQ(plan->entries_size(), 2);
    const proto::StepResult honest = executor_->Execute(*plan);
    ASSERT_EQ(honest.outputs_size(), 1);
    ASSERT_EQ(honest.outputs(0).finish(), proto::FINISH_LENGTH);
    proto::StepResult wrong = honest;
    row.edit(&wrong);
    Result<AppliedStep> applied = scheduler_->Apply(wrong);
    ASSERT_FALSE(applied.ok());
    EXPECT_EQ(applied.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(applied.status().message().find(row.error), std::string::npos) << applied.status().message();
    EXPECT_EQ(scheduler_->n_in_flight(), 1);
    ASSERT_NE(scheduler_->Find(1), nullptr);
    EXPECT_TRUE(scheduler_->Find(1)->generated.empty());
    applied = scheduler_->Apply(honest);
    ASSERT_TRUE(applied.ok()) << applied.status().ToString();
    EXPECT_EQ(scheduler_->Find(1), nullptr) << "finished by length";
  }
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

TEST_F(SchedulerTest, ATakenRequestGoesOnElsewhereFromItsGeneratedTokens) {
  // Replica A generates 2 tokens of request 7, then fails; replica B gets the request
  // with them: it joins with its generated tokens, recomputes prompt + generated in one
  // chunk, and generates the rest, up to the same max_tokens in all.
  Init(Config(4, 8, 16, 1));
  scheduler_->Add(7, Prompt(3, 10));
  for (int step = 0; step < 2; ++step) {
    std::optional<proto::StepPlan> plan = scheduler_->Schedule();
    ASSERT_TRUE(plan.has_value());
    ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*plan)).ok());
  }
  std::vector<TakenRequest> taken = scheduler_->TakeAll();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, 7u);
  EXPECT_EQ(taken[0].params.prompt.size(), 3u);
  EXPECT_EQ(taken[0].generated, (std::vector<int>{100, 101}));

  Init(Config(4, 8, 16, 1));  // replica B: its own pool and workers
  scheduler_->Add(7, std::move(taken[0].params), 0, {}, taken[0].generated);
  std::optional<proto::StepPlan> plan = scheduler_->Schedule();
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->joins_size(), 1);
  EXPECT_EQ(std::vector<int>(plan->joins(0).generated().begin(), plan->joins(0).generated().end()),
            (std::vector<int>{100, 101}));
  ASSERT_EQ(plan->entries_size(), 1);
  EXPECT_EQ(plan->entries(0).start_pos(), 0);
  EXPECT_EQ(plan->entries(0).n_tokens(), 5);  // prompt + generated
  std::vector<int> tokens;
  FinishReason finish = FinishReason::kNone;
  for (int guard = 0; plan && guard < 20; ++guard) {
    Result<AppliedStep> applied = scheduler_->Apply(executor_->Execute(*plan));
    ASSERT_TRUE(applied.ok());
    for (const RequestEvent& e : applied->events) {
      if (e.token >= 0) tokens.push_back(e.token);
      if (e.finish != FinishReason::kNone) finish = e.finish;
    }
    plan = scheduler_->Schedule();
  }
  EXPECT_EQ(tokens, (std::vector<int>{102, 103, 104, 105, 106, 107, 108, 109}));
  EXPECT_EQ(finish, FinishReason::kLength);
  EXPECT_FALSE(scheduler_->has_work());
}

TEST_F(SchedulerTest, ATakenRequestAtTheLastPositionGetsItsLastToken) {
  // prompt + generated == max_seq_len (64): the newest token is at position 63, which
  // is computed, and the sample after it ends the request (the context is full).
  Init(Config(4, 16, 64, 1));
  scheduler_->Add(3, Prompt(4, 1000), 0, {}, std::vector<int>(60, 7));
  std::optional<proto::StepPlan> plan = scheduler_->Schedule();
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->entries_size(), 1);
  EXPECT_EQ(plan->entries(0).n_tokens(), 64);
  Result<AppliedStep> applied = scheduler_->Apply(executor_->Execute(*plan));
  ASSERT_TRUE(applied.ok());
  ASSERT_EQ(applied->events.size(), 1u);
  EXPECT_EQ(applied->events[0].finish, FinishReason::kLength);
  EXPECT_FALSE(scheduler_->has_work());
}

TEST_F(SchedulerTest, TakeAllEmptiesTheSchedulerOldestFirst) {
  Init(Config(4, 8, 16, 1));
  scheduler_->Add(5, Prompt(3, 10));
  scheduler_->Add(6, Prompt(3, 10));
  ASSERT_TRUE(scheduler_->Schedule().has_value());
  EXPECT_EQ(TakeAllIds(), (Ids{5, 6}));
  EXPECT_FALSE(scheduler_->has_work());
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
  EXPECT_EQ(scheduler_->n_in_flight(), 0);
  EXPECT_TRUE(scheduler_->can_schedule());
}


// ---------------------------------------------------------------- policies

TEST(SchedulerPolicyTest, NamesMatchTheConfigAndLimitTheRunningBatch) {
  for (const std::string& name : SchedulerPolicyNames()) {
    std::optional<SchedulerPolicy> policy = SchedulerPolicyFromName(name);
    ASSERT_TRUE(policy.has_value()) << name;
    EXPECT_EQ(SchedulerPolicyName(*policy), name);
  }
  EXPECT_FALSE(SchedulerPolicyFromName("fast").has_value());
  SchedulerConfig c = Config(4, 8, 16, /*max_running=*/6);
  c.max_batch = 4;
  EXPECT_EQ(c.running_limit(), 6);
  c.policy = SchedulerPolicy::kInstances;
  EXPECT_EQ(c.running_limit(), 6);
  c.policy = SchedulerPolicy::kSequential;
  EXPECT_EQ(c.running_limit(), 1);
  c.policy = SchedulerPolicy::kDynamic;
  EXPECT_EQ(c.running_limit(), 4);
  c.max_batch = 9;
  EXPECT_EQ(c.running_limit(), 6);
}

TEST_F(SchedulerTest, DynamicWindowClosesByTimeAndLateArrivalsWaitForTheNextBatch) {
  Init(Dynamic(Config(4, 16, 32, 8), /*window_ms=*/10, /*max_batch=*/4));
  RunTimedTable({
      {.at_ms = 0, .arrive = {{1, 3, 2}}, .deadline_ms = 10},  // the window opens
      {.at_ms = 4, .arrive = {{2, 3, 3}}, .deadline_ms = 10},  // it counts from the oldest
      {.at_ms = 9, .deadline_ms = 10},
      {.at_ms = 10, .scheduled = {{1, 3}, {2, 3}}, .joined = {1, 2}},  // closed: the batch runs
      // 3 arrives while the batch runs: it waits, although the batch has room.
      {.at_ms = 11, .arrive = {{3, 2, 2}}, .scheduled = {{1, 1}, {2, 1}}, .finished = {1}},
      {.at_ms = 12, .scheduled = {{2, 1}}, .finished = {2}, .deadline_ms = 21},  // batch done: 3's window
      {.at_ms = 20, .deadline_ms = 21},
      {.at_ms = 21, .scheduled = {{3, 2}}, .joined = {3}},
      {.at_ms = 22, .scheduled = {{3, 1}}, .finished = {3}},
  });
  EXPECT_FALSE(scheduler_->has_work());
  EXPECT_EQ(scheduler_->n_batch(), 0);
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
}

TEST_F(SchedulerTest, DynamicWindowClosesEarlyWhenMaxBatchRequestsWait) {
  Init(Dynamic(Config(4, 16, 32, 8), /*window_ms=*/1000, /*max_batch=*/2));
  RunTimedTable({
      {.at_ms = 0, .arrive = {{1, 2, 1}}, .deadline_ms = 1000},
      // 3 wait: a batch of 2 forms at once; 3 waits for the next one.
      {.at_ms = 5, .arrive = {{2, 2, 1}, {3, 2, 1}}, .scheduled = {{1, 2}, {2, 2}}, .joined = {1, 2},
       .finished = {1, 2}, .deadline_ms = 1005},
      {.at_ms = 6, .deadline_ms = 1005},
      // A second waiting request fills the next batch: it forms without waiting.
      {.at_ms = 7, .arrive = {{4, 2, 2}}, .scheduled = {{3, 2}, {4, 2}}, .joined = {3, 4}, .finished = {3}},
      {.at_ms = 8, .scheduled = {{4, 1}}, .finished = {4}},
  });
}

TEST_F(SchedulerTest, DynamicBatchIsBoundedByMaxRunning) {
  Init(Dynamic(Config(4, 16, 32, /*max_running=*/2), /*window_ms=*/0, /*max_batch=*/8));
  RunTimedTable({
      {.at_ms = 0, .arrive = {{1, 2, 2}, {2, 2, 1}, {3, 2, 1}}, .scheduled = {{1, 2}, {2, 2}}, .joined = {1, 2},
       .finished = {2}},
      {.at_ms = 1, .scheduled = {{1, 1}}, .finished = {1}, .deadline_ms = 0},  // 3 never joined batch 1
      {.at_ms = 2, .scheduled = {{3, 2}}, .joined = {3}, .finished = {3}},
  });
}

TEST_F(SchedulerTest, DynamicBatchIsBoundedByTheKvPool) {
  // 4 blocks of 4 tokens: two 6-token prompts take them all.
  Init(Dynamic(Config(4, /*n_blocks=*/4, 32, 8), /*window_ms=*/0, /*max_batch=*/8));
  RunTimedTable({
      {.at_ms = 0, .arrive = {{1, 6, 2}, {2, 6, 2}, {3, 2, 1}}, .scheduled = {{1, 6}, {2, 6}}, .joined = {1, 2}},
      {.at_ms = 1, .scheduled = {{1, 1}, {2, 1}}, .finished = {1, 2}, .deadline_ms = 0},
      {.at_ms = 2, .scheduled = {{3, 2}}, .joined = {3}, .finished = {3}},
  });
}

TEST_F(SchedulerTest, DynamicPreemptedMemberRejoinsBeforeTheNextBatch) {
  // As PreemptsTheYoungestWhenBlocksRunOutAndRecomputesIt, with a late arrival (3) that
  // would fit beside the rejoining member but must wait until the batch is done.
  Init(Dynamic(Config(4, /*n_blocks=*/4, 16, 4), /*window_ms=*/0, /*max_batch=*/4));
  RunTimedTable({
      {.at_ms = 0, .arrive = {{1, 7, 6}, {2, 4, 6}}, .scheduled = {{1, 7}, {2, 4}}, .joined = {1, 2}},
      {.at_ms = 1, .arrive = {{3, 2, 1}}, .scheduled = {{1, 1}, {2, 1}}},
      {.at_ms = 2, .scheduled = {{1, 1}}, .preempted = {2}},
      {.at_ms = 3, .scheduled = {{1, 1}}},
      {.at_ms = 4, .scheduled = {{1, 1}}},
      {.at_ms = 5, .scheduled = {{1, 1}}, .finished = {1}},
      {.at_ms = 6, .scheduled = {{2, 6}}},  // 2 rejoins alone
      {.at_ms = 7, .scheduled = {{2, 1}}},
      {.at_ms = 8, .scheduled = {{2, 1}}},
      {.at_ms = 9, .scheduled = {{2, 1}}, .finished = {2}, .deadline_ms = 1},
      {.at_ms = 10, .scheduled = {{3, 2}}, .joined = {3}, .finished = {3}},
  });
  EXPECT_EQ(tokens_[2], (std::vector<int>{100, 101, 102, 103, 104, 105}));
}

TEST_F(SchedulerTest, DynamicCancelledMembersLeaveTheBatch) {
  Init(Dynamic(Config(4, 16, 32, 8), /*window_ms=*/0, /*max_batch=*/4));
  RunTimedTable({
      {.at_ms = 0, .arrive = {{1, 3, 10}, {2, 3, 10}}, .scheduled = {{1, 3}, {2, 3}}, .joined = {1, 2}},
      {.at_ms = 1, .arrive = {{3, 2, 1}}, .scheduled = {{1, 1}, {2, 1}}},
      {.at_ms = 2, .cancel = {1}, .scheduled = {{2, 1}}, .left = {1}},
      // The last member is cancelled: the batch is over and 3's window has closed.
      {.at_ms = 3, .cancel = {2}, .scheduled = {{3, 2}}, .joined = {3}, .finished = {3}, .left = {2}},
  });
  EXPECT_EQ(scheduler_->n_batch(), 0);
  EXPECT_EQ(scheduler_->n_used_blocks(), 0);
}

TEST_F(SchedulerTest, DynamicTakeAllEndsTheBatch) {
  Init(Dynamic(Config(4, 16, 32, 8), /*window_ms=*/5, /*max_batch=*/4));
  scheduler_->Add(1, Prompt(3, 10), 0, At(0));
  RunStep({{{1, 3}}, {1}, {}, {}}, 0, At(5));
  EXPECT_EQ(scheduler_->n_batch(), 1);
  EXPECT_EQ(TakeAllIds(), (Ids{1}));
  EXPECT_EQ(scheduler_->n_batch(), 0);
  scheduler_->Add(2, Prompt(3, 10), 0, At(10));
  EXPECT_EQ(scheduler_->batch_deadline(), std::optional<Clock::time_point>(At(15)));
}

TEST_F(SchedulerTest, SequentialRunsOneRequestAtATimeFcfs) {
  Init(Config(4, 16, 32, /*max_running=*/8, 1, SchedulerPolicy::kSequential));
  scheduler_->Add(1, Prompt(3, 2));
  scheduler_->Add(2, Prompt(2, 2));
  RunStep({{{1, 3}}, {1}, {}, {}}, 0);
  scheduler_->Add(3, Prompt(2, 1));
  RunTable({
      {{{1, 1}}, {}, {}, {1}},  // 2 and 3 wait although max_running is 8
      {{{2, 2}}, {2}, {}, {}},
      {{{2, 1}}, {}, {}, {2}},
      {{{3, 2}}, {3}, {}, {3}},
  });
  EXPECT_FALSE(scheduler_->has_work());
}

TEST_F(SchedulerTest, SequentialWithPipelineWaitsForTheLastResultBeforeTheNextJoins) {
  Init(Config(4, 16, 32, 8, /*depth=*/2, SchedulerPolicy::kSequential));
  scheduler_->Add(1, Prompt(3, 10));
  scheduler_->Add(2, Prompt(2, 1));
  executor_->Script(1, {50, kEos});
  std::optional<proto::StepPlan> p1 = scheduler_->Schedule();
  std::optional<proto::StepPlan> p2 = scheduler_->Schedule();  // decodes ahead; 2 does not join
  ASSERT_TRUE(p1 && p2);
  ASSERT_EQ(p2->entries_size(), 1);
  EXPECT_EQ(p2->entries(0).request_id(), 1u);
  ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*p1)).ok());
  std::optional<proto::StepPlan> p3 = scheduler_->Schedule();
  ASSERT_TRUE(p3.has_value());
  ASSERT_EQ(p3->entries_size(), 1);
  EXPECT_EQ(p3->entries(0).request_id(), 1u);
  EXPECT_EQ(p3->joins_size(), 0);
  Result<AppliedStep> a2 = scheduler_->Apply(executor_->Execute(*p2));  // 1 stops on EOS
  ASSERT_TRUE(a2.ok());
  ASSERT_EQ(a2->events.size(), 1u);
  EXPECT_EQ(a2->events[0].finish, FinishReason::kStop);
  std::optional<proto::StepPlan> p4 = scheduler_->Schedule();  // now 2 joins
  ASSERT_TRUE(p4.has_value());
  ASSERT_EQ(p4->entries_size(), 1);
  EXPECT_EQ(p4->entries(0).request_id(), 2u);
  ASSERT_TRUE(scheduler_->Apply(executor_->Execute(*p3)).ok());  // stale entry of 1
  EXPECT_EQ(executor_->n_stale_entries(), 1);
  Result<AppliedStep> a4 = scheduler_->Apply(executor_->Execute(*p4));
  ASSERT_TRUE(a4.ok());
  ASSERT_EQ(a4->events.size(), 1u);
  EXPECT_EQ(a4->events[0].finish, FinishReason::kLength);
  EXPECT_FALSE(scheduler_->has_work());
}

TEST_F(SchedulerTest, InstancesSchedulesLikeFusedAndAsksForSeparatePasses) {
  // The table of DecodesFirstThenPrefillChunksThenJoins; RunStep checks that every
  // plan has separate_passes.
  Init(Config(4, 8, 8, 4, 1, SchedulerPolicy::kInstances));
  scheduler_->Add(1, Prompt(3, 5));
  RunStep({{{1, 3}}, {1}, {}, {}}, 0);
  scheduler_->Add(2, Prompt(12, 2));
  RunTable({
      {{{1, 1}, {2, 7}}, {2}, {}, {}},
      {{{1, 1}, {2, 5}}, {}, {}, {}},
      {{{1, 1}, {2, 1}}, {}, {}, {2}},
      {{{1, 1}}, {}, {}, {1}},
  });
  EXPECT_EQ(tokens_[1].size(), 5u);
  EXPECT_EQ(tokens_[2].size(), 2u);
}

}  // namespace
}  // namespace flover
