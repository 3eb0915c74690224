// Tests ClusterConfig (common/cluster_config.h) built in code: Validate's rules and
// messages, the enum names, WorkerDType and ValidateAgainstModel.
#include "common/cluster_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tests/common/cluster_config_test_util.h"

namespace flover {
namespace {

using ::testing::HasSubstr;
using namespace config_testing;

// ---- Validate ------------------------------------------------------------------

// The smallest valid config built in code.
ClusterConfig Valid() {
  ClusterConfig config;
  config.source = "built.yaml";
  config.endpoints.control = "tcp://127.0.0.1:5556";
  config.model.path = "dummy:tiny";
  config.workers = {WorkerConfig{}};
  return config;
}

TEST(ClusterConfigValidate, ValidConfigsPass) {
  EXPECT_TRUE(Valid().Validate().ok()) << Valid().Validate().ToString();
  EXPECT_TRUE(EveryFieldSet().Validate().ok()) << EveryFieldSet().Validate().ToString();
  // Workers in any order: the reader sorts its own, FromProto keeps the sender's.
  ClusterConfig unsorted = EveryFieldSet();
  std::swap(unsorted.workers[0], unsorted.workers[3]);
  EXPECT_TRUE(unsorted.Validate().ok()) << unsorted.Validate().ToString();
  // A default ClusterConfig names no control endpoint, model or workers.
  EXPECT_FALSE(ClusterConfig{}.Validate().ok());
}

// Every rule, with the message a file's author would get for it.
TEST(ClusterConfigValidate, EveryRuleNamesSourceAndKey) {
  using Mutation = void (*)(ClusterConfig&);
  const std::vector<std::pair<Mutation, std::string>> cases = {
      {[](ClusterConfig& c) { c.name = ""; }, "built.yaml: cluster.name: must not be empty"},
      {[](ClusterConfig& c) { c.endpoints.control = ""; }, "built.yaml: endpoints.control: '' is not a ZeroMQ endpoint"},
      {[](ClusterConfig& c) { c.endpoints.client = "tcp://h:0"; }, "built.yaml: endpoints.client: 'tcp://h:0' is not"},
      {[](ClusterConfig& c) { c.endpoints.plans = c.endpoints.control; },
       "built.yaml: endpoints.plans: 'tcp://127.0.0.1:5556' is also endpoints.control"},
      {[](ClusterConfig& c) { c.model.path = ""; }, "built.yaml: model.path: must not be empty"},
      {[](ClusterConfig& c) { c.model.path = "dummy:"; }, "built.yaml: model.path: 'dummy:' names no preset"},
      {[](ClusterConfig& c) { c.model.dtype = static_cast<WeightDType>(9); },
       "built.yaml: model.dtype: 9 is not a value of the setting"},
      {[](ClusterConfig& c) { c.replicas = 0; }, "built.yaml: parallel.replicas: must be >= 1, got 0"},
      {[](ClusterConfig& c) { c.tensor_parallel = -1; }, "built.yaml: parallel.tensor: must be >= 1, got -1"},
      {[](ClusterConfig& c) { c.cpu_transport = static_cast<CpuTransport>(7); },
       "built.yaml: parallel.cpu_transport: 7 is not a value of the setting"},
      {[](ClusterConfig& c) { c.workers.clear(); }, "built.yaml: workers: no entry for replica 0 rank 0"},
      {[](ClusterConfig& c) { c.workers[0].replica = 1; },
       "built.yaml: workers[0].replica: 1 is out of range [0, 1) (parallel.replicas is 1)"},
      {[](ClusterConfig& c) { c.workers[0].rank = -1; }, "built.yaml: workers[0].rank: -1 is out of range [0, 1)"},
      {[](ClusterConfig& c) { c.workers[0].host = ""; }, "built.yaml: workers[0].host: must not be empty"},
      {[](ClusterConfig& c) { c.workers[0].device = "cuda:"; }, "built.yaml: workers[0].device: 'cuda:' is not cpu or cuda:N"},
      {[](ClusterConfig& c) { c.workers[0].threads = -2; }, "built.yaml: workers[0].threads: must be >= 0, got -2"},
      {[](ClusterConfig& c) { c.workers.push_back(c.workers[0]); },
       "built.yaml: workers[1]: replica 0 rank 0 is listed twice (also workers[0])"},
      {[](ClusterConfig& c) {
         c.tensor_parallel = 2;
         c.workers = {{.rank = 1, .device = "cpu"}, {.rank = 0, .device = "cuda:0"}};
       },
       "built.yaml: workers: replica 0 mixes devices cuda:0 and cpu"},
      {[](ClusterConfig& c) {
         c.model.dtype = WeightDType::kQ4_K;
         c.workers[0].device = "cuda:0";
       },
       "built.yaml: model.dtype: q4_k is a CPU weight format; replica 0 rank 0 runs on cuda:0, which stores fp32, "
       "fp16 or bf16"},
      {[](ClusterConfig& c) { c.kv_cache.dtype = static_cast<DType>(5); },
       "built.yaml: kv_cache.dtype: 5 is not a value of the setting"},
      {[](ClusterConfig& c) {
         c.kv_cache.dtype = DType::kBF16;  // the weights' type on CUDA is fp16 (model.dtype auto)
         c.workers[0].device = "cuda:0";
       },
       "built.yaml: kv_cache.dtype: bf16 on replica 0 rank 0 (cuda:0), whose KV cache has the weights' type, fp16 "
       "for model.dtype auto (leave kv_cache.dtype unset or set it to fp16)"},
      {[](ClusterConfig& c) {
         c.kv_cache.dtype = DType::kF16;
         c.model.dtype = WeightDType::kBF16;
         c.workers[0].device = "cuda:0";
       },
       "built.yaml: kv_cache.dtype: fp16 on replica 0 rank 0 (cuda:0), whose KV cache has the weights' type, bf16"},
      {[](ClusterConfig& c) { c.kv_cache.block_size = 0; }, "built.yaml: kv_cache.block_size: must be >= 1, got 0"},
      {[](ClusterConfig& c) { c.kv_cache.memory_mib = -1; }, "built.yaml: kv_cache.memory_mib: must be > 0, got -1"},
      {[](ClusterConfig& c) { c.kv_cache.memory_mib = std::numeric_limits<double>::infinity(); },
       "built.yaml: kv_cache.memory_mib: must be a finite number, got inf"},
      {[](ClusterConfig& c) { c.kv_cache.memory_mib = std::nan(""); },
       "built.yaml: kv_cache.memory_mib: must be a finite number, got nan"},
      {[](ClusterConfig& c) { c.scheduler.policy = static_cast<SchedulerPolicy>(4); },
       "built.yaml: scheduler.policy: 4 is not a value of the setting"},
      {[](ClusterConfig& c) { c.scheduler.max_step_tokens = 0; }, "built.yaml: scheduler.max_step_tokens: must be >= 1"},
      {[](ClusterConfig& c) { c.scheduler.max_running = 0; }, "built.yaml: scheduler.max_running: must be >= 1"},
      {[](ClusterConfig& c) { c.scheduler.max_queued = 0; }, "built.yaml: scheduler.max_queued: must be >= 1"},
      {[](ClusterConfig& c) { c.scheduler.pipeline_depth = 9; },
       "built.yaml: scheduler.pipeline_depth: must be in 1..8, got 9"},
      {[](ClusterConfig& c) { c.scheduler.batch_window_ms = -1; }, "built.yaml: scheduler.batch_window_ms: must be >= 0"},
      {[](ClusterConfig& c) { c.scheduler.max_batch = 0; }, "built.yaml: scheduler.max_batch: must be >= 1"},
      {[](ClusterConfig& c) { c.scheduler.failover_wait_ms = -1; }, "built.yaml: scheduler.failover_wait_ms: must be >= 0"},
      {[](ClusterConfig& c) { c.heartbeat.step_timeout_ms = 0; }, "built.yaml: heartbeat.step_timeout_ms: must be >= 1"},
      {[](ClusterConfig& c) { c.heartbeat.interval_ms = 0; }, "built.yaml: heartbeat.interval_ms: must be >= 1"},
      {[](ClusterConfig& c) { c.heartbeat.timeout_ms = c.heartbeat.interval_ms; },
       "built.yaml: heartbeat.timeout_ms: 500 must be greater than heartbeat.interval_ms (500)"},
  };
  for (const auto& [mutate, expected] : cases) {
    ClusterConfig config = Valid();
    mutate(config);
    const Status status = config.Validate();
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << expected;
    EXPECT_THAT(status.message(), ::testing::StartsWith(expected));
  }
}

// CPU workers store any KV dtype; CUDA workers only their weights' type (or leave it unset).
TEST(ClusterConfigValidate, KvDTypeOnEachDevice) {
  for (std::optional<DType> kv : {std::optional<DType>(), std::optional(DType::kF32), std::optional(DType::kF16),
                                  std::optional(DType::kBF16)}) {
    ClusterConfig cpu = Valid();
    cpu.kv_cache.dtype = kv;
    EXPECT_TRUE(cpu.Validate().ok()) << cpu.Validate().ToString();
    for (std::optional<WeightDType> weights : {std::optional<WeightDType>(), std::optional(WeightDType::kF32),
                                               std::optional(WeightDType::kF16), std::optional(WeightDType::kBF16)}) {
      ClusterConfig gpu = cpu;
      gpu.model.dtype = weights;
      gpu.workers[0].device = "cuda:0";
      EXPECT_EQ(gpu.Validate().ok(), !kv || *kv == CudaWorkerDType(gpu.model))
          << DTypeName(kv.value_or(DType::kF32)) << " " << ModelDTypeName(weights) << ": " << gpu.Validate().ToString();
    }
  }
}

TEST(ClusterConfigValidate, EmptySourceHasNoPrefix) {
  ClusterConfig config = Valid();
  config.source = "";
  config.scheduler.max_batch = 0;
  EXPECT_EQ(config.Validate().message(), "scheduler.max_batch: must be >= 1, got 0");
}

// ---- enum names and the dtypes ---------------------------------------------------

TEST(ConfigEnumNames, NamesRoundTrip) {
  EXPECT_EQ(SchedulerPolicyNames(), (std::vector<std::string>{"fused", "dynamic", "instances", "sequential"}));
  for (const std::string& name : SchedulerPolicyNames())
    EXPECT_EQ(SchedulerPolicyName(*SchedulerPolicyFromName(name)), name);
  EXPECT_EQ(CpuTransportNames(), (std::vector<std::string>{"auto", "shm", "tcp"}));
  for (const std::string& name : CpuTransportNames()) EXPECT_EQ(CpuTransportName(*CpuTransportFromName(name)), name);
  // Exact spellings only.
  for (const char* bad : {"", "Fused", "fused ", "fast"}) EXPECT_FALSE(SchedulerPolicyFromName(bad)) << bad;
  for (const char* bad : {"", "SHM", "rdma"}) EXPECT_FALSE(CpuTransportFromName(bad)) << bad;
  EXPECT_STREQ(SchedulerPolicyName(static_cast<SchedulerPolicy>(4)), "unknown");
  EXPECT_STREQ(CpuTransportName(static_cast<CpuTransport>(-1)), "unknown");
  EXPECT_STREQ(ModelDTypeName(std::nullopt), "auto");
  EXPECT_STREQ(ModelDTypeName(WeightDType::kBF16), "bf16");
  EXPECT_STREQ(ModelDTypeName(WeightDType::kQ4_K), "q4_k");
  EXPECT_STREQ(WeightDTypeName(static_cast<WeightDType>(9)), "?");
}

TEST(ConfigEnumNames, CudaWorkerDTypeIsFp16ForAuto) {
  ModelConfig model;
  EXPECT_EQ(CudaWorkerDType(model), DType::kF16);
  model.dtype = WeightDType::kBF16;
  EXPECT_EQ(CudaWorkerDType(model), DType::kBF16);
  model.dtype = WeightDType::kF32;
  EXPECT_EQ(CudaWorkerDType(model), DType::kF32);
}

TEST(ConfigEnumNames, WeightDTypesParseAndNameEachOther) {
  for (WeightDType t : {WeightDType::kF32, WeightDType::kF16, WeightDType::kBF16, WeightDType::kQ8_0,
                        WeightDType::kQ4_0, WeightDType::kQ4_K}) {
    Result<WeightDType> parsed = ParseWeightDType(WeightDTypeName(t));
    ASSERT_TRUE(parsed.ok()) << WeightDTypeName(t);
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(*ParseWeightDType("Q4_K"), WeightDType::kQ4_K);
  EXPECT_EQ(*ParseWeightDType("bfloat16"), WeightDType::kBF16);
  EXPECT_EQ(StorageDType(WeightDType::kF16), DType::kF16);
  EXPECT_EQ(StorageDType(WeightDType::kQ8_0), std::nullopt);
  for (const char* bad : {"", "q4", "q4_1", "q6_k", "int8", "auto"}) {
    Result<WeightDType> parsed = ParseWeightDType(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().message(),
              "unknown dtype '" + std::string(bad) + "' (expected fp32, fp16, bf16, q8_0, q4_0 or q4_k)");
  }
}

// ---- ValidateAgainstModel --------------------------------------------------------

ModelSpec Stories260kShape() {
  return ModelSpec{.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4,
                   .vocab_size = 512, .max_seq_len = 512};
}

TEST(ClusterConfigModel, TensorMustDivideHeads) {
  ClusterConfig config;
  config.source = "configs/x.yaml";
  config.tensor_parallel = 3;
  Status status = ValidateAgainstModel(config, Stories260kShape());
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "configs/x.yaml: parallel.tensor: 3 does not divide heads=8");

  config.tensor_parallel = 8;  // divides 8 heads, not 4 kv heads
  status = ValidateAgainstModel(config, Stories260kShape());
  EXPECT_EQ(status.message(), "configs/x.yaml: parallel.tensor: 8 does not divide kv_heads=4");

  for (int tensor : {1, 2, 4}) {
    config.tensor_parallel = tensor;
    EXPECT_TRUE(ValidateAgainstModel(config, Stories260kShape()).ok()) << tensor;
  }
}

TEST(ClusterConfigModel, InvalidSpecIsReportedNotDividedByZero) {
  ClusterConfig config;
  config.source = "x.yaml";
  config.tensor_parallel = 2;
  ModelSpec spec = Stories260kShape();
  spec.n_heads = 0;
  Status status = ValidateAgainstModel(config, spec);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("x.yaml"));
}

}  // namespace
}  // namespace flover
