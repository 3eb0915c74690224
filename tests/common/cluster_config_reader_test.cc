// Tests the cluster config reader (common/cluster_config_reader.h): the shipped configs/
// files, defaults, every rule with its message as a YAML file's author sees it (file name
// + key path), enum names, YAML syntax errors and relative path resolution.
#include "common/cluster_config_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "tests/common/cluster_config_test_util.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace config_testing;

// ---- the shipped configs ---------------------------------------------------------

TEST(ClusterConfigFiles, LocalYaml) {
  ScopedEnv no_models_dir("FLOVER_MODELS_DIR", nullptr);
  Result<ClusterConfig> config = LoadClusterConfig(kSourceDir + "/configs/local.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->source, kSourceDir + "/configs/local.yaml");
  EXPECT_EQ(config->name, "local");
  EXPECT_EQ(config->endpoints.client, "tcp://127.0.0.1:5555");
  EXPECT_EQ(config->endpoints.control, "tcp://127.0.0.1:5556");
  EXPECT_EQ(config->endpoints.plans, "tcp://127.0.0.1:5557");
  // Without FLOVER_MODELS_DIR: ../models relative to configs/, where
  // scripts/download-models.sh puts the files by default.
  const fs::path models = (fs::absolute(kSourceDir) / "models").lexically_normal();
  EXPECT_EQ(config->model.path, (models / "stories260K" / "stories260K.bin").string());
  EXPECT_EQ(config->model.tokenizer, (models / "stories260K" / "tok512.bin").string());
  // With it (as the scripts set it), the files are found.
  ScopedEnv models_dir("FLOVER_MODELS_DIR", flover::testing::ModelsDir().c_str());
  Result<ClusterConfig> found = LoadClusterConfig(kSourceDir + "/configs/local.yaml");
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_TRUE(fs::exists(found->model.path)) << found->model.path;
  EXPECT_EQ(config->replicas, 1);
  EXPECT_EQ(config->tensor_parallel, 2);
  ASSERT_EQ(config->workers.size(), 2u);
  for (int rank = 0; rank < 2; ++rank) {
    const WorkerConfig* worker = config->FindWorker(0, rank);
    ASSERT_NE(worker, nullptr);
    EXPECT_EQ(worker->host, "127.0.0.1");
    EXPECT_EQ(worker->device, "cpu");
    EXPECT_EQ(worker->threads, 1);
  }
  EXPECT_EQ(config->FindWorker(0, 2), nullptr);
  EXPECT_EQ(config->FindWorker(1, 0), nullptr);
  EXPECT_EQ(config->kv_cache.block_size, 16);
  EXPECT_EQ(config->kv_cache.memory_mib, 256);
  EXPECT_EQ(config->scheduler, SchedulerSettings{});
  EXPECT_EQ(config->heartbeat.interval_ms, 500);
  EXPECT_EQ(config->heartbeat.timeout_ms, 5000);
  EXPECT_EQ(config->heartbeat.step_timeout_ms, 60000);
}

TEST(ClusterConfigFiles, LocalReplicasYaml) {
  Result<ClusterConfig> config = LoadClusterConfig(kSourceDir + "/configs/local-replicas.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->replicas, 2);
  EXPECT_EQ(config->tensor_parallel, 2);
  EXPECT_EQ(config->endpoints.client, "tcp://127.0.0.1:5565");
  EXPECT_EQ(config->endpoints.control, "tcp://127.0.0.1:5566");
  EXPECT_EQ(config->endpoints.plans, "tcp://127.0.0.1:5567");
  ASSERT_EQ(config->workers.size(), 4u);
  for (int r = 0; r < 2; ++r) {
    for (int k = 0; k < 2; ++k) ASSERT_NE(config->FindWorker(r, k), nullptr) << r << " " << k;
  }
  EXPECT_THAT(config->model.path, HasSubstr("stories260K/stories260K.bin"));
}

TEST(ClusterConfigFiles, GpuClusterExampleYaml) {
  Result<ClusterConfig> config = LoadClusterConfig(kSourceDir + "/configs/gpu-cluster.example.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model.path, "dummy:llama-7b");
  EXPECT_EQ(config->replicas * config->tensor_parallel, 16);
  ASSERT_EQ(config->workers.size(), 16u);
  int on_a = 0;
  int on_b = 0;
  for (const WorkerConfig& w : config->workers) {
    on_a += w.host == "node-a";
    on_b += w.host == "node-b";
    EXPECT_THAT(w.device, HasSubstr("cuda:"));
  }
  EXPECT_EQ(on_a, 8);
  EXPECT_EQ(on_b, 8);
  // LLaMA-7B: 32 heads, 32 kv heads.
  ModelSpec llama7b{.dim = 4096, .hidden_dim = 11008, .n_layers = 32, .n_heads = 32, .n_kv_heads = 32,
                    .vocab_size = 32000, .max_seq_len = 2048};
  EXPECT_TRUE(ValidateAgainstModel(*config, llama7b).ok());
}

// The config scripts/gpu-check.sh runs: one CUDA worker; its plans in flight follow
// FLOVER_PIPELINE_DEPTH (the check's single-request runs at 1, 2 and 4), 2 without it.
TEST(ClusterConfigFiles, GpuLocalYaml) {
  ScopedEnv no_depth("FLOVER_PIPELINE_DEPTH", nullptr);
  Result<ClusterConfig> config = LoadClusterConfig(kSourceDir + "/configs/gpu-local.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->workers.size(), 1u);
  EXPECT_EQ(config->workers[0].device, "cuda:0");
  EXPECT_EQ(config->scheduler.pipeline_depth, 2);
  ScopedEnv depth("FLOVER_PIPELINE_DEPTH", "4");
  config = LoadClusterConfig(kSourceDir + "/configs/gpu-local.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->scheduler.pipeline_depth, 4);
}

TEST(ClusterConfigFiles, MissingFileIsNotFound) {
  Result<ClusterConfig> config = LoadClusterConfig("configs/does-not-exist.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("configs/does-not-exist.yaml"));
}

TEST(ClusterConfigFiles, DirectoryIsAnError) {
  Result<ClusterConfig> config = LoadClusterConfig(kSourceDir + "/configs");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("directory"));
}

// ---- defaults --------------------------------------------------------------------

TEST(ClusterConfigDefaults, MinimalConfigGetsEveryDefault) {
  Result<ClusterConfig> config = Parse(kMinimal);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->source, "x.yaml");
  EXPECT_EQ(config->name, "flover");
  EXPECT_EQ(config->endpoints.control, "tcp://127.0.0.1:5556");
  EXPECT_EQ(config->endpoints.client, "tcp://127.0.0.1:*");
  EXPECT_EQ(config->endpoints.plans, "tcp://127.0.0.1:*");
  EXPECT_EQ(config->model.path, "dummy:tiny");
  EXPECT_EQ(config->model.tokenizer, "");
  EXPECT_EQ(config->model.dummy_seed, 0u);
  EXPECT_EQ(config->replicas, 1);
  EXPECT_EQ(config->tensor_parallel, 1);
  ASSERT_EQ(config->workers.size(), 1u);
  EXPECT_EQ(config->workers[0], (WorkerConfig{.replica = 0, .rank = 0, .host = "127.0.0.1", .device = "cpu"}));
  EXPECT_EQ(config->kv_cache, KvCacheSettings{});
  EXPECT_EQ(config->scheduler, SchedulerSettings{});
  EXPECT_EQ(config->heartbeat, HeartbeatSettings{});
  EXPECT_EQ(config->limits, LimitsSettings{});
  EXPECT_EQ(config->scheduler.policy, SchedulerPolicy::kFused);
  EXPECT_EQ(config->scheduler.max_step_tokens, 512);
  EXPECT_EQ(config->scheduler.pipeline_depth, 2);  // plans run ahead of results by default
  EXPECT_EQ(config->scheduler.failover_wait_ms, 30000);
  EXPECT_EQ(config->cpu_transport, CpuTransport::kAuto);
  EXPECT_EQ(config->model.dtype, std::nullopt);
}

TEST(ClusterConfigDefaults, WorkersDefaultToEveryReplicaAndRankOnLoopback) {
  Result<ClusterConfig> config = Parse(With("parallel: {replicas: 3, tensor: 2}\n"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->workers.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(config->workers[i].replica, static_cast<int>(i / 2));
    EXPECT_EQ(config->workers[i].rank, static_cast<int>(i % 2));
    EXPECT_EQ(config->workers[i].host, "127.0.0.1");
    EXPECT_EQ(config->workers[i].device, "cpu");
  }
  EXPECT_EQ(config->FindWorker(2, 1), &config->workers[5]);
}

TEST(ClusterConfigDefaults, WorkersAreSortedByReplicaThenRank) {
  Result<ClusterConfig> config = Parse(With(R"(
parallel: {replicas: 2, tensor: 2}
workers:
  - {replica: 1, rank: 1, host: b, device: "cuda:1"}
  - {replica: 0, rank: 1, host: a, device: "cuda:1"}
  - {replica: 1, rank: 0, host: b, device: cuda:0}
  - {replica: 0, rank: 0, host: a, device: cuda:0, threads: 4}
)"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->workers.size(), 4u);
  EXPECT_EQ(config->workers[0], (WorkerConfig{.replica = 0, .rank = 0, .host = "a", .device = "cuda:0", .threads = 4}));
  EXPECT_EQ(config->workers[1], (WorkerConfig{.replica = 0, .rank = 1, .host = "a", .device = "cuda:1"}));
  EXPECT_EQ(config->workers[2], (WorkerConfig{.replica = 1, .rank = 0, .host = "b", .device = "cuda:0"}));
  EXPECT_EQ(config->workers[3], (WorkerConfig{.replica = 1, .rank = 1, .host = "b", .device = "cuda:1"}));
}

TEST(ClusterConfigDevices, DTypeNamesAndWhichDevicesTakeThem) {
  for (const auto& [name, dtype] : std::vector<std::pair<std::string, std::optional<WeightDType>>>{
           {"auto", std::nullopt}, {"fp32", WeightDType::kF32}, {"float32", WeightDType::kF32},
           {"fp16", WeightDType::kF16}, {"float16", WeightDType::kF16}, {"bf16", WeightDType::kBF16},
           {"bfloat16", WeightDType::kBF16}}) {
    Result<ClusterConfig> gpu = Parse(R"(
endpoints: {control: tcp://127.0.0.1:5556}
model: {path: dummy:tiny, dtype: )" + name + R"(}
workers: [{replica: 0, rank: 0, device: cuda:0}]
)");
    ASSERT_TRUE(gpu.ok()) << name << ": " << gpu.status().ToString();
    EXPECT_EQ(gpu->model.dtype, dtype) << name;
  }
  // CPU workers take every dtype, the block formats included.
  for (const auto& [name, dtype] : std::vector<std::pair<std::string, std::optional<WeightDType>>>{
           {"auto", std::nullopt}, {"fp32", WeightDType::kF32}, {"fp16", WeightDType::kF16},
           {"bf16", WeightDType::kBF16}, {"q8_0", WeightDType::kQ8_0}, {"q4_0", WeightDType::kQ4_0},
           {"q4_k", WeightDType::kQ4_K}, {"Q4_K", WeightDType::kQ4_K}}) {
    Result<ClusterConfig> cpu = Parse("endpoints: {control: tcp://127.0.0.1:5556}\nmodel: {path: dummy:tiny, dtype: " +
                                      name + "}\nparallel: {tensor: 2}\n");
    ASSERT_TRUE(cpu.ok()) << name << ": " << cpu.status().ToString();
    EXPECT_EQ(cpu->model.dtype, dtype) << name;
  }

  for (const char* bad : {"fp8", "q4_1", "q6_k", "int4"})
    ExpectError(R"(
endpoints: {control: tcp://127.0.0.1:5556}
model: {path: dummy:tiny, dtype: )" + std::string(bad) + R"(}
)",
                {"x.yaml: model.dtype: '" + std::string(bad) + "' is not auto, fp32, fp16, bf16, q8_0, q4_0 or q4_k"});
  ExpectError(R"(
endpoints: {control: tcp://127.0.0.1:5556}
model: {path: dummy:tiny, dtype: q8_0}
workers: [{replica: 0, rank: 0, device: cuda:0}]
)",
              {"x.yaml: model.dtype: q8_0 is a CPU weight format; replica 0 rank 0 runs on cuda:0, which stores fp32, "
               "fp16 or bf16 (use dtype auto, fp32, fp16 or bf16 with CUDA workers)"});
  ExpectError(R"(
endpoints: {control: tcp://127.0.0.1:5556}
model: {path: dummy:tiny}
parallel: {tensor: 2}
workers: [{replica: 0, rank: 0, device: cuda:0}, {replica: 0, rank: 1}]
)",
              {"x.yaml: workers: replica 0 mixes devices cuda:0 and cpu"});
}

// kv_cache.dtype: ParseDType's spellings, unset when absent; anything else names the
// key and the accepted values. CUDA workers take only their weights' type.
TEST(ClusterConfigDevices, KvDTypeNames) {
  Result<ClusterConfig> unset = Parse(kMinimal);
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->kv_cache.dtype, std::nullopt);
  for (const auto& [name, dtype] : std::vector<std::pair<std::string, DType>>{{"fp32", DType::kF32},
                                                                              {"float32", DType::kF32},
                                                                              {"fp16", DType::kF16},
                                                                              {"float16", DType::kF16},
                                                                              {"bf16", DType::kBF16},
                                                                              {"bfloat16", DType::kBF16}}) {
    Result<ClusterConfig> config = Parse(With("kv_cache: {memory_mib: 64, dtype: " + name + "}\n"));
    ASSERT_TRUE(config.ok()) << name << ": " << config.status().ToString();
    EXPECT_EQ(config->kv_cache.dtype, dtype) << name;
    EXPECT_EQ(config->kv_cache.memory_mib, 64);
  }
  for (const char* bad : {"fp8", "q8_0", "auto", "int8", "FP16", "\"\""})
    ExpectError(With("kv_cache: {dtype: " + std::string(bad) + "}\n"),
                {"x.yaml: kv_cache.dtype: '", "' is not fp32, fp16 or bf16"});
  ExpectError(With("kv_cache: {dtype: [fp16]}\n"), {"x.yaml: kv_cache.dtype: expected a value"});
  Result<ClusterConfig> gpu = Parse(R"(
endpoints: {control: tcp://127.0.0.1:5556}
model: {path: dummy:tiny, dtype: bf16}
kv_cache: {dtype: bf16}
workers: [{replica: 0, rank: 0, device: cuda:0}]
)");
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  ExpectError(R"(
endpoints: {control: tcp://127.0.0.1:5556}
model: {path: dummy:tiny}
kv_cache: {dtype: fp32}
workers: [{replica: 0, rank: 0, device: cuda:0}]
)",
              {"x.yaml: kv_cache.dtype: fp32 on replica 0 rank 0 (cuda:0), whose KV cache has the weights' type, fp16 "
               "for model.dtype auto (leave kv_cache.dtype unset or set it to fp16)"});
}

TEST(ClusterConfigDefaults, EmptySectionsKeepDefaults) {
  Result<ClusterConfig> config = Parse(With("cluster:\nkv_cache:\nscheduler: {}\nworkers:\n"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->name, "flover");
  EXPECT_EQ(config->workers.size(), 1u);
}

TEST(ClusterConfigDefaults, EveryPolicyNameIsAccepted) {
  for (const std::string& policy : SchedulerPolicyNames()) {
    Result<ClusterConfig> config = Parse(With("scheduler: {policy: " + policy + "}\n"));
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(SchedulerPolicyName(config->scheduler.policy), policy);
  }
  EXPECT_EQ(SchedulerPolicyNames().size(), 4u);
}

TEST(ClusterConfigDefaults, EveryCpuTransportIsAccepted) {
  for (const std::string& transport : CpuTransportNames()) {
    Result<ClusterConfig> config = Parse(With("parallel: {tensor: 2, cpu_transport: " + transport + "}\n"));
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(CpuTransportName(config->cpu_transport), transport);
  }
  EXPECT_EQ(CpuTransportNames(), (std::vector<std::string>{"auto", "shm", "tcp"}));
}

TEST(ClusterConfigDefaults, EndpointForms) {
  for (const char* endpoint : {"tcp://127.0.0.1:*", "tcp://*:5556", "tcp://eth0:1", "tcp://[::1]:65535",
                               "ipc:///tmp/flover-control", "inproc://control"}) {
    Result<ClusterConfig> config =
        Parse(std::string("endpoints: {control: \"") + endpoint + "\"}\nmodel: {path: dummy:tiny}\n");
    ASSERT_TRUE(config.ok()) << endpoint << ": " << config.status().ToString();
    EXPECT_EQ(config->endpoints.control, endpoint);
  }
}

// ---- errors: file name + key path ------------------------------------------------

TEST(ClusterConfigErrors, RequiredKeys) {
  ExpectError("model: {path: dummy:tiny}\n", {"x.yaml: endpoints.control: required key is missing"});
  ExpectError("endpoints: {client: tcp://127.0.0.1:5555}\nmodel: {path: dummy:tiny}\n",
              {"x.yaml: endpoints.control: required key is missing"});
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556}\n", {"x.yaml: model.path: required key is missing"});
  ExpectError("", {"x.yaml: endpoints.control: required key is missing"});
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556}\nmodel: {path: ''}\n", {"x.yaml: model.path: must not be empty"});
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556}\nmodel: {path: 'dummy:'}\n", {"x.yaml: model.path:", "preset"});
}

TEST(ClusterConfigErrors, UnknownKeys) {
  ExpectError(With("scheduler: {max_stp_tokens: 5}\n"), {"x.yaml: scheduler.max_stp_tokens: unknown key", "max_step_tokens"});
  ExpectError(With("sheduler: {policy: fused}\n"), {"x.yaml: sheduler: unknown key", "scheduler"});
  ExpectError(With("workers:\n  - {replica: 0, rank: 0, gpu: 1}\n"), {"x.yaml: workers[0].gpu: unknown key"});
  ExpectError(With("cluster: {nmae: a}\n"), {"x.yaml: cluster.nmae: unknown key"});
  ExpectError(With("heartbeat: {interval: 5}\n"), {"x.yaml: heartbeat.interval: unknown key"});
  ExpectError(With("limits: {max_prompt: 5}\n"), {"x.yaml: limits.max_prompt: unknown key", "max_prompt_bytes"});
}

TEST(ClusterConfigErrors, DuplicateKeys) {
  ExpectError(With("kv_cache:\n  block_size: 16\n  block_size: 32\n"), {"x.yaml: kv_cache.block_size: duplicate key"});
}

TEST(ClusterConfigErrors, WrongShapes) {
  ExpectError("- a\n- b\n", {"x.yaml: expected a mapping of sections"});
  ExpectError(With("scheduler: fused\n"), {"x.yaml: scheduler: expected a mapping, got 'fused'"});
  ExpectError(With("workers: {replica: 0}\n"), {"x.yaml: workers: expected a list"});
  ExpectError(With("workers:\n  - 3\n"), {"x.yaml: workers[0]: expected a mapping"});
  ExpectError(With("scheduler: {policy: [fused]}\n"), {"x.yaml: scheduler.policy: expected a value, got a list"});
  ExpectError(With("cluster: {name: }\n"), {"x.yaml: cluster.name: expected a value, got nothing"});
  ExpectError(With("cluster: {name: ''}\n"), {"x.yaml: cluster.name: must not be empty"});
}

TEST(ClusterConfigErrors, Numbers) {
  ExpectError(With("kv_cache: {block_size: abc}\n"), {"x.yaml: kv_cache.block_size: expected an integer, got 'abc'"});
  ExpectError(With("kv_cache: {block_size: 1.5}\n"), {"x.yaml: kv_cache.block_size: expected an integer, got '1.5'"});
  ExpectError(With("kv_cache: {block_size: 0}\n"), {"x.yaml: kv_cache.block_size: must be >= 1, got 0"});
  ExpectError(With("kv_cache: {block_size: 99999999999}\n"), {"x.yaml: kv_cache.block_size: '99999999999' is out of range"});
  ExpectError(With("kv_cache: {memory_mib: lots}\n"), {"x.yaml: kv_cache.memory_mib: expected a number, got 'lots'"});
  ExpectError(With("kv_cache: {memory_mib: 0}\n"), {"x.yaml: kv_cache.memory_mib: must be > 0"});
  ExpectError(With("kv_cache: {memory_mib: .nan}\n"), {"x.yaml: kv_cache.memory_mib: expected a number"});
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556}\nmodel: {path: dummy:tiny, dummy_seed: -1}\n",
              {"x.yaml: model.dummy_seed: expected a non-negative integer, got '-1'"});
  ExpectError(With("parallel: {replicas: 0}\n"), {"x.yaml: parallel.replicas: must be >= 1, got 0"});
  ExpectError(With("parallel: {tensor: -2}\n"), {"x.yaml: parallel.tensor: must be >= 1, got -2"});
  ExpectError(With("parallel: {replicas: 100000, tensor: 1000}\n"),
              {"x.yaml: parallel: 100000 replicas x 1000 ranks is more than 65536 workers"});
  ExpectError(With("scheduler: {max_step_tokens: 0}\n"), {"x.yaml: scheduler.max_step_tokens: must be >= 1"});
  ExpectError(With("scheduler: {max_running: 0}\n"), {"x.yaml: scheduler.max_running: must be >= 1"});
  ExpectError(With("scheduler: {max_queued: 0}\n"), {"x.yaml: scheduler.max_queued: must be >= 1"});
  ExpectError(With("scheduler: {max_batch: 0}\n"), {"x.yaml: scheduler.max_batch: must be >= 1"});
  ExpectError(With("scheduler: {batch_window_ms: -1}\n"), {"x.yaml: scheduler.batch_window_ms: must be >= 0"});
  ExpectError(With("scheduler: {failover_wait_ms: -5}\n"), {"x.yaml: scheduler.failover_wait_ms: must be >= 0"});
  ExpectError(With("scheduler: {pipeline_depth: 0}\n"), {"x.yaml: scheduler.pipeline_depth: must be in 1..8, got 0"});
  ExpectError(With("scheduler: {pipeline_depth: 9}\n"), {"x.yaml: scheduler.pipeline_depth: must be in 1..8, got 9"});
  ExpectError(With("heartbeat: {interval_ms: 0}\n"), {"x.yaml: heartbeat.interval_ms: must be >= 1"});
  ExpectError(With("heartbeat: {step_timeout_ms: 0}\n"), {"x.yaml: heartbeat.step_timeout_ms: must be >= 1"});
  ExpectError(With("heartbeat: {interval_ms: 500, timeout_ms: 500}\n"),
              {"x.yaml: heartbeat.timeout_ms: 500 must be greater than heartbeat.interval_ms (500)"});
  ExpectError(With("limits: {max_request_id_bytes: 0}\n"), {"x.yaml: limits.max_request_id_bytes: must be >= 1, got 0"});
  ExpectError(With("limits: {max_client_connections: -3}\n"),
              {"x.yaml: limits.max_client_connections: must be >= 1, got -3"});
  ExpectError(With("limits: {max_stop_ids: many}\n"), {"x.yaml: limits.max_stop_ids:"});
  // Accepted edge values.
  Result<ClusterConfig> ok = Parse("endpoints: {control: tcp://127.0.0.1:5556}\n"
                                   "scheduler: {pipeline_depth: 8, batch_window_ms: 0}\n"
                                   "kv_cache: {memory_mib: 0.5, block_size: +32}\n"
                                   "model: {path: dummy:tiny, dummy_seed: 18446744073709551615}\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->scheduler.pipeline_depth, 8);
  EXPECT_EQ(ok->kv_cache.memory_mib, 0.5);
  EXPECT_EQ(ok->kv_cache.block_size, 32);
  EXPECT_EQ(ok->model.dummy_seed, 18446744073709551615ull);
}

TEST(ClusterConfigErrors, Policy) {
  ExpectError(With("scheduler: {policy: fast}\n"),
              {"x.yaml: scheduler.policy: 'fast' is not one of fused, dynamic, instances, sequential"});
}

TEST(ClusterConfigErrors, CpuTransport) {
  ExpectError(With("parallel: {tensor: 2, cpu_transport: rdma}\n"),
              {"x.yaml: parallel.cpu_transport: 'rdma' is not one of auto, shm, tcp"});
}

TEST(ClusterConfigErrors, Endpoints) {
  for (const char* bad : {"127.0.0.1:5556", "tcp://127.0.0.1", "tcp://127.0.0.1:", "tcp://:5556", "tcp://h:0",
                          "tcp://h:65536", "tcp://h:-1", "tcp://h:55x", "udp://h:1", "ipc://", "inproc://"}) {
    ExpectError(std::string("endpoints: {control: \"") + bad + "\"}\nmodel: {path: dummy:tiny}\n",
                {std::string("x.yaml: endpoints.control: '") + bad + "' is not a ZeroMQ endpoint"});
  }
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556, plans: bogus}\nmodel: {path: dummy:tiny}\n",
              {"x.yaml: endpoints.plans: 'bogus' is not a ZeroMQ endpoint"});
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556, plans: tcp://127.0.0.1:5556}\nmodel: {path: dummy:tiny}\n",
              {"x.yaml: endpoints.plans: 'tcp://127.0.0.1:5556' is also endpoints.control"});
  // A file of protocol version 2 names the results socket, which is gone.
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556, results: tcp://127.0.0.1:5558}\nmodel: {path: dummy:tiny}\n",
              {"x.yaml: endpoints.results: step results now travel on the control connection (endpoints.control); "
               "there is no results socket any more: delete this key"});
}

