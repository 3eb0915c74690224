#include "common/cluster_config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

namespace flover {
namespace {

// "tcp://host:port" (port 1..65535 or *), "ipc://path", "inproc://name".
bool IsValidEndpoint(const std::string& endpoint) {
  auto rest_after = [&](const std::string& scheme, std::string* rest) {
    if (endpoint.rfind(scheme, 0) != 0) return false;
    *rest = endpoint.substr(scheme.size());
    return true;
  };
  std::string rest;
  if (rest_after("ipc://", &rest) || rest_after("inproc://", &rest)) return !rest.empty();
  if (!rest_after("tcp://", &rest)) return false;
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  const std::string port = rest.substr(colon + 1);
  if (port == "*") return true;
  int value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && end == port.data() + port.size() && !port.empty() && port[0] != '-' &&
         value >= 1 && value <= 65535;
}

bool IsAnyPort(const std::string& endpoint) {
  return endpoint.size() >= 2 && endpoint.compare(endpoint.size() - 2, 2, ":*") == 0;
}

bool IsValidDevice(const std::string& device) {
  if (device == "cpu") return true;
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5) return false;
  return std::all_of(device.begin() + 5, device.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Item(const std::string& path, size_t index) { return path + "[" + std::to_string(index) + "]"; }

// The rules of ClusterConfig::Validate, section by section in file order. Each returns
// the first rule broken as "<source>: <key path>: <what>".
class Validator {
 public:
  explicit Validator(const ClusterConfig& config) : c_(config) {}

  Status Run() const {
    if (c_.name.empty()) return Error("cluster.name", "must not be empty");
    FLOVER_RETURN_IF_ERROR(Endpoints());
    FLOVER_RETURN_IF_ERROR(Model());
    FLOVER_RETURN_IF_ERROR(AtLeast("parallel.replicas", c_.replicas, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("parallel.tensor", c_.tensor_parallel, 1));
    if (!CpuTransportFromName(CpuTransportName(c_.cpu_transport)))
      return Error("parallel.cpu_transport", NotAValue(c_.cpu_transport));
    FLOVER_RETURN_IF_ERROR(Workers());
    FLOVER_RETURN_IF_ERROR(Devices());
    FLOVER_RETURN_IF_ERROR(KvCache());
    FLOVER_RETURN_IF_ERROR(Scheduler());
    FLOVER_RETURN_IF_ERROR(Heartbeat());
    FLOVER_RETURN_IF_ERROR(Limits());
    FLOVER_RETURN_IF_ERROR(Http());
    return Security();
  }

 private:
  Status Error(const std::string& path, const std::string& what) const { return ConfigError(c_.source, path, what); }

  Status AtLeast(const std::string& path, long long value, long long min) const {
    if (value >= min) return Status::Ok();
    return Error(path, "must be >= " + std::to_string(min) + ", got " + std::to_string(value));
  }

  // For an enum field holding an integer that names no value (a bug of the code that
  // built the config: the reader and FromProto never produce one).
  template <typename E>
  static std::string NotAValue(E value) {
    return std::to_string(static_cast<int>(value)) + " is not a value of the setting";
  }

  Status Endpoints() const {
    const EndpointsConfig& e = c_.endpoints;
    const std::pair<const char*, const std::string*> fields[] = {
        {"client", &e.client}, {"control", &e.control}, {"plans", &e.plans}};
    std::map<std::string, std::string> bound;  // fixed endpoint -> key that binds it
    for (const auto& [key, value] : fields) {
      const std::string path = std::string("endpoints.") + key;
      if (!IsValidEndpoint(*value)) {
        return Error(path, "'" + *value +
                               "' is not a ZeroMQ endpoint (expected tcp://host:port, ipc://path or inproc://name; "
                               "port may be *)");
      }
      if (IsAnyPort(*value)) continue;
      const auto [it, inserted] = bound.emplace(*value, path);
      if (!inserted) return Error(path, "'" + *value + "' is also " + it->second + "; each endpoint needs its own address");
    }
    if (!e.http.empty() && !ParseHttpEndpoint(e.http))
      return Error("endpoints.http", "'" + e.http + "' is not http://host:port (port 0..65535; 0 = any free port)");
    return Status::Ok();
  }

  Status Http() const {
    const HttpSettings& h = c_.http;
    for (size_t i = 0; i < h.api_keys.size(); ++i)
      if (h.api_keys[i].empty()) return Error(Item("http.api_keys", i), "is empty (after ${VAR} expansion)");
    for (const HttpField& field : kHttpFields)
      FLOVER_RETURN_IF_ERROR(AtLeast(std::string("http.") + field.key, h.*field.value, field.min));
    return Status::Ok();
  }

  Status Model() const {
    const ModelConfig& m = c_.model;
    if (m.path.empty()) return Error("model.path", "must not be empty");
    if (m.path == "dummy:") return Error("model.path", "'dummy:' names no preset (e.g. dummy:llama-7b)");
    if (m.dtype && !IsWeightDType(*m.dtype)) return Error("model.dtype", NotAValue(*m.dtype));
    return Status::Ok();
  }

  // REQUIRES: replicas and tensor_parallel valid.
  Status Workers() const {
    const int replicas = c_.replicas;
    const int tensor = c_.tensor_parallel;
    std::map<std::pair<int, int>, std::string> seen;  // (replica, rank) -> key path
    for (size_t i = 0; i < c_.workers.size(); ++i) {
      const WorkerConfig& w = c_.workers[i];
      const std::string path = Item("workers", i);
      if (w.replica < 0 || w.replica >= replicas) {
        return Error(path + ".replica", std::to_string(w.replica) + " is out of range [0, " + std::to_string(replicas) +
                                            ") (parallel.replicas is " + std::to_string(replicas) + ")");
      }
      if (w.rank < 0 || w.rank >= tensor) {
        return Error(path + ".rank", std::to_string(w.rank) + " is out of range [0, " + std::to_string(tensor) +
                                         ") (parallel.tensor is " + std::to_string(tensor) + ")");
      }
      if (w.host.empty()) return Error(path + ".host", "must not be empty");
      if (!IsValidDevice(w.device)) return Error(path + ".device", "'" + w.device + "' is not cpu or cuda:N");
      FLOVER_RETURN_IF_ERROR(AtLeast(path + ".threads", w.threads, 0));
      const auto [it, inserted] = seen.emplace(std::make_pair(w.replica, w.rank), path);
      if (!inserted) {
        return Error(path, "replica " + std::to_string(w.replica) + " rank " + std::to_string(w.rank) +
                               " is listed twice (also " + it->second + ")");
      }
    }
    for (int r = 0; r < replicas; ++r) {
      for (int k = 0; k < tensor; ++k) {
        if (seen.count({r, k}) == 0) {
          return Error("workers", "no entry for replica " + std::to_string(r) + " rank " + std::to_string(k) +
                                      " (parallel is " + std::to_string(replicas) + " replicas x " +
                                      std::to_string(tensor) +
                                      " ranks: list every (replica, rank) once, or omit workers to run all on "
                                      "127.0.0.1)");
        }
      }
    }
    return Status::Ok();
  }

  // REQUIRES: Workers() passed (every replica has a rank 0).
  Status Devices() const {
    // The ranks of a replica run collectives together: Gloo between CPU ranks, NCCL
    // between GPUs; they cannot mix. CUDA workers store fp32, fp16 or bf16 weights; the
    // block formats are CPU only. Their KV cache has the weights' type.
    const std::optional<WeightDType> dtype = c_.model.dtype;
    for (const WorkerConfig& w : c_.workers) {
      const WorkerConfig& first = *c_.FindWorker(w.replica, 0);
      if ((w.device == "cpu") != (first.device == "cpu"))
        return Error("workers", "replica " + std::to_string(w.replica) + " mixes devices " + first.device + " and " +
                                    w.device + "; the ranks of a replica are all cpu or all cuda");
      if (w.device != "cpu" && dtype && !StorageDType(*dtype))
        return Error("model.dtype", std::string(WeightDTypeName(*dtype)) + " is a CPU weight format; replica " +
                                        std::to_string(w.replica) + " rank " + std::to_string(w.rank) + " runs on " +
                                        w.device + ", which stores fp32, fp16 or bf16 (use dtype auto, fp32, fp16 "
                                        "or bf16 with CUDA workers)");
      if (w.device != "cpu" && c_.kv_cache.dtype && *c_.kv_cache.dtype != CudaWorkerDType(c_.model))
        return Error("kv_cache.dtype", std::string(DTypeName(*c_.kv_cache.dtype)) + " on replica " +
                                           std::to_string(w.replica) + " rank " + std::to_string(w.rank) + " (" +
                                           w.device + "), whose KV cache has the weights' type, " +
                                           DTypeName(CudaWorkerDType(c_.model)) + " for model.dtype " +
                                           ModelDTypeName(c_.model.dtype) + " (leave kv_cache.dtype unset or set it to " +
                                           DTypeName(CudaWorkerDType(c_.model)) + ")");
    }
    return Status::Ok();
  }

  Status KvCache() const {
    const KvCacheSettings& kv = c_.kv_cache;
    FLOVER_RETURN_IF_ERROR(AtLeast("kv_cache.block_size", kv.block_size, 1));
    std::ostringstream value;
    value << kv.memory_mib;
    if (!std::isfinite(kv.memory_mib)) return Error("kv_cache.memory_mib", "must be a finite number, got " + value.str());
    if (!(kv.memory_mib > 0)) return Error("kv_cache.memory_mib", "must be > 0, got " + value.str());
    if (kv.dtype && *kv.dtype != DType::kF32 && *kv.dtype != DType::kF16 && *kv.dtype != DType::kBF16)
      return Error("kv_cache.dtype", NotAValue(*kv.dtype));
    return Status::Ok();
  }

  Status Scheduler() const {
    const SchedulerSettings& s = c_.scheduler;
    if (!SchedulerPolicyFromName(SchedulerPolicyName(s.policy)))
      return Error("scheduler.policy", NotAValue(s.policy));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_step_tokens", s.max_step_tokens, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_running", s.max_running, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_queued", s.max_queued, 1));
    if (s.pipeline_depth < 1 || s.pipeline_depth > kMaxPipelineDepth) {
      return Error("scheduler.pipeline_depth", "must be in 1.." + std::to_string(kMaxPipelineDepth) + ", got " +
                                                   std::to_string(s.pipeline_depth));
    }
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.batch_window_ms", s.batch_window_ms, 0));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_batch", s.max_batch, 1));
    return AtLeast("scheduler.failover_wait_ms", s.failover_wait_ms, 0);
  }

  Status Limits() const {
    for (const LimitField& field : kLimitFields)
      FLOVER_RETURN_IF_ERROR(AtLeast(std::string("limits.") + field.key, c_.limits.*field.value, 1));
    return Status::Ok();
  }

  Status Security() const {
    const SecuritySettings& sec = c_.security;
    if (sec.mode != SecurityMode::kNone && sec.mode != SecurityMode::kInsecure && sec.mode != SecurityMode::kCurve)
      return Error("security.mode", NotAValue(sec.mode));
    if (sec.mode != SecurityMode::kCurve) {
      for (const SecurityPathField& field : kSecurityPathFields) {
        if (!(sec.*field.value).empty())
          return Error(std::string("security.") + field.key, "is only used with mode curve");
      }
      return Status::Ok();
    }
    const std::tuple<const char*, const std::string*, const char*> required[] = {
        {"coordinator_key", &sec.coordinator_key, "the coordinator's key pair"},
        {"coordinator_public_key", &sec.coordinator_public_key,
         "the coordinator's public key, which workers and clients pin"},
        {"worker_keys", &sec.worker_keys, "the public keys admitted as workers"}};
    for (const auto& [key, value, what] : required) {
      if (value->empty())
        return Error(std::string("security.") + key,
                     std::string("required with mode curve (") + what + "; keys are made by flover keygen)");
    }
    if (sec.client_keys.empty() && sec.admin_keys.empty())
      return Error("security", "mode curve needs client_keys or admin_keys: without them no client may connect");
    return Status::Ok();
  }

  Status Heartbeat() const {
    const HeartbeatSettings& h = c_.heartbeat;
    FLOVER_RETURN_IF_ERROR(AtLeast("heartbeat.step_timeout_ms", h.step_timeout_ms, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("heartbeat.interval_ms", h.interval_ms, 1));
    if (h.timeout_ms <= h.interval_ms) {
      return Error("heartbeat.timeout_ms", std::to_string(h.timeout_ms) + " must be greater than heartbeat.interval_ms (" +
                                               std::to_string(h.interval_ms) + ")");
    }
    return Status::Ok();
  }

  const ClusterConfig& c_;
};

}  // namespace

const WorkerConfig* ClusterConfig::FindWorker(int replica, int rank) const {
  for (const WorkerConfig& worker : workers) {
    if (worker.replica == replica && worker.rank == rank) return &worker;
  }
  return nullptr;
}

Status ClusterConfig::Validate() const { return Validator(*this).Run(); }

Status ConfigError(const std::string& source, const std::string& key_path, const std::string& what) {
  return InvalidArgument((source.empty() ? "" : source + ": ") + key_path + ": " + what);
}

const char* SecurityModeName(SecurityMode mode) {
  switch (mode) {
    case SecurityMode::kNone: return "none";
    case SecurityMode::kInsecure: return "insecure";
    case SecurityMode::kCurve: return "curve";
  }
  return "unknown";
}

std::optional<SecurityMode> SecurityModeFromName(const std::string& name) {
  if (name == "curve") return SecurityMode::kCurve;
  if (name == "insecure") return SecurityMode::kInsecure;
  return std::nullopt;
}

namespace {

// The host of a tcp:// endpoint ("*", "0.0.0.0", "::1" without brackets, a name);
// nullopt for other transports.
std::optional<std::string> TcpHost(const std::string& endpoint) {
  const std::string kTcp = endpoint.rfind("http://", 0) == 0 ? "http://" : "tcp://";
  if (endpoint.rfind(kTcp, 0) != 0) return std::nullopt;
  const size_t colon = endpoint.rfind(':');
  std::string host = colon == std::string::npos || colon < kTcp.size()
                         ? endpoint.substr(kTcp.size())
                         : endpoint.substr(kTcp.size(), colon - kTcp.size());
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

// True / false for an IP literal on / off loopback; nullopt when `host` is no IP literal.
std::optional<bool> LiteralIsLoopback(const std::string& host) {
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
    return false;
  }
  return std::nullopt;
}

}  // namespace

bool IsLoopbackEndpoint(const std::string& endpoint) {
  const std::optional<std::string> host = TcpHost(endpoint);
  if (!host) return true;  // ipc://, inproc://
  if (*host == "localhost") return true;
  return LiteralIsLoopback(*host).value_or(false);
}

namespace {

// endpoints.http off loopback needs API keys: neither CURVE nor the ZAP handler covers it.
Status CheckHttpExposure(const ClusterConfig& config) {
  const std::string& http = config.endpoints.http;
  if (http.empty() || !config.http.api_keys.empty()) return Status::Ok();
  const std::optional<std::string> host = TcpHost(http);
  const bool wildcard = host && (*host == "*" || *host == "0.0.0.0" || *host == "::");
  if (!host || *host == "localhost" || (!wildcard && LiteralIsLoopback(*host).value_or(true))) return Status::Ok();
  return ConfigError(config.source, "endpoints.http",
                     "'" + http +
                         "' binds a non-loopback address and http.api_keys is empty: anyone who reaches it could "
                         "use the cluster; set http.api_keys (docs/http.md) or bind 127.0.0.1");
}

}  // namespace

Status CheckEndpointExposure(const ClusterConfig& config) {
  FLOVER_RETURN_IF_ERROR(CheckHttpExposure(config));
  if (config.security.mode != SecurityMode::kNone) return Status::Ok();
  const EndpointsConfig& e = config.endpoints;
  const std::pair<const char*, const std::string*> fields[] = {
      {"client", &e.client}, {"control", &e.control}, {"plans", &e.plans}};
  for (const auto& [key, endpoint] : fields) {
    const std::optional<std::string> host = TcpHost(*endpoint);
    if (!host || *host == "localhost") continue;
    const bool wildcard = *host == "*" || *host == "0.0.0.0" || *host == "::";
    const std::optional<bool> loopback = LiteralIsLoopback(*host);
    if (!wildcard && loopback.value_or(true)) continue;  // loopback, or a name the coordinator resolves
    return ConfigError(config.source, std::string("endpoints.") + key,
                       "'" + *endpoint +
                           "' binds a non-loopback address and the config has no security section: add a security "
                           "section (docs/security.md) or bind 127.0.0.1");
  }
  return Status::Ok();
}

std::optional<HttpAddress> ParseHttpEndpoint(const std::string& endpoint) {
  static const std::string kHttp = "http://";
  if (endpoint.rfind(kHttp, 0) != 0) return std::nullopt;
  const std::string rest = endpoint.substr(kHttp.size());
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  HttpAddress address;
  address.host = rest.substr(0, colon);
  if (address.host.front() == '[') {
    if (address.host.size() < 3 || address.host.back() != ']') return std::nullopt;
    address.host = address.host.substr(1, address.host.size() - 2);
  } else if (address.host.find(':') != std::string::npos) {
    return std::nullopt;  // an IPv6 address needs brackets
  }
  if (address.host.find_first_of("/?#@ ") != std::string::npos) return std::nullopt;
  const std::string port = rest.substr(colon + 1);
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), address.port);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || port[0] == '-' || address.port < 0 ||
      address.port > 65535)
    return std::nullopt;
  return address;
}

