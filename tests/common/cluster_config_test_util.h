// Helpers of the cluster config tests: the smallest valid YAML config, parsing with a
// fixed source name ("x.yaml"), expecting an error, and scoped environment variables.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/cluster_config_reader.h"

namespace flover::config_testing {

inline const std::string kSourceDir = FLOVER_SOURCE_DIR;

// The smallest valid config.
inline const char* kMinimal = R"(
endpoints:
  control: tcp://127.0.0.1:5556
model:
  path: dummy:tiny
)";

inline Result<ClusterConfig> Parse(const std::string& text, const std::string& base_dir = "/base") {
  return ParseClusterConfig(text, "x.yaml", base_dir);
}

// Expects `text` to fail with InvalidArgument and a message containing every piece.
inline void ExpectError(const std::string& text, const std::vector<std::string>& pieces) {
  Result<ClusterConfig> result = Parse(text);
  ASSERT_FALSE(result.ok()) << "parsed:\n" << text;
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << result.status().ToString();
  for (const std::string& piece : pieces) EXPECT_THAT(result.status().message(), ::testing::HasSubstr(piece));
}

// A valid config with every field away from its default, and strings that need quoting
// or escaping in YAML.
inline ClusterConfig EveryFieldSet() {
  ClusterConfig config;
  config.source = "derived.yaml";
  config.name = "odd: name # with $HOME and ${X} and 'quotes'";
  config.endpoints = {
      .client = "ipc:///tmp/c", .control = "tcp://*:7000", .plans = "tcp://[::1]:7001", .http = "http://[::1]:0"};
  config.model = {.path = "/models/a b/m.gguf",
                  .tokenizer = "/models/tok.bin",
                  .dummy_seed = 18446744073709551615ull,
                  .dtype = WeightDType::kF32,
                  .name = "odd: model ${X}",
                  .chat_template = "{% for m in messages %}<|im_start|>{{ m.content }}\n{% endfor %}"};
  config.replicas = 2;
  config.tensor_parallel = 2;
  config.cpu_transport = CpuTransport::kShm;
  config.workers = {{.replica = 0, .rank = 0, .host = "node-a", .device = "cuda:0", .threads = 0},
                    {.replica = 0, .rank = 1, .host = "node-a", .device = "cuda:1", .threads = 2},
                    {.replica = 1, .rank = 0, .host = "node-b", .device = "cpu", .threads = 3},
                    {.replica = 1, .rank = 1, .host = "node-b", .device = "cpu", .threads = 0}};
  config.kv_cache = {.block_size = 32, .memory_mib = 0.1, .dtype = DType::kF32};
  config.scheduler = {.policy = SchedulerPolicy::kDynamic, .max_step_tokens = 100, .max_running = 7, .max_queued = 9,
                      .pipeline_depth = 3, .batch_window_ms = 0, .max_batch = 5, .failover_wait_ms = 0};
  config.heartbeat = {.interval_ms = 20, .timeout_ms = 21, .step_timeout_ms = 22};
  int limit = 100;  // each limit a different value, so that a swapped pair shows
  for (const LimitField& field : kLimitFields) config.limits.*field.value = ++limit;
  for (const HttpField& field : kHttpFields) config.http.*field.value = ++limit;  // api_keys: never on the wire
  return config;
}

// Every combination of the enum settings (policy, cpu transport, dtype) on `base`, whose
// workers are all CUDA; with a CPU-only dtype (q8_0, q4_0, q4_k) every worker becomes
// cpu, so that every combination is valid. A kv_cache.dtype set on `base` follows the
// CUDA workers' type.
inline std::vector<ClusterConfig> EveryEnumValue(const ClusterConfig& base) {
  std::vector<ClusterConfig> configs;
  std::vector<std::optional<WeightDType>> dtypes = {std::nullopt};
  for (WeightDType t : {WeightDType::kF32, WeightDType::kF16, WeightDType::kBF16, WeightDType::kQ8_0,
                        WeightDType::kQ4_0, WeightDType::kQ4_K})
    dtypes.push_back(t);
  for (const std::string& policy : SchedulerPolicyNames()) {
    for (const std::string& transport : CpuTransportNames()) {
      for (const std::optional<WeightDType> dtype : dtypes) {
        ClusterConfig c = base;
        c.scheduler.policy = *SchedulerPolicyFromName(policy);
        c.cpu_transport = *CpuTransportFromName(transport);
        c.model.dtype = dtype;
        if (dtype && !StorageDType(*dtype))
          for (WorkerConfig& w : c.workers) w.device = "cpu";
        else if (c.kv_cache.dtype)
          c.kv_cache.dtype = CudaWorkerDType(c.model);
        configs.push_back(c);
      }
    }
  }
  return configs;
}

// kMinimal plus `extra` YAML (whole sections).
inline std::string With(const std::string& extra) { return std::string(kMinimal) + extra; }

// Sets an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value, 1); else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_.c_str(), old_->c_str(), 1); else unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace flover::config_testing