TEST(ClusterConfigErrors, Workers) {
  const std::string parallel = "parallel: {replicas: 2, tensor: 2}\n";
  auto workers = [&](const std::string& list) { return With(parallel + "workers:\n" + list); };
  const std::string full =
      "  - {replica: 0, rank: 0}\n  - {replica: 0, rank: 1}\n  - {replica: 1, rank: 0}\n  - {replica: 1, rank: 1}\n";
  ASSERT_TRUE(Parse(workers(full)).ok());

  ExpectError(workers("  - {replica: 0, rank: 0}\n  - {replica: 0, rank: 1}\n  - {replica: 1, rank: 1}\n"),
              {"x.yaml: workers: no entry for replica 1 rank 0", "2 replicas x 2 ranks"});
  ExpectError(workers(full + "  - {replica: 0, rank: 1}\n"),
              {"x.yaml: workers[4]: replica 0 rank 1 is listed twice (also workers[1])"});
  ExpectError(workers("  - {replica: 2, rank: 0}\n"), {"x.yaml: workers[0].replica: 2 is out of range [0, 2)"});
  ExpectError(workers("  - {replica: -1, rank: 0}\n"), {"x.yaml: workers[0].replica: -1 is out of range"});
  ExpectError(workers("  - {replica: 0, rank: 2}\n"), {"x.yaml: workers[0].rank: 2 is out of range [0, 2)", "parallel.tensor"});
  ExpectError(workers("  - {rank: 0}\n"), {"x.yaml: workers[0].replica: required key is missing"});
  ExpectError(workers("  - {replica: 0}\n"), {"x.yaml: workers[0].rank: required key is missing"});
  ExpectError(workers("  - {replica: 0, rank: x}\n"), {"x.yaml: workers[0].rank: expected an integer, got 'x'"});
  ExpectError(workers("  - {replica: 0, rank: 0, host: ''}\n"), {"x.yaml: workers[0].host: must not be empty"});
  ExpectError(workers("  - {replica: 0, rank: 0, threads: -1}\n"), {"x.yaml: workers[0].threads: must be >= 0"});
  ExpectError(With(parallel + "workers: []\n"), {"x.yaml: workers: no entry for replica 0 rank 0"});
  for (const char* device : {"gpu", "cuda", "cuda:", "cuda:x", "cuda:-1", "CPU"}) {
    ExpectError(workers(std::string("  - {replica: 0, rank: 0, device: \"") + device + "\"}\n"),
                {std::string("x.yaml: workers[0].device: '") + device + "' is not cpu or cuda:N"});
  }
}

