// What the core records in its Metrics (metrics.h), in simulated time (harness:
// core_harness.h): each way a request ends under its finished_reason, the tokens, the
// latencies, the steps, the gauges and the health.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "coordinator/prometheus_text.h"
#include "tests/coordinator/core_harness.h"
#include "tests/coordinator/prometheus_sample.h"

namespace flover {
namespace {

using namespace coordinator_testing;
using testing::SampleValue;

class CoreMetricsTest : public CoreTest {
 protected:
  double Metric(const std::string& series) { return SampleValue(sim().core().metrics().RenderPrometheus(), series); }
  double Finished(const std::string& reason) {
    return Metric("flover:request_success_total{finished_reason=\"" + reason + "\"}");
  }
};

// Request a stops (EOS), b reaches max_tokens, c is cancelled by its client: each under
// its finished_reason, with its tokens; the latencies are those of their Done messages.
TEST_F(CoreMetricsTest, RequestsThatStopReachTheirLengthOrAreCancelledAreCountedByReason) {
  Start();
  SimWorker& w = AddWorker();
  SimClient& c = AddClient();
  // Submitted while the replica starts: they run together in its first plan.
  c.Submit("a", {1, 2}, 5);
  c.Submit("b", {1, 2, 3}, 2);
  c.Submit("c", {1, 2, 3, 4}, 10);
  Advance(5ms);
  w.Start();
  const uint64_t a = ExpectAccepted(c, "a");
  const uint64_t b = ExpectAccepted(c, "b");
  const uint64_t cc = ExpectAccepted(c, "c");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->entries_size(), 3) << plan->DebugString();
  EXPECT_EQ(Metric("flover:num_requests_running"), 3);
  Advance(10ms);
  w.Answer(*plan, {{a, 30, proto::FINISH_NONE}, {b, 20, proto::FINISH_NONE}, {cc, 40, proto::FINISH_NONE}});
  plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  c.Cancel("c");
  Advance(10ms);
  w.Answer(*plan, {{a, 2, proto::FINISH_STOP}, {b, 21, proto::FINISH_LENGTH}});  // 2: EOS, not output

