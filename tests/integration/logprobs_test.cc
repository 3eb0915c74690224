// Log-probabilities and OpenAI's penalties end to end: the real flover-coordinator and
// two tensor-parallel flover-worker daemons serving stories260K, a client asking over
// the native ZeroMQ API, checked against the in-process engine (worker/engine/engine.h)
// running the same requests alone (testing::EngineGreedy).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;
using testing::TestClusterOptions;

// What a client saw of one request.
struct Seen {
  std::vector<int> tokens;                  // Done.tokens
  std::vector<TokenLogprobs> logprobs;      // Done.logprobs
  std::vector<int> streamed;                // the TokenEvents' tokens
  std::vector<TokenLogprobs> streamed_logprobs;
  std::string finish;
  std::string error;
};

// Submits `requests` (ids "0", "1", ...) streamed and waits, with a generous bound,
// until each has ended.
std::vector<Seen> RunOnCluster(Client& client, const std::vector<RequestParams>& requests) {
  for (size_t i = 0; i < requests.size(); ++i) {
    const Status s = client.Submit(std::to_string(i), "", requests[i].prompt, requests[i].sampling, requests[i].stop,
                                   /*stream=*/true);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  std::vector<Seen> seen(requests.size());
  size_t ended = 0;
  const auto until = std::chrono::steady_clock::now() + 120s;
  while (ended < requests.size() && std::chrono::steady_clock::now() < until) {
    Result<std::optional<proto::ServerMessage>> m = client.Receive(1000ms);
    if (!m.ok()) {
      ADD_FAILURE() << m.status().ToString();
      break;
    }
    if (!m->has_value()) continue;
    const proto::ServerMessage& reply = **m;
    if (reply.has_token()) {
      const size_t i = std::stoul(reply.token().client_request_id());
      Seen& s = seen.at(i);
      EXPECT_EQ(reply.token().logprobs_size(), requests[i].sampling.logprobs ? reply.token().tokens_size() : 0)
          << "one per token, when asked";
      s.streamed.insert(s.streamed.end(), reply.token().tokens().begin(), reply.token().tokens().end());
      for (const proto::TokenLogprobs& l : reply.token().logprobs()) s.streamed_logprobs.push_back(FromProto(l));
    } else if (reply.has_done()) {
      Seen& s = seen.at(std::stoul(reply.done().client_request_id()));
      s.tokens.assign(reply.done().tokens().begin(), reply.done().tokens().end());
      for (const proto::TokenLogprobs& l : reply.done().logprobs()) s.logprobs.push_back(FromProto(l));
      s.finish = FinishReasonName(FromProto(reply.done().finish_reason()));
      ++ended;
    } else if (reply.has_error()) {
      seen.at(std::stoul(reply.error().client_request_id())).error = reply.error().message();
      ++ended;
    }
  }
  EXPECT_EQ(ended, requests.size()) << "requests still running after the wait";
  return seen;
}

void ExpectNear(const TokenLogprobs& got, const TokenLogprobs& want, const std::string& where) {
  constexpr float kTolerance = 1e-3f;  // TP 2 sums the logits' terms in another order
  EXPECT_NEAR(got.logprob, want.logprob, kTolerance) << where;
  ASSERT_EQ(got.top.size(), want.top.size()) << where;
  // By rank: a near-tie may order two tokens differently under TP 1 and TP 2, but the
  // k-th most likely logprob is the same.
  for (size_t k = 0; k < got.top.size(); ++k)
    EXPECT_NEAR(got.top[k].logprob, want.top[k].logprob, kTolerance) << where << " rank " << k;
}

TEST(LogprobsClusterTest, TokensComeWithLogprobsThatAgreeWithTheEngine) {
  TestClusterOptions options;
  options.model = testing::Stories260kBin();
  options.tokenizer = testing::Tok512Bin();
  options.replicas = 1;
  options.tensor_parallel = 2;
  auto cluster = TestCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  auto client = (*cluster)->Connect();
  ASSERT_TRUE(client.ok()) << client.status().ToString();

  // 0: greedy with 3 alternatives; 1: sampled with OpenAI's penalties and 3
  // alternatives; 2: greedy with the penalties, without logprobs.
  std::vector<RequestParams> requests(3);
  requests[0].prompt = {1, 403, 407, 261};
  requests[0].sampling.logprobs = true;
  requests[0].sampling.top_logprobs = 3;
  requests[1].prompt = {1, 9, 322, 4};
  requests[1].sampling.temperature = 0.8f;
  requests[1].sampling.seed = 5;
  requests[1].sampling.presence_penalty = 0.6f;
  requests[1].sampling.frequency_penalty = 0.4f;
  requests[1].sampling.logprobs = true;
  requests[1].sampling.top_logprobs = 3;
  requests[2].prompt = {1, 403, 407, 261};
  requests[2].sampling.presence_penalty = 1.5f;
  requests[2].sampling.frequency_penalty = 1.0f;
  for (RequestParams& r : requests) {
    r.stop.max_tokens = 40;
    r.stop.ignore_eos = true;
  }
  const std::vector<Seen> seen = RunOnCluster(**client, requests);
  const std::vector<testing::EngineResult> engine = testing::EngineGreedy(requests);
  ASSERT_EQ(seen.size(), 3u);
  ASSERT_EQ(engine.size(), 3u);
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const Seen& s = seen[i];
    EXPECT_EQ(s.error, "");
    EXPECT_EQ(s.finish, "length");
    ASSERT_EQ(s.tokens.size(), 40u);
    EXPECT_EQ(s.tokens, engine[i].tokens) << "the same tokens as the in-process engine";
    EXPECT_EQ(s.streamed, s.tokens);
    if (!requests[i].sampling.logprobs) {
      EXPECT_TRUE(s.logprobs.empty());
      EXPECT_TRUE(s.streamed_logprobs.empty());
      continue;
    }
    ASSERT_EQ(s.logprobs.size(), s.tokens.size()) << "one per token";
    EXPECT_EQ(s.streamed_logprobs, s.logprobs) << "the stream carries the same";
    ASSERT_EQ(engine[i].logprobs.size(), s.tokens.size());
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      const std::string where = "token " + std::to_string(t);
      const TokenLogprobs& l = s.logprobs[t];
      ASSERT_EQ(l.top.size(), 3u) << where;
      EXPECT_LE(l.logprob, 0.0f) << where;
      double mass = 0;
      for (size_t k = 0; k < l.top.size(); ++k) {
        mass += std::exp(static_cast<double>(l.top[k].logprob));
        if (k > 0) {
          EXPECT_LE(l.top[k].logprob, l.top[k - 1].logprob) << where << ": sorted, most likely first";
        }
      }
      EXPECT_LE(mass, 1.0 + 1e-4) << where;
      if (!requests[i].sampling.greedy()) continue;
      EXPECT_EQ(l.top[0].token, s.tokens[t]) << where << ": greedy takes the most likely token";
      EXPECT_EQ(l.top[0].logprob, l.logprob) << where;
    }
    for (size_t t = 0; t < s.tokens.size(); ++t)
      ExpectNear(s.logprobs[t], engine[i].logprobs[t], "token " + std::to_string(t));
  }
  // The penalties changed what greedy picks: request 2 has request 0's prompt.
  EXPECT_NE(seen[2].tokens, seen[0].tokens);
}

}  // namespace
}  // namespace flover