TEST(ClusterConfigErrors, YamlSyntaxHasLineAndColumn) {
  Result<ClusterConfig> result = Parse("endpoints:\n  control: [tcp://a:1\nmodel: {path: x}\n");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("x.yaml: line "));
  EXPECT_THAT(result.status().message(), HasSubstr(", column "));
  EXPECT_THAT(result.status().message(), HasSubstr("YAML syntax error"));

  result = Parse("endpoints:\n  control: a\n bad indent: 1\n");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("x.yaml: line 3, column"));

  result = Parse("a: *undefined_alias\n");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("x.yaml: "));
}

// Found by fuzz_cluster_config (docs/fuzzing.md): bytes that are not UTF-8 in a value
// were read as they were, and the writer's YAML (and the workers' protobuf string
// fields) could not carry them.
TEST(ClusterConfigErrors, ValuesMustBeUtf8) {
  ExpectError("endpoints: {control: tcp://127.0.0.1:5556}\nmodel: {path: /models/m\x8e\xa0.bin}\n",
              {"x.yaml: model.path: the value is not valid UTF-8 text"});
  ExpectError(With("cluster: {name: \"a\xc3\"}\n"), {"x.yaml: cluster.name: the value is not valid UTF-8 text"});
  ScopedEnv bad("FLOVER_TEST_NOT_UTF8", "\xff\xfe");
  ExpectError(With("workers:\n  - {replica: 0, rank: 0, host: 'node-${FLOVER_TEST_NOT_UTF8}'}\n"),
              {"x.yaml: workers[0].host: the value is not valid UTF-8 text after ${VAR} expansion"});
  // Text in other scripts is fine.
  Result<ClusterConfig> config = Parse(With("cluster: {name: \"\xe6\x97\xa5\xe6\x9c\xac \xc3\xa9t\xc3\xa9\"}\n"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->name, "\xe6\x97\xa5\xe6\x9c\xac \xc3\xa9t\xc3\xa9");
}

TEST(ClusterConfigErrors, LoadNamesTheFile) {
  const fs::path dir = fs::temp_directory_path() / ("flover_cluster_config_test_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "bad.yaml";
  std::ofstream(file) << With("scheduler: {policy: fast}\n");
  Result<ClusterConfig> result = LoadClusterConfig(file.string());
  fs::remove_all(dir);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr(file.string() + ": scheduler.policy: 'fast' is not one of"));
}

// ---- relative paths --------------------------------------------------------------

TEST(ClusterConfigPaths, RelativeModelPathsResolveAgainstBaseDir) {
  const std::string text =
      "endpoints: {control: tcp://127.0.0.1:5556}\nmodel: {path: ../models/m.bin, tokenizer: tok.bin}\n";
  Result<ClusterConfig> config = ParseClusterConfig(text, "x.yaml", "/etc/flover/configs");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model.path, "/etc/flover/models/m.bin");
  EXPECT_EQ(config->model.tokenizer, "/etc/flover/configs/tok.bin");

  // Absolute paths and dummy presets are left alone; empty base_dir leaves paths relative.
  config = ParseClusterConfig("endpoints: {control: tcp://127.0.0.1:5556}\n"
                              "model: {path: /abs/m.bin, tokenizer: /abs/t.bin}\n",
                              "x.yaml", "/etc");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->model.path, "/abs/m.bin");
  EXPECT_EQ(config->model.tokenizer, "/abs/t.bin");
  config = ParseClusterConfig(kMinimal, "x.yaml", "/etc");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->model.path, "dummy:tiny");
  config = ParseClusterConfig(text, "x.yaml", "");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->model.path, "../models/m.bin");
}