std::string ServedModelName(const ModelConfig& model) {
  if (!model.name.empty()) return model.name;
  static const std::string kDummy = "dummy:";
  if (model.path.rfind(kDummy, 0) == 0) return "dummy-" + model.path.substr(kDummy.size());
  std::string stem = model.path;
  while (stem.size() > 1 && stem.back() == '/') stem.pop_back();  // a model folder
  if (const size_t slash = stem.rfind('/'); slash != std::string::npos) stem = stem.substr(slash + 1);
  // A model file's extension goes ("stories260K.bin" -> "stories260K"); a folder's name
  // is kept whole ("Qwen2-0.5B-Instruct").
  for (std::string_view ext : {".bin", ".gguf", ".safetensors", ".json"})
    if (stem.size() > ext.size() && stem.ends_with(ext)) stem.resize(stem.size() - ext.size());
  return stem.empty() ? "model" : stem;
}

const char* ModelDTypeName(const std::optional<WeightDType>& dtype) { return dtype ? WeightDTypeName(*dtype) : "auto"; }

Result<std::optional<WeightDType>> ParseModelDType(std::string_view name) {
  if (name == "auto") return std::optional<WeightDType>();
  Result<WeightDType> parsed = ParseWeightDType(name);
  if (!parsed.ok())
    return InvalidArgument("'" + std::string(name) + "' is not auto, fp32, fp16, bf16, q8_0, q4_0 or q4_k");
  return std::optional<WeightDType>(*parsed);
}

DType CudaWorkerDType(const ModelConfig& model) {
  if (!model.dtype) return DType::kF16;
  const std::optional<DType> storage = StorageDType(*model.dtype);
  FLOVER_CHECK(storage.has_value()) << "model.dtype " << WeightDTypeName(*model.dtype) << " on a CUDA worker";
  return *storage;
}

Status ValidateAgainstModel(const ClusterConfig& config, const ModelSpec& spec) {
  if (Status status = spec.Validate(); !status.ok()) {
    return status.WithContext(config.source + ": model '" + config.model.path + "'");
  }
  const int tensor = config.tensor_parallel;
  auto error = [&](const std::string& what, int count) {
    return ConfigError(config.source, "parallel.tensor",
                       std::to_string(tensor) + " does not divide " + what + "=" + std::to_string(count));
  };
  if (spec.n_heads % tensor != 0) return error("heads", spec.n_heads);
  if (spec.n_kv_heads % tensor != 0) return error("kv_heads", spec.n_kv_heads);
  return Status::Ok();
}

}  // namespace flover
