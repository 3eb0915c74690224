// `flover status --json` (client/status_json.h): one object, snake_case names, numbers
// as JSON numbers (64-bit counters too), the fields of the ClusterStatus.
#include "client/status_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace flover {
namespace {

TEST(StatusJsonTest, NamesAreSnakeCaseAndNumbersAreNumbers) {
  proto::ClusterStatus s;
  s.set_name("local");
  s.set_uptime_seconds(12.5);
  s.set_queued(2);
  s.set_completed(uint64_t{1} << 40);  // protobuf's own JSON writes 64-bit integers as strings
  s.set_moved(1);
  s.set_rejected_messages(3);
  s.mutable_model()->set_description("stories260K");
  s.mutable_model()->set_vocab_size(512);
  s.mutable_latency()->set_window_seconds(60);
  s.mutable_latency()->set_requests(4);
  s.mutable_latency()->mutable_first_token()->set_p50(0.02);
  s.mutable_latency()->mutable_per_token()->set_p99(0.004);
  proto::ReplicaStatus* r = s.add_replicas();
  r->set_replica(0);
  r->set_state("ready");
  r->set_running(1);
  r->set_kv_blocks_used(3);
  r->set_kv_blocks_total(64);
  r->set_steps(100);
  r->set_tokens_generated(250);
  r->set_steps_per_second(9.5);
  r->set_step_compute_seconds(0.75);
  r->set_step_wait_seconds(0.125);
  proto::WorkerStatus* w = r->add_workers();
  w->set_rank(1);
  w->set_state("ready");
  w->set_device("cpu");
  w->set_host("node-a");
  w->set_pid(4242);
  w->set_last_heartbeat_age_s(0.1);
  s.add_replicas()->set_state("starting");

  const nlohmann::json j = nlohmann::json::parse(StatusJson(s));
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["name"], "local");
  EXPECT_EQ(j["uptime_s"], 12.5);
  EXPECT_TRUE(j["completed"].is_number_unsigned());
  EXPECT_EQ(j["completed"], uint64_t{1} << 40);
  EXPECT_EQ(j["queued"], 2);
  EXPECT_EQ(j["moved"], 1);
  EXPECT_EQ(j["abandoned"], 0) << "zero values are present";
  EXPECT_EQ(j["rejected_messages"], 3);
  EXPECT_EQ(j["clients_cut_off"], 0);
  EXPECT_EQ(j["config_generation"], 0) << "as in the message: a coordinator sends 1 and up";
  EXPECT_EQ(j["replicas_ready"], 1);
  EXPECT_EQ(j["model"]["description"], "stories260K");
  EXPECT_EQ(j["model"]["vocab_size"], 512);
  EXPECT_EQ(j["latency"]["window_s"], 60.0);
  EXPECT_EQ(j["latency"]["requests"], 4);
  EXPECT_EQ(j["latency"]["ttft_s"]["p50"], 0.02);
  EXPECT_EQ(j["latency"]["tpot_s"]["p99"], 0.004);
  for (const char* key : {"queue_s", "ttft_s", "tpot_s", "e2e_s"})
    for (const char* stat : {"mean", "p50", "p90", "p99"})
      EXPECT_TRUE(j["latency"][key][stat].is_number()) << key << "." << stat;
  ASSERT_EQ(j["replicas"].size(), 2u);
  const nlohmann::json& r0 = j["replicas"][0];
  EXPECT_EQ(r0["state"], "ready");
  EXPECT_EQ(r0["error"], "");
  EXPECT_EQ(r0["running"], 1);
  EXPECT_EQ(r0["waiting"], 0);
  EXPECT_EQ(r0["kv_blocks_used"], 3);
  EXPECT_EQ(r0["kv_blocks_total"], 64);
  EXPECT_EQ(r0["steps"], 100);
  EXPECT_EQ(r0["tokens_generated"], 250);
  EXPECT_EQ(r0["steps_per_s"], 9.5);
  EXPECT_EQ(r0["step_compute_s"], 0.75);
  EXPECT_EQ(r0["step_wait_s"], 0.125);
  ASSERT_EQ(r0["workers"].size(), 1u);
  EXPECT_EQ(r0["workers"][0], nlohmann::json::parse(R"({"rank":1,"state":"ready","device":"cpu",
      "last_heartbeat_age_s":0.1,"host":"node-a","pid":4242})"));
  EXPECT_EQ(j["replicas"][1]["state"], "starting");
  EXPECT_TRUE(j["replicas"][1]["workers"].is_array());
}

TEST(StatusJsonTest, NoModelBeforeAReplicaWasReady) {
  proto::ClusterStatus s;
  s.add_replicas()->set_state("starting");
  const nlohmann::json j = nlohmann::json::parse(StatusJson(s));
  EXPECT_TRUE(j["model"].is_null());
  EXPECT_EQ(j["replicas_ready"], 0);
}

}  // namespace
}  // namespace flover