TEST(ClusterConfigPaths, ExpansionHappensBeforeResolution) {
  ScopedEnv models("FLOVER_MODELS_DIR", "/data/models");
  Result<ClusterConfig> config = LoadClusterConfig(kSourceDir + "/configs/local.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model.path, "/data/models/stories260K/stories260K.bin");
  EXPECT_EQ(config->model.tokenizer, "/data/models/stories260K/tok512.bin");

  ScopedEnv relative("FLOVER_MODELS_DIR", "rel");
  config = ParseClusterConfig("endpoints: {control: tcp://127.0.0.1:5556}\n"
                              "model:\n  path: ${FLOVER_MODELS_DIR}/m.bin\n",
                              "x.yaml", "/cfg");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model.path, "/cfg/rel/m.bin");
}

TEST(ClusterConfigPaths, LoadResolvesAgainstTheFilesDirectory) {
  const fs::path dir = fs::temp_directory_path() / ("flover_cluster_config_paths_" + std::to_string(getpid()));
  fs::create_directories(dir / "sub");
  std::ofstream(dir / "sub" / "c.yaml")
      << "endpoints: {control: tcp://127.0.0.1:5556}\nmodel: {path: ../m.bin, tokenizer: t.bin}\n";
  Result<ClusterConfig> config = LoadClusterConfig((dir / "sub" / "c.yaml").string());
  fs::remove_all(dir);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model.path, (dir / "m.bin").string());
  EXPECT_EQ(config->model.tokenizer, (dir / "sub" / "t.bin").string());
}

}  // namespace
}  // namespace flover