  std::map<std::string, proto::Done> done;
  for (std::optional<proto::ServerMessage> m = c.TryRecv(); m; m = c.TryRecv())
    if (m->has_done()) done[m->done().client_request_id()] = m->done();
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(done["c"].finish_reason(), proto::FINISH_CANCELLED);
  EXPECT_EQ(Finished("stop"), 1);
  EXPECT_EQ(Finished("length"), 1);
  EXPECT_EQ(Finished("abort"), 1);
  EXPECT_EQ(Finished("error"), 0);
  EXPECT_EQ(Metric("flover:prompt_tokens_total"), 2 + 3 + 4);
  EXPECT_EQ(Metric("flover:generation_tokens_total"), 4) << "30, 20, 40, 21 (EOS is no output)";
  EXPECT_EQ(Metric("flover:steps_total{replica=\"0\"}"), 2);
  EXPECT_EQ(Metric("flover:requests_per_step_count"), 2);
  EXPECT_EQ(Metric("flover:requests_per_step_sum"), 3 + 3) << "c was in the second plan, cancelled after it";
  double first_token = 0, total = 0, queue = 0;
  for (const auto& [id, d] : done) {
    first_token += d.first_token_seconds();
    total += d.total_seconds();
    queue += d.queue_seconds();
  }
  EXPECT_GE(queue, 3 * 0.005) << "they waited for the replica";
  EXPECT_EQ(Metric("flover:time_to_first_token_seconds_count"), 3);
  EXPECT_NEAR(Metric("flover:time_to_first_token_seconds_sum"), first_token, 1e-9);
  EXPECT_EQ(Metric("flover:time_per_output_token_seconds_count"), 1) << "only b has 2 tokens";
  EXPECT_NEAR(Metric("flover:time_per_output_token_seconds_sum"),
              done["b"].total_seconds() - done["b"].first_token_seconds(), 1e-9);
  EXPECT_EQ(Metric("flover:e2e_request_latency_seconds_count"), 3);
  EXPECT_NEAR(Metric("flover:e2e_request_latency_seconds_sum"), total, 1e-9);
  EXPECT_EQ(Metric("flover:request_queue_time_seconds_count"), 3);
  EXPECT_NEAR(Metric("flover:request_queue_time_seconds_sum"), queue, 1e-9);
  // All three first tokens came with the first result: in one bucket, counted from it on.
  const double ttft = done["a"].first_token_seconds();
  EXPECT_NEAR(done["b"].first_token_seconds(), ttft, 1e-9);
  EXPECT_NEAR(done["c"].first_token_seconds(), ttft, 1e-9);
  const std::vector<double>& bounds = Metrics::FirstTokenBuckets();
  const size_t bucket = std::lower_bound(bounds.begin(), bounds.end(), ttft) - bounds.begin();
  ASSERT_GT(bucket, 0u);
  ASSERT_LT(bucket, bounds.size());
  auto le = [](double bound) {
    return "flover:time_to_first_token_seconds_bucket{le=\"" + PrometheusValue(bound) + "\"}";
  };
  EXPECT_EQ(Metric(le(bounds[bucket - 1])), 0);
  EXPECT_EQ(Metric(le(bounds[bucket])), 3);
  EXPECT_EQ(Metric(le(std::numeric_limits<double>::infinity())), 3);
  EXPECT_EQ(Metric("flover:num_requests_running"), 0);
  EXPECT_EQ(Metric("flover:kv_blocks_used{replica=\"0\"}"), 0);
  EXPECT_EQ(Metric("flover:kv_blocks_total{replica=\"0\"}"), 16);
  EXPECT_EQ(Metric("flover:replica_ready{replica=\"0\"}"), 1);
}

// A request that its failed replica cannot hand on ends with an Error: "error", by code;
// a submission refused at once is counted by its code.
TEST_F(CoreMetricsTest, FailedAndRefusedRequestsAreCountedByCode) {
  OneRequest r = StartWithOneRequest(Options());
  r.client.Submit("empty", {}, 3);
  ASSERT_TRUE(Reply(r.client).has_error());
  ReportFailure(r.worker, "GPU fell off the bus");
  ASSERT_TRUE(Reply(r.client).has_error());
  EXPECT_EQ(Finished("error"), 1);
  EXPECT_EQ(Metric("flover:requests_failed_total{code=\"Unavailable\"}"), 1);
  EXPECT_EQ(Metric("flover:requests_rejected_total{reason=\"InvalidArgument\"}"), 1);
  EXPECT_EQ(Metric("flover:replica_ready{replica=\"0\"}"), 0);
  EXPECT_EQ(Metric("flover:kv_blocks_total{replica=\"0\"}"), 0);
}

// Health: not ready, with the registration progress, until a replica is; not ready while
// draining.
TEST_F(CoreMetricsTest, HealthFollowsTheReplicas) {
  Options o;
  o.tensor = 2;
  o.drain = 10s;
  Start(o);
  SimWorker& w0 = AddWorker(0, 0);
  SimWorker& w1 = AddWorker(0, 1);
  Advance(1ms);
  EXPECT_EQ(sim().core().metrics().Health(),
            std::make_pair(false, std::string("no replica is ready: replica 0 starting (0 of 2 workers registered, 0 "
                                              "ready)")));
  w0.Start();
  EXPECT_EQ(sim().core().metrics().Health().second,
            "no replica is ready: replica 0 starting (1 of 2 workers registered, 1 ready)");
  w1.Start();
  EXPECT_EQ(sim().core().metrics().Health(), std::make_pair(true, std::string("1 of 1 replica(s) ready")));
  EXPECT_EQ(Metric("flover:replica_ready{replica=\"0\"}"), 1);
  SimClient& c = AddClient();
  c.Submit("r", {1, 2}, 3);
  ExpectAccepted(c, "r");
  sim().RequestStop();
  EXPECT_FALSE(sim().stopped()) << "a request is in flight";
  EXPECT_EQ(sim().core().metrics().Health(), std::make_pair(false, std::string("the coordinator is shutting down")));
}

}  // namespace
}  // namespace flover
