// Tests the outputs of `flover bench` (client/bench_report.h): the results table with
// its speed-up columns and failed runs, and the JSON of one run.
#include "client/bench/bench_report.h"

#include <gtest/gtest.h>

#include <sstream>

namespace flover {
namespace {

BenchRun MakeRun(const std::string& policy, double overall_s, double avg_s) {
  BenchRun r;
  r.policy = policy;
  r.model = "llama2.c stories260K.bin";
  r.workload.n_requests = 4;
  r.workload.interval_ms = 10;
  r.workload.output_min = r.workload.output_max = 8;
  r.workload.vocab_size = 512;
  r.ignore_eos = true;
  r.has_step_counters = true;
  r.metrics.n_requests = 4;
  r.metrics.n_completed = 4;
  r.metrics.overall_latency_s = overall_s;
  r.metrics.avg_latency_s = avg_s;
  r.metrics.single_latency_s = 0.01;
  r.metrics.avg_over_single = avg_s / 0.01;
  RequestTimeline t;
  t.index = 0;
  t.submit_s = 0.0;
  t.tokens = {{0.001, 1}, {0.002, 1}};
  t.done_s = 0.002;
  t.output_tokens = 2;
  t.finish_reason = "length";
  r.requests.push_back(t);
  return r;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(BenchReportTest, OneRunHasNoSpeedUpColumns) {
  const std::string table = FormatResultsTable({MakeRun("fused", 1.0, 0.5)});
  EXPECT_EQ(table.find("speed-up"), std::string::npos) << table;
  const std::vector<std::string> lines = Lines(table);
  ASSERT_EQ(lines.size(), 4u) << table;  // header, rule, fused, the step ms legend
  EXPECT_EQ(lines[2].rfind("fused ", 0), 0u) << table;
  EXPECT_EQ(lines[3].rfind("step ms: ", 0), 0u) << table;
}

TEST(BenchReportTest, SpeedUpsCompareEveryPolicyWithFused) {
  BenchRun failed;
  failed.policy = "dynamic";
  failed.error = "Unavailable: flover-coordinator stopped at start-up (exit 2): not implemented";
  const std::string table =
      FormatResultsTable({MakeRun("fused", 0.5, 0.1), MakeRun("sequential", 5.0, 2.0), failed, MakeRun("instances", 1.0, 0.1)});
  const std::vector<std::string> lines = Lines(table);
  ASSERT_GE(lines.size(), 6u) << table;
  EXPECT_NE(lines[0].find("fused speed-up"), std::string::npos) << table;
  EXPECT_NE(lines[0].find("fused avg speed-up"), std::string::npos) << table;
  auto ends_with = [](const std::string& line, const std::string& tail) {
    return line.size() >= tail.size() && line.compare(line.size() - tail.size(), tail.size(), tail) == 0;
  };
  EXPECT_TRUE(ends_with(lines[2], "1.00x")) << lines[2];
  EXPECT_NE(lines[2].find("1.00x"), lines[2].rfind("1.00x")) << "both fused speed-ups are 1.00x: " << lines[2];
  EXPECT_NE(lines[3].find("10.00x"), std::string::npos) << lines[3];  // 5.0 / 0.5
  EXPECT_TRUE(ends_with(lines[3], "20.00x")) << lines[3];             // 2.0 / 0.1
  EXPECT_EQ(lines[4].rfind("dynamic", 0), 0u);
  EXPECT_NE(lines[4].find("FAILED"), std::string::npos) << lines[4];
  EXPECT_NE(lines[5].find("2.00x"), std::string::npos) << lines[5];  // instances: 1.0 / 0.5
  EXPECT_NE(table.find("dynamic: Unavailable: flover-coordinator stopped at start-up"), std::string::npos) << table;
  // Every row is as wide as the header: the columns line up.
  for (size_t i = 1; i <= 5; ++i) EXPECT_EQ(lines[i].size(), lines[0].size()) << lines[i];
}

TEST(BenchReportTest, NoSpeedUpWithoutASuccessfulFusedRun) {
  BenchRun fused_failed;
  fused_failed.policy = "fused";
  fused_failed.error = "Cancelled: interrupted";
  const std::string table = FormatResultsTable({fused_failed, MakeRun("sequential", 5.0, 2.0)});
  EXPECT_EQ(table.find("speed-up"), std::string::npos) << table;
}

TEST(BenchReportTest, RunJsonHasTheMetricsTheWorkloadAndTheTimeline) {
  const nlohmann::json j = RunToJson(MakeRun("fused", 1.0, 0.5));
  EXPECT_EQ(j["policy"], "fused");
  EXPECT_FALSE(j.contains("error"));
  EXPECT_EQ(j["completed"], 4);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_DOUBLE_EQ(j["overall_latency_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["avg_over_single"].get<double>(), 50.0);
  for (const char* key : {"request_throughput", "output_tokens_per_s", "avg_requests_per_step", "single_latency_s"})
    EXPECT_TRUE(j.contains(key)) << key;
  for (const char* key : {"ttft_s", "tpot_s", "itl_s", "e2e_s"})
    for (const char* stat : {"mean", "p50", "p90", "p99"}) EXPECT_TRUE(j[key].contains(stat)) << key << "." << stat;
  EXPECT_EQ(j["workload"]["requests"], 4);
  EXPECT_EQ(j["workload"]["arrival"], "fixed");
  EXPECT_EQ(j["workload"]["interval_ms"], 10.0);
  EXPECT_EQ(j["workload"]["prompt_len"], 8);
  EXPECT_EQ(j["workload"]["output_len_min"], 8);
  EXPECT_EQ(j["workload"]["ignore_eos"], true);
  ASSERT_EQ(j["requests"].size(), 1u);
  EXPECT_EQ(j["requests"][0]["output_tokens"], 2);
  EXPECT_EQ(j["requests"][0]["token_times_s"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["requests"][0]["first_token_s"].get<double>(), 0.001);
  EXPECT_TRUE(j["requests"][0]["accepted_s"].is_null());

  BenchRun failed;
  failed.policy = "dynamic";
  failed.error = "Unavailable: no";
  EXPECT_EQ(RunToJson(failed)["error"], "Unavailable: no");
}

}  // namespace
}  // namespace flover
