// Executor::Join with generated tokens (a request moved from a failed replica): the
// request continues with exactly the tokens it would have produced without the move,
// greedy or sampled (the draws are counted from the generated tokens, the repetition
// penalty sees them), on the real stories260K model.
#include "worker/engine/executor.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "tests/test_paths.h"
#include "worker/engine/cpu_backend.h"
#include "worker/model/model_loader.h"

namespace flover {
namespace {

constexpr int kBlockSize = 16;

// One executor on its own KV pool, as a fresh replica's worker has.
class Replica {
 public:
  explicit Replica(const ModelWeights& weights) {
    blocks_per_seq_ = (weights.spec.max_seq_len + kBlockSize - 1) / kBlockSize;
    Result<std::unique_ptr<CpuBackend>> backend =
        CpuBackend::Create(weights, {}, nullptr, KvCacheConfig{kBlockSize, int64_t{1} << 40, blocks_per_seq_});
    EXPECT_TRUE(backend.ok()) << backend.status().ToString();
    backend_ = std::move(backend).value();
    executor_ = std::make_unique<Executor>(backend_.get());
    for (int b = 0; b < blocks_per_seq_; ++b) blocks_.push_back(b);
  }

  Executor& executor() { return *executor_; }

  // Runs request `id` (joined already) to its end: its whole uncomputed context in the
  // first step, then one token per step. Returns the tokens it generates.
  std::vector<int> RunToEnd(uint64_t id = 1) {
    std::vector<int> tokens;
    std::vector<ExecOutput> outputs;
    bool first = true;
    for (int step = 0; step < 1000; ++step) {
      const Sequence* seq = executor_->Find(id);
      if (!seq || seq->finish != FinishReason::kNone) break;
      const ExecEntry entry{id, seq->n_computed, first ? seq->n_uncomputed() : 1,
                            first ? std::span<const int>(blocks_) : std::span<const int>()};
      first = false;
      outputs.clear();
      const Status s = executor_->Run(std::span<const ExecEntry>(&entry, 1), &outputs);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok()) break;
      for (const ExecOutput& o : outputs)
        if (o.finish != FinishReason::kStop) tokens.push_back(o.token);
    }
    return tokens;
  }

 private:
  int blocks_per_seq_ = 0;
  std::unique_ptr<CpuBackend> backend_;
  std::unique_ptr<Executor> executor_;
  std::vector<int> blocks_;
};

ModelWeights StoriesWeights() {
  Result<LoadedModel> m = LoadModel(testing::Stories260kBin());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m->weights) : ModelWeights{};
}

RequestParams Request(float temperature) {
  RequestParams r;
  r.prompt = {1, 403, 407, 261};  // BOS + a few story tokens
  r.sampling.temperature = temperature;
  r.sampling.top_p = 0.9f;
  r.sampling.repetition_penalty = 1.2f;
  r.sampling.seed = 1234;
  r.stop.max_tokens = 40;
  r.stop.ignore_eos = true;
  return r;
}

TEST(ExecutorTest, JoiningWithGeneratedTokensContinuesTheSameTokens) {
  const ModelWeights weights = StoriesWeights();
  ASSERT_FALSE(weights.layers.empty());
  for (float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE("temperature " + std::to_string(temperature));
    Replica first(weights);
    ASSERT_TRUE(first.executor().Join(1, Request(temperature)).ok());
    const std::vector<int> whole = first.RunToEnd();
    ASSERT_EQ(whole.size(), 40u);
    for (int moved_after : {1, 17, 39}) {
      SCOPED_TRACE("moved after " + std::to_string(moved_after) + " tokens");
      Replica other(weights);
      const std::vector<int> generated(whole.begin(), whole.begin() + moved_after);
      ASSERT_TRUE(other.executor().Join(1, Request(temperature), generated).ok());
      EXPECT_EQ(other.executor().Find(1)->n_generated(), moved_after);
      EXPECT_EQ(other.RunToEnd(), std::vector<int>(whole.begin() + moved_after, whole.end()));
    }
  }
}

TEST(ExecutorTest, GeneratedTokensThatFillTheRequestOrLeaveTheVocabularyAreRejected) {
  const ModelWeights weights = StoriesWeights();
  ASSERT_FALSE(weights.layers.empty());
  Replica replica(weights);
  RequestParams r = Request(0.0f);
  r.stop.max_tokens = 3;
  Status s = replica.executor().Join(1, r, std::vector<int>{5, 6, 7});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("leave none to generate"), std::string::npos) << s.ToString();
  s = replica.executor().Join(2, Request(0.0f), std::vector<int>{5, 512});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("generated token 512 is outside the vocabulary of 512"), std::string::npos)
      << s.ToString();
  RequestParams long_one = Request(0.0f);
  long_one.stop.max_tokens = 10000;
  s = replica.executor().Join(3, long_one, std::vector<int>(512 + 1 - long_one.prompt.size(), 5));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "the context is full";
  EXPECT_EQ(replica.executor().n_requests(), 0);
  // A request whose newest token sits at the last position has one token to go.
  ASSERT_TRUE(replica.executor().Join(4, long_one, std::vector<int>(512 - long_one.prompt.size(), 5)).ok());
  ASSERT_EQ(replica.executor().Find(4)->tokens.size(), 512u);
  EXPECT_EQ(replica.RunToEnd(4).size(), 1u);
  EXPECT_EQ(replica.executor().Find(4)->finish, FinishReason::kLength);
}

}  // namespace
}  // namespace flover
