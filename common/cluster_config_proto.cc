#include "common/cluster_config_proto.h"

#include <array>
#include <optional>
#include <string>
#include <utility>

#include <google/protobuf/descriptor.h>

#include "common/check.h"

namespace flover {
namespace {

// Each C++ value and its wire value; the wire's 0 (UNSPECIFIED) is in no table.
constexpr std::array<std::pair<SchedulerPolicy, proto::SchedulerPolicy>, 4> kPolicies = {{
    {SchedulerPolicy::kFused, proto::SCHEDULER_POLICY_FUSED},
    {SchedulerPolicy::kDynamic, proto::SCHEDULER_POLICY_DYNAMIC},
    {SchedulerPolicy::kInstances, proto::SCHEDULER_POLICY_INSTANCES},
    {SchedulerPolicy::kSequential, proto::SCHEDULER_POLICY_SEQUENTIAL},
}};

constexpr std::array<std::pair<CpuTransport, proto::CpuTransport>, 3> kTransports = {{
    {CpuTransport::kAuto, proto::CPU_TRANSPORT_AUTO},
    {CpuTransport::kShm, proto::CPU_TRANSPORT_SHM},
    {CpuTransport::kTcp, proto::CPU_TRANSPORT_TCP},
}};

constexpr std::array<std::pair<std::optional<WeightDType>, proto::ModelDType>, 7> kDTypes = {{
    {std::nullopt, proto::MODEL_DTYPE_AUTO},
    {WeightDType::kF32, proto::MODEL_DTYPE_FP32},
    {WeightDType::kF16, proto::MODEL_DTYPE_FP16},
    {WeightDType::kBF16, proto::MODEL_DTYPE_BF16},
    {WeightDType::kQ8_0, proto::MODEL_DTYPE_Q8_0},
    {WeightDType::kQ4_0, proto::MODEL_DTYPE_Q4_0},
    {WeightDType::kQ4_K, proto::MODEL_DTYPE_Q4_K},
}};

// Unlike the tables above, 0 has a value: a coordinator from before kv_cache.dtype sends
// none, which is the default.
constexpr std::array<std::pair<std::optional<DType>, proto::KvCacheDType>, 4> kKvDTypes = {{
    {std::nullopt, proto::KV_CACHE_DTYPE_UNSPECIFIED},
    {DType::kF32, proto::KV_CACHE_DTYPE_FP32},
    {DType::kF16, proto::KV_CACHE_DTYPE_FP16},
    {DType::kBF16, proto::KV_CACHE_DTYPE_BF16},
}};

template <typename Value, typename Wire, size_t N>
Wire ToWire(const std::array<std::pair<Value, Wire>, N>& table, const Value& value) {
  for (const auto& [v, w] : table)
    if (v == value) return w;
  return Wire{};  // 0: UNSPECIFIED
}

// The value of `wire`, or InvalidArgument naming `key` for 0 and values this build
// does not know (a newer or broken peer).
template <typename Value, typename Wire, size_t N>
Status FromWire(const std::array<std::pair<Value, Wire>, N>& table, Wire wire, const std::string& source,
                const char* key, Value* out) {
  for (const auto& [v, w] : table) {
    if (w == wire) {
      *out = v;
      return Status::Ok();
    }
  }
  return ConfigError(source, key,
                     wire == Wire{} ? std::string("is not set")
                                    : std::to_string(static_cast<int>(wire)) + " is not a value this build knows");
}

// Calls fn(field, member) for each entry of `table` (kLimitFields, kHttpFields): its
// protobuf field of `message` (named as its YAML key) and its member.
template <typename Message, typename Table, typename Fn>
void ForEachIntField(Message* message, const Table& table, Fn fn) {
  const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
  for (const auto& entry : table) {
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByName(entry.key);
    FLOVER_CHECK(field != nullptr && field->type() == google::protobuf::FieldDescriptor::TYPE_INT32) << entry.key;
    fn(field, entry.value);
  }
}

// Copies every int of `table` between `settings` and `message`, in the direction `to_wire` says.
template <typename Settings, typename Message, typename Table>
void CopyIntFields(const Table& table, Settings* settings, Message* message, bool to_wire) {
  ForEachIntField(message, table, [&](const google::protobuf::FieldDescriptor* field, auto member) {
    if (to_wire)
      message->GetReflection()->SetInt32(message, field, settings->*member);
    else
      settings->*member = message->GetReflection()->GetInt32(*message, field);
  });
}

}  // namespace

proto::ClusterConfig ToProto(const ClusterConfig& c) {
  proto::ClusterConfig m;
  m.set_source(c.source);
  m.set_name(c.name);
  proto::EndpointsConfig* e = m.mutable_endpoints();
  e->set_client(c.endpoints.client);
  e->set_control(c.endpoints.control);
  e->set_plans(c.endpoints.plans);
  e->set_http(c.endpoints.http);
  proto::ModelConfig* model = m.mutable_model();
  model->set_path(c.model.path);
  model->set_tokenizer(c.model.tokenizer);
  model->set_dummy_seed(c.model.dummy_seed);
  model->set_dtype(ToWire(kDTypes, c.model.dtype));
  model->set_name(c.model.name);
  model->set_chat_template(c.model.chat_template);
  m.set_replicas(c.replicas);
  m.set_tensor_parallel(c.tensor_parallel);
  m.set_cpu_transport(ToWire(kTransports, c.cpu_transport));
  for (const WorkerConfig& w : c.workers) {
    proto::WorkerConfig* pw = m.add_workers();
    pw->set_replica(w.replica);
    pw->set_rank(w.rank);
    pw->set_host(w.host);
    pw->set_device(w.device);
    pw->set_threads(w.threads);
  }
  m.mutable_kv_cache()->set_block_size(c.kv_cache.block_size);
  m.mutable_kv_cache()->set_memory_mib(c.kv_cache.memory_mib);
  m.mutable_kv_cache()->set_dtype(ToWire(kKvDTypes, c.kv_cache.dtype));
  const SchedulerSettings& s = c.scheduler;
  proto::SchedulerSettings* ps = m.mutable_scheduler();
  ps->set_policy(ToWire(kPolicies, s.policy));
  ps->set_max_step_tokens(s.max_step_tokens);
  ps->set_max_running(s.max_running);
  ps->set_max_queued(s.max_queued);
  ps->set_pipeline_depth(s.pipeline_depth);
  ps->set_batch_window_ms(s.batch_window_ms);
  ps->set_max_batch(s.max_batch);
  ps->set_failover_wait_ms(s.failover_wait_ms);
  m.mutable_heartbeat()->set_interval_ms(c.heartbeat.interval_ms);
  m.mutable_heartbeat()->set_timeout_ms(c.heartbeat.timeout_ms);
  m.mutable_heartbeat()->set_step_timeout_ms(c.heartbeat.step_timeout_ms);
  LimitsSettings limits = c.limits;
  CopyIntFields(kLimitFields, &limits, m.mutable_limits(), /*to_wire=*/true);
  HttpSettings http = c.http;
  CopyIntFields(kHttpFields, &http, m.mutable_http(), /*to_wire=*/true);
  return m;
}

Result<ClusterConfig> FromProto(const proto::ClusterConfig& m) {
  ClusterConfig c;
  c.source = m.source();
  c.name = m.name();
  c.endpoints = {.client = m.endpoints().client(),
                 .control = m.endpoints().control(),
                 .plans = m.endpoints().plans(),
                 .http = m.endpoints().http()};
  c.model.path = m.model().path();
  c.model.tokenizer = m.model().tokenizer();
  c.model.dummy_seed = m.model().dummy_seed();
  c.model.name = m.model().name();
  c.model.chat_template = m.model().chat_template();
  FLOVER_RETURN_IF_ERROR(FromWire(kDTypes, m.model().dtype(), c.source, "model.dtype", &c.model.dtype));
  c.replicas = m.replicas();
  c.tensor_parallel = m.tensor_parallel();
  FLOVER_RETURN_IF_ERROR(
      FromWire(kTransports, m.cpu_transport(), c.source, "parallel.cpu_transport", &c.cpu_transport));
  c.workers.reserve(m.workers_size());
  for (const proto::WorkerConfig& w : m.workers()) {
    c.workers.push_back(
        {.replica = w.replica(), .rank = w.rank(), .host = w.host(), .device = w.device(), .threads = w.threads()});
  }
  c.kv_cache.block_size = m.kv_cache().block_size();
  c.kv_cache.memory_mib = m.kv_cache().memory_mib();
  FLOVER_RETURN_IF_ERROR(FromWire(kKvDTypes, m.kv_cache().dtype(), c.source, "kv_cache.dtype", &c.kv_cache.dtype));
  const proto::SchedulerSettings& s = m.scheduler();
  FLOVER_RETURN_IF_ERROR(FromWire(kPolicies, s.policy(), c.source, "scheduler.policy", &c.scheduler.policy));
  c.scheduler.max_step_tokens = s.max_step_tokens();
  c.scheduler.max_running = s.max_running();
  c.scheduler.max_queued = s.max_queued();
  c.scheduler.pipeline_depth = s.pipeline_depth();
  c.scheduler.batch_window_ms = s.batch_window_ms();
  c.scheduler.max_batch = s.max_batch();
  c.scheduler.failover_wait_ms = s.failover_wait_ms();
  c.heartbeat = {.interval_ms = m.heartbeat().interval_ms(),
                 .timeout_ms = m.heartbeat().timeout_ms(),
                 .step_timeout_ms = m.heartbeat().step_timeout_ms()};
  proto::LimitsSettings limits = m.limits();
  CopyIntFields(kLimitFields, &c.limits, &limits, /*to_wire=*/false);
  proto::HttpSettings http = m.http();
  CopyIntFields(kHttpFields, &c.http, &http, /*to_wire=*/false);
  FLOVER_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace flover
