// The Prometheus text format (prometheus_text.h) and the coordinator's Metrics
// (metrics.h) as pure logic: exact text, escaping, cumulative buckets, health lines.
#include "coordinator/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "coordinator/prometheus_text.h"
#include "tests/coordinator/prometheus_sample.h"

namespace flover {
namespace {

TEST(PrometheusTextTest, WritesFamiliesSamplesAndEscapes) {
  PrometheusText out;
  out.Family("flover:things_total", "counter", "Things, counted\nwith a \\ and \"quotes\"");
  out.Sample("flover:things_total", {{"kind", "a\"b\\c\nd"}, {"replica", "0"}}, 3);
  out.Sample("flover:things_total", {}, 0.25);
  out.Family("flover:level", "gauge", "A level");
  out.Sample("flover:level", {}, std::numeric_limits<double>::infinity());
  out.Sample("flover:level", {}, -std::numeric_limits<double>::infinity());
  out.Sample("flover:level", {}, std::numeric_limits<double>::quiet_NaN());
  out.Sample("flover:level", {}, 1e-5);
  EXPECT_EQ(out.text(), "# HELP flover:things_total Things, counted\\nwith a \\\\ and \"quotes\"\n"
                        "# TYPE flover:things_total counter\n"
                        "flover:things_total{kind=\"a\\\"b\\\\c\\nd\",replica=\"0\"} 3\n"
                        "flover:things_total 0.25\n"
                        "# HELP flover:level A level\n"
                        "# TYPE flover:level gauge\n"
                        "flover:level +Inf\n"
                        "flover:level -Inf\n"
                        "flover:level NaN\n"
                        "flover:level 1e-05\n");
}

TEST(PrometheusTextTest, HistogramBucketsAreCumulativeAndEndWithInf) {
  PrometheusText out;
  const std::vector<double> bounds = {0.1, 1, 2.5};
  const std::vector<uint64_t> counts = {2, 0, 1, 3};  // per bucket; the last above 2.5
  out.Family("flover:latency_seconds", "histogram", "Latency");
  out.Histogram("flover:latency_seconds", {{"replica", "1"}}, bounds, counts, 42.5);
  EXPECT_EQ(out.text(), "# HELP flover:latency_seconds Latency\n"
                        "# TYPE flover:latency_seconds histogram\n"
                        "flover:latency_seconds_bucket{replica=\"1\",le=\"0.1\"} 2\n"
                        "flover:latency_seconds_bucket{replica=\"1\",le=\"1\"} 2\n"
                        "flover:latency_seconds_bucket{replica=\"1\",le=\"2.5\"} 3\n"
                        "flover:latency_seconds_bucket{replica=\"1\",le=\"+Inf\"} 6\n"
                        "flover:latency_seconds_sum{replica=\"1\"} 42.5\n"
                        "flover:latency_seconds_count{replica=\"1\"} 6\n");
}

TEST(PrometheusTextTest, AnInvalidNameIsAProgrammingError) {
  PrometheusText out;
  EXPECT_DEATH(out.Family("flover:bad-name", "gauge", "x"), "metric name");
  EXPECT_DEATH(out.Sample("flover:ok", {{"le:x", "1"}}, 1), "label name");
}

TEST(HistogramCountsTest, AValueOnABoundCountsInThatBucket) {
  HistogramCounts h({1, 2});
  for (double v : {0.5, 1.0, 1.5, 2.0, 3.0}) h.Observe(v);
  EXPECT_EQ(h.counts, (std::vector<uint64_t>{2, 2, 1}));
  EXPECT_DOUBLE_EQ(h.sum, 8.0);
}

using testing::SampleValue;

Metrics::ReplicaGauges Replica(std::string_view state, int registered, int ready) {
  return {.state = state, .workers_total = 2, .workers_registered = registered, .workers_ready = ready};
}

TEST(MetricsTest, RecordsRequestsStepsAndGauges) {
  Metrics m;
  Metrics::Gauges g;
  g.replicas = {Replica("ready", 2, 2), Replica("starting", 1, 0)};
  g.replicas[0].running = 3;
  g.replicas[0].waiting = 1;
  g.replicas[0].kv_blocks_used = 4;
  g.replicas[0].kv_blocks_total = 16;
  g.replicas[0].steps = 7;
  g.replicas[0].tokens_generated = 12;
  g.queued = 2;
  g.moved = 1;
  m.Publish(g);
  m.RequestStarted(5, 0.02);
  m.RequestDone({.reason = FinishReason::kStop, .first_token_s = 0.03, .per_token_s = 0.004, .total_s = 0.2});
  m.RequestDone({.reason = FinishReason::kLength, .first_token_s = 0.5, .per_token_s = std::nullopt, .total_s = 0.5});
  m.RequestDone({.reason = FinishReason::kCancelled, .first_token_s = std::nullopt, .per_token_s = {}, .total_s = 1});
  m.RequestFailed(StatusCode::kDeadlineExceeded);
  m.RequestRefused(StatusCode::kInvalidArgument);
  m.RequestRefused(StatusCode::kInvalidArgument);
  m.StepPlanned(3, 1);
  const std::string text = m.RenderPrometheus();
  // Series and value; the comments say why.
  const std::pair<std::string, double> expected[] = {
      {"flover:request_success_total{finished_reason=\"stop\"}", 1},
      {"flover:request_success_total{finished_reason=\"length\"}", 1},
      {"flover:request_success_total{finished_reason=\"abort\"}", 1},
      {"flover:request_success_total{finished_reason=\"error\"}", 1},
      {"flover:requests_failed_total{code=\"DeadlineExceeded\"}", 1},
      {"flover:requests_rejected_total{reason=\"InvalidArgument\"}", 2},
      {"flover:requests_moved_total", 1},
      {"flover:num_requests_running", 3},
      {"flover:num_requests_waiting", 3},  // queued + waiting in the schedulers
      {"flover:num_preemptions_total", 1},
      {"flover:prompt_tokens_total", 5},
      {"flover:generation_tokens_total", 12},
      {"flover:kv_blocks_used{replica=\"0\"}", 4},
      {"flover:kv_blocks_total{replica=\"0\"}", 16},
      {"flover:kv_cache_usage_perc{replica=\"0\"}", 0.25},
      {"flover:kv_cache_usage_perc{replica=\"1\"}", 0},
      {"flover:replica_ready{replica=\"0\"}", 1},
      {"flover:replica_ready{replica=\"1\"}", 0},
      {"flover:steps_total{replica=\"0\"}", 7},
      {"flover:time_to_first_token_seconds_count", 2},  // the cancelled request had no token
      {"flover:time_to_first_token_seconds_bucket{le=\"0.04\"}", 1},
      {"flover:time_to_first_token_seconds_bucket{le=\"0.5\"}", 2},
      {"flover:time_per_output_token_seconds_count", 1},
      {"flover:time_per_output_token_seconds_bucket{le=\"0.005\"}", 1},
      {"flover:e2e_request_latency_seconds_count", 3},
      {"flover:request_queue_time_seconds_count", 1},
      {"flover:requests_per_step_bucket{le=\"2\"}", 0},
      {"flover:requests_per_step_bucket{le=\"4\"}", 1},
  };
  for (const auto& [series, value] : expected) EXPECT_EQ(SampleValue(text, series), value) << series;
  EXPECT_DOUBLE_EQ(SampleValue(text, "flover:time_to_first_token_seconds_sum"), 0.53);
  EXPECT_TRUE(std::isnan(SampleValue(text, "flover:requests_failed_total{code=\"Internal\"}"))) << "only codes seen";
}

TEST(MetricsTest, HealthSaysWhyNoReplicaIsReady) {
  Metrics m;
  EXPECT_EQ(m.Health(), std::make_pair(false, std::string("the coordinator is starting")));
  const uint64_t v0 = m.health_version();
  Metrics::Gauges g;
  g.replicas = {Replica("starting", 1, 0), Replica("unhealthy", 0, 0)};
  m.Publish(g);
  EXPECT_EQ(m.Health(), std::make_pair(false, std::string("no replica is ready: replica 0 starting (1 of 2 workers "
                                                          "registered, 0 ready); replica 1 unhealthy")));
  const uint64_t v1 = m.health_version();
  EXPECT_NE(v1, v0);
  g.replicas[0].running = 5;  // not a change of health
  m.Publish(g);
  EXPECT_EQ(m.health_version(), v1);
  g.replicas[0] = Replica("ready", 2, 2);
  m.Publish(g);
  EXPECT_NE(m.health_version(), v1);
  EXPECT_EQ(m.Health(), std::make_pair(true, std::string("1 of 2 replica(s) ready")));
  g.draining = true;
  m.Publish(g);
  EXPECT_EQ(m.Health(), std::make_pair(false, std::string("the coordinator is shutting down")));
}

// One thread records while another renders: every render is a consistent text (run
// under ThreadSanitizer by scripts/test-sanitizers.sh).
TEST(MetricsTest, RendersWhileAnotherThreadRecords) {
  Metrics m;
  std::thread writer([&] {
    Metrics::Gauges g;
    g.replicas = {Replica("ready", 2, 2)};
    for (int i = 0; i < 2000; ++i) {
      g.replicas[0].running = i;
      m.Publish(g);
      m.RequestDone({.reason = FinishReason::kStop, .first_token_s = 0.01, .per_token_s = 0.001, .total_s = 0.1});
    }
  });
  double last = 0;
  for (int i = 0; i < 50; ++i) {
    const std::string text = m.RenderPrometheus();
    const double done = SampleValue(text, "flover:request_success_total{finished_reason=\"stop\"}");
    EXPECT_EQ(SampleValue(text, "flover:e2e_request_latency_seconds_count"), done);
    EXPECT_GE(done, last);
    last = done;
  }
  writer.join();
  EXPECT_EQ(SampleValue(m.RenderPrometheus(), "flover:e2e_request_latency_seconds_count"), 2000);
}

// prometheus_client's own parser (what Prometheus' Python tooling uses) reads the text
// of every metric with the values and labels meant, escapes included.
TEST(MetricsTest, PrometheusClientParsesTheText) {
  Metrics m;
  Metrics::Gauges g;
  g.replicas = {Replica("ready", 2, 2)};
  g.replicas[0].kv_blocks_used = 3;
  g.replicas[0].kv_blocks_total = 12;
  m.Publish(g);
  m.RequestStarted(4, 0.5);
  m.RequestDone({.reason = FinishReason::kLength, .first_token_s = 0.02, .per_token_s = 0.003, .total_s = 0.4});
  m.RequestFailed(StatusCode::kUnavailable);
  PrometheusText escapes;
  escapes.Family("flover:escapes", "gauge", "HELP with a \\ and a\nnewline");
  escapes.Sample("flover:escapes", {{"v", "quote \" backslash \\ newline \n end"}}, 1.5);
  const std::string path = ::testing::TempDir() + "/metrics.txt";
  std::ofstream(path) << m.RenderPrometheus() << escapes.text();

  const std::string command = std::string(FLOVER_PYTHON3) + " " + FLOVER_PARSE_PROMETHEUS + " " + path + " 2>&1";
  FILE* p = popen(command.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) output.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << command << " (python3-prometheus-client is needed: scripts/install-deps.sh): " << output;
  const nlohmann::json families = nlohmann::json::parse(output);
  std::map<std::string, nlohmann::json> by_name;
  for (const nlohmann::json& f : families) by_name[f["name"]] = f;
  // The parser names a counter's family without its _total suffix.
  const std::map<std::string, std::string> expected_types = {{"flover:request_success", "counter"},
                                                             {"flover:requests_failed", "counter"},
                                                             {"flover:requests_rejected", "counter"},
                                                             {"flover:requests_moved", "counter"},
                                                             {"flover:num_requests_running", "gauge"},
                                                             {"flover:num_requests_waiting", "gauge"},
                                                             {"flover:num_preemptions", "counter"},
                                                             {"flover:prompt_tokens", "counter"},
                                                             {"flover:generation_tokens", "counter"},
                                                             {"flover:kv_blocks_used", "gauge"},
                                                             {"flover:kv_blocks_total", "gauge"},
                                                             {"flover:kv_cache_usage_perc", "gauge"},
                                                             {"flover:replica_ready", "gauge"},
                                                             {"flover:steps", "counter"},
                                                             {"flover:time_to_first_token_seconds", "histogram"},
                                                             {"flover:time_per_output_token_seconds", "histogram"},
                                                             {"flover:e2e_request_latency_seconds", "histogram"},
                                                             {"flover:request_queue_time_seconds", "histogram"},
                                                             {"flover:requests_per_step", "histogram"},
                                                             {"flover:escapes", "gauge"}};
  for (const auto& [name, type] : expected_types) {
    ASSERT_TRUE(by_name.count(name)) << name << " not parsed: " << output;
    EXPECT_EQ(by_name[name]["type"], type) << name;
  }
  EXPECT_EQ(by_name.size(), expected_types.size()) << output;

  auto sample = [&](const std::string& family, const std::string& name, const nlohmann::json& labels) {
    for (const nlohmann::json& s : by_name[family]["samples"])
      if (s["name"] == name && s["labels"] == labels) return s["value"];
    ADD_FAILURE() << "no sample " << name << " " << labels.dump() << " in " << by_name[family].dump();
    return nlohmann::json();
  };
  EXPECT_EQ(sample("flover:request_success", "flover:request_success_total", {{"finished_reason", "length"}}), 1.0);
  EXPECT_EQ(sample("flover:request_success", "flover:request_success_total", {{"finished_reason", "error"}}), 1.0);
  EXPECT_EQ(sample("flover:requests_failed", "flover:requests_failed_total", {{"code", "Unavailable"}}), 1.0);
  EXPECT_EQ(sample("flover:kv_cache_usage_perc", "flover:kv_cache_usage_perc", {{"replica", "0"}}), 0.25);
  EXPECT_EQ(sample("flover:prompt_tokens", "flover:prompt_tokens_total", nlohmann::json::object()), 4.0);
  const std::string ttft = "flover:time_to_first_token_seconds";
  EXPECT_EQ(sample(ttft, ttft + "_bucket", {{"le", "0.01"}}), 0.0);
  EXPECT_EQ(sample(ttft, ttft + "_bucket", {{"le", "0.02"}}), 1.0);
  EXPECT_EQ(sample(ttft, ttft + "_bucket", {{"le", "+Inf"}}), 1.0);
  EXPECT_EQ(sample(ttft, ttft + "_count", nlohmann::json::object()), 1.0);
  EXPECT_EQ(sample(ttft, ttft + "_sum", nlohmann::json::object()), 0.02);
  EXPECT_EQ(by_name["flover:escapes"]["documentation"], "HELP with a \\ and a\nnewline");
  EXPECT_EQ(sample("flover:escapes", "flover:escapes", {{"v", "quote \" backslash \\ newline \n end"}}), 1.5);
}

}  // namespace
}  // namespace flover
