// Tests ClusterConfig <-> proto::ClusterConfig (common/cluster_config_proto.h): every
// field and every enum value survive the round trip (through serialized bytes, as
// between processes), and a message a valid config cannot produce is a clear error.
#include "common/cluster_config_proto.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tests/common/cluster_config_test_util.h"

namespace flover {
namespace {

using ::testing::HasSubstr;
using namespace config_testing;

// ToProto, serialized and parsed again, then FromProto.
Result<ClusterConfig> ThroughTheWire(const ClusterConfig& config) {
  proto::ClusterConfig parsed;
  EXPECT_TRUE(parsed.ParseFromString(ToProto(config).SerializeAsString()));
  return FromProto(parsed);
}

TEST(ClusterConfigProto, RoundTripsEveryField) {
  const ClusterConfig config = EveryFieldSet();
  Result<ClusterConfig> again = ThroughTheWire(config);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, config);
  // operator== covers every field; spot-check the ones a conversion gets wrong easily.
  EXPECT_EQ(again->model.dummy_seed, 18446744073709551615ull);
  EXPECT_EQ(again->kv_cache.memory_mib, 0.1);
  EXPECT_EQ(again->workers[1].threads, 2);
  EXPECT_EQ(again->source, "derived.yaml");
}

TEST(ClusterConfigProto, RoundTripsEveryEnumValue) {
  ClusterConfig gpu = EveryFieldSet();
  for (WorkerConfig& w : gpu.workers) w.device = "cuda:" + std::to_string(w.rank);
  std::vector<ClusterConfig> configs = EveryEnumValue(gpu);
  ASSERT_EQ(configs.size(), 4u * 3u * 7u);
  for (const ClusterConfig& config : configs) {
    Result<ClusterConfig> again = ThroughTheWire(config);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(*again, config) << SchedulerPolicyName(config.scheduler.policy) << " "
                              << CpuTransportName(config.cpu_transport) << " " << ModelDTypeName(config.model.dtype);
  }
}

// kv_cache.dtype: every value, and unset; a message from a sender without the field
// (it reads as 0) is the default, unset.
TEST(ClusterConfigProto, RoundTripsEveryKvDType) {
  ClusterConfig cpu = EveryFieldSet();
  for (WorkerConfig& w : cpu.workers) w.device = "cpu";
  for (std::optional<DType> dtype : {std::optional<DType>(), std::optional(DType::kF32), std::optional(DType::kF16),
                                     std::optional(DType::kBF16)}) {
    cpu.kv_cache.dtype = dtype;
    Result<ClusterConfig> again = ThroughTheWire(cpu);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again->kv_cache.dtype, dtype);
    EXPECT_EQ(*again, cpu);
  }
  EXPECT_EQ(ToProto(cpu).kv_cache().dtype(), proto::KV_CACHE_DTYPE_BF16);
  proto::ClusterConfig old_sender = ToProto(cpu);
  old_sender.mutable_kv_cache()->clear_dtype();
  Result<ClusterConfig> config = FromProto(old_sender);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->kv_cache.dtype, std::nullopt);
}

TEST(ClusterConfigProto, ShippedConfigsRoundTrip) {
  for (const char* file : {"/configs/local.yaml", "/configs/local-replicas.yaml", "/configs/gpu-cluster.example.yaml"}) {
    Result<ClusterConfig> config = LoadClusterConfig(kSourceDir + file);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    Result<ClusterConfig> again = ThroughTheWire(*config);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(*again, *config) << file;
  }
}

TEST(ClusterConfigProto, WorkersKeepTheSendersOrder) {
  ClusterConfig config = EveryFieldSet();
  std::swap(config.workers[0], config.workers[2]);
  Result<ClusterConfig> again = ThroughTheWire(config);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->workers, config.workers);
}

