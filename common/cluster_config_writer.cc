#include "common/cluster_config_writer.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <system_error>

#include "common/check.h"
#include "common/config_env.h"

namespace flover {
namespace {

// The shortest text that reads back as the same double.
std::string DoubleToString(double value) {
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  FLOVER_CHECK(ec == std::errc()) << "to_chars failed for " << value;
  return std::string(buffer, end);
}

}  // namespace

std::string ToYaml(const ClusterConfig& config) {
  YAML::Emitter out;
  auto str = [](const std::string& s) { return EscapeEnv(s); };
  if (!config.source.empty()) out << YAML::Comment("Derived from " + config.source);
  out << YAML::BeginMap;

  out << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << str(config.name);
  out << YAML::EndMap;

  out << YAML::Key << "endpoints" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "client" << YAML::Value << str(config.endpoints.client);
  out << YAML::Key << "control" << YAML::Value << str(config.endpoints.control);
  out << YAML::Key << "plans" << YAML::Value << str(config.endpoints.plans);
  if (!config.endpoints.http.empty()) out << YAML::Key << "http" << YAML::Value << str(config.endpoints.http);
  out << YAML::EndMap;

  out << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "path" << YAML::Value << str(config.model.path);
  if (!config.model.tokenizer.empty()) out << YAML::Key << "tokenizer" << YAML::Value << str(config.model.tokenizer);
  out << YAML::Key << "dummy_seed" << YAML::Value << std::to_string(config.model.dummy_seed);
  out << YAML::Key << "dtype" << YAML::Value << ModelDTypeName(config.model.dtype);
  if (!config.model.name.empty()) out << YAML::Key << "name" << YAML::Value << str(config.model.name);
  if (!config.model.chat_template.empty())
    out << YAML::Key << "chat_template" << YAML::Value << str(config.model.chat_template);
  out << YAML::EndMap;

  out << YAML::Key << "parallel" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "replicas" << YAML::Value << config.replicas;
  out << YAML::Key << "tensor" << YAML::Value << config.tensor_parallel;
  out << YAML::Key << "cpu_transport" << YAML::Value << CpuTransportName(config.cpu_transport);
  out << YAML::EndMap;

  out << YAML::Key << "workers" << YAML::Value << YAML::BeginSeq;
  for (const WorkerConfig& w : config.workers) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "replica" << YAML::Value << w.replica;
    out << YAML::Key << "rank" << YAML::Value << w.rank;
    out << YAML::Key << "host" << YAML::Value << str(w.host);
    out << YAML::Key << "device" << YAML::Value << str(w.device);
    out << YAML::Key << "threads" << YAML::Value << w.threads;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  out << YAML::Key << "kv_cache" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "block_size" << YAML::Value << config.kv_cache.block_size;
  out << YAML::Key << "memory_mib" << YAML::Value << DoubleToString(config.kv_cache.memory_mib);
  if (config.kv_cache.dtype) out << YAML::Key << "dtype" << YAML::Value << DTypeName(*config.kv_cache.dtype);
  out << YAML::EndMap;

  const SchedulerSettings& s = config.scheduler;
  out << YAML::Key << "scheduler" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "policy" << YAML::Value << SchedulerPolicyName(s.policy);
  out << YAML::Key << "max_step_tokens" << YAML::Value << s.max_step_tokens;
  out << YAML::Key << "max_running" << YAML::Value << s.max_running;
  out << YAML::Key << "max_queued" << YAML::Value << s.max_queued;
  out << YAML::Key << "pipeline_depth" << YAML::Value << s.pipeline_depth;
  out << YAML::Key << "batch_window_ms" << YAML::Value << s.batch_window_ms;
  out << YAML::Key << "max_batch" << YAML::Value << s.max_batch;
  out << YAML::Key << "failover_wait_ms" << YAML::Value << s.failover_wait_ms;
  out << YAML::EndMap;

  out << YAML::Key << "heartbeat" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "interval_ms" << YAML::Value << config.heartbeat.interval_ms;
  out << YAML::Key << "timeout_ms" << YAML::Value << config.heartbeat.timeout_ms;
  out << YAML::Key << "step_timeout_ms" << YAML::Value << config.heartbeat.step_timeout_ms;
  out << YAML::EndMap;

  out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
  for (const LimitField& field : kLimitFields) out << YAML::Key << field.key << YAML::Value << config.limits.*field.value;
  out << YAML::EndMap;

  out << YAML::Key << "http" << YAML::Value << YAML::BeginMap;
  if (!config.http.api_keys.empty()) {
    out << YAML::Key << "api_keys" << YAML::Value << YAML::BeginSeq;
    for (const std::string& key : config.http.api_keys) out << str(key);
    out << YAML::EndSeq;
  }
  for (const HttpField& field : kHttpFields) out << YAML::Key << field.key << YAML::Value << config.http.*field.value;
  out << YAML::EndMap;

  if (config.security.mode != SecurityMode::kNone) {
    out << YAML::Key << "security" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "mode" << YAML::Value << SecurityModeName(config.security.mode);
    for (const SecurityPathField& field : kSecurityPathFields) {
      const std::string& path = config.security.*field.value;
      if (!path.empty()) out << YAML::Key << field.key << YAML::Value << str(path);
    }
    out << YAML::EndMap;
  }

  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace flover