// What a buggy or hostile coordinator might send: each is an InvalidArgument naming the
// source and the key, never a crash.
TEST(ClusterConfigProto, InvalidMessagesAreClearErrors) {
  using Mutation = std::function<void(proto::ClusterConfig&)>;
  const std::vector<std::pair<Mutation, std::string>> cases = {
      {[](proto::ClusterConfig& m) { m.mutable_scheduler()->set_policy(proto::SCHEDULER_POLICY_UNSPECIFIED); },
       "derived.yaml: scheduler.policy: is not set"},
      {[](proto::ClusterConfig& m) { m.mutable_scheduler()->set_policy(static_cast<proto::SchedulerPolicy>(99)); },
       "derived.yaml: scheduler.policy: 99 is not a value this build knows"},
      {[](proto::ClusterConfig& m) { m.set_cpu_transport(proto::CPU_TRANSPORT_UNSPECIFIED); },
       "derived.yaml: parallel.cpu_transport: is not set"},
      {[](proto::ClusterConfig& m) { m.set_cpu_transport(static_cast<proto::CpuTransport>(-3)); },
       "derived.yaml: parallel.cpu_transport: -3 is not a value this build knows"},
      {[](proto::ClusterConfig& m) { m.mutable_model()->set_dtype(proto::MODEL_DTYPE_UNSPECIFIED); },
       "derived.yaml: model.dtype: is not set"},
      {[](proto::ClusterConfig& m) { m.mutable_model()->set_dtype(proto::MODEL_DTYPE_Q8_0); },
       "derived.yaml: model.dtype: q8_0 is a CPU weight format; replica 0 rank 0 runs on cuda:0"},
      {[](proto::ClusterConfig& m) { m.set_name(""); }, "derived.yaml: cluster.name: must not be empty"},
      {[](proto::ClusterConfig& m) { m.mutable_endpoints()->set_control("nowhere"); },
       "derived.yaml: endpoints.control: 'nowhere' is not a ZeroMQ endpoint"},
      {[](proto::ClusterConfig& m) { m.set_replicas(0); }, "derived.yaml: parallel.replicas: must be >= 1, got 0"},
      {[](proto::ClusterConfig& m) { m.set_tensor_parallel(2147483647); },
       "derived.yaml: workers: no entry for replica 0 rank 2"},
      {[](proto::ClusterConfig& m) { m.mutable_workers()->RemoveLast(); },
       "derived.yaml: workers: no entry for replica 1 rank 1"},
      {[](proto::ClusterConfig& m) { m.mutable_workers(2)->set_rank(-1); },
       "derived.yaml: workers[2].rank: -1 is out of range [0, 2)"},
      {[](proto::ClusterConfig& m) { *m.add_workers() = m.workers(0); },
       "derived.yaml: workers[4]: replica 0 rank 0 is listed twice (also workers[0])"},
      {[](proto::ClusterConfig& m) { m.mutable_workers(0)->set_device("tpu:0"); },
       "derived.yaml: workers[0].device: 'tpu:0' is not cpu or cuda:N"},
      {[](proto::ClusterConfig& m) { m.mutable_kv_cache()->set_memory_mib(-0.0); },
       "derived.yaml: kv_cache.memory_mib: must be > 0"},
      {[](proto::ClusterConfig& m) { m.mutable_kv_cache()->set_memory_mib(std::nan("")); },
       "derived.yaml: kv_cache.memory_mib: must be a finite number, got nan"},
      {[](proto::ClusterConfig& m) { m.mutable_kv_cache()->set_dtype(static_cast<proto::KvCacheDType>(42)); },
       "derived.yaml: kv_cache.dtype: 42 is not a value this build knows"},
      {[](proto::ClusterConfig& m) { m.mutable_kv_cache()->set_dtype(proto::KV_CACHE_DTYPE_FP16); },
       "derived.yaml: kv_cache.dtype: fp16 on replica 0 rank 0 (cuda:0), whose KV cache has the weights' type, fp32"},
      {[](proto::ClusterConfig& m) { m.mutable_scheduler()->set_pipeline_depth(1000); },
       "derived.yaml: scheduler.pipeline_depth: must be in 1..8, got 1000"},
      {[](proto::ClusterConfig& m) { m.mutable_heartbeat()->set_timeout_ms(1); },
       "derived.yaml: heartbeat.timeout_ms: 1 must be greater than heartbeat.interval_ms (20)"},
      // Sections the sender left out read as zeros, which no valid config has.
      {[](proto::ClusterConfig& m) { m.clear_heartbeat(); }, "derived.yaml: heartbeat.step_timeout_ms: must be >= 1, got 0"},
      {[](proto::ClusterConfig& m) { m.clear_kv_cache(); }, "derived.yaml: kv_cache.block_size: must be >= 1, got 0"},
  };
  for (const auto& [mutate, expected] : cases) {
    proto::ClusterConfig message = ToProto(EveryFieldSet());
    mutate(message);
    Result<ClusterConfig> config = FromProto(message);
    ASSERT_FALSE(config.ok()) << expected;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << config.status().ToString();
    EXPECT_THAT(config.status().message(), ::testing::StartsWith(expected));
  }
}

TEST(ClusterConfigProto, AnEmptyMessageIsAnError) {
  Result<ClusterConfig> config = FromProto(proto::ClusterConfig());
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("is not set"));
}

}  // namespace
}  // namespace flover
