#include "common/cluster_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

namespace flover {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxPipelineDepth = 8;

std::string Join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    out += items[i];
  }
  return out;
}

std::string Child(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string Item(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

bool IsVarStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsVarChar(char c) { return IsVarStart(c) || (c >= '0' && c <= '9'); }

// "${VAR}", "${VAR:-default}", "$$" -> "$". On failure returns the reason, without the
// file name and key path (the caller adds them).
Result<std::string> ExpandEnv(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (text[i + 1] != '{') {
      out += '$';
      continue;
    }
    const size_t close = text.find('}', i + 2);
    if (close == std::string::npos) {
      return InvalidArgument("unterminated '${' in '" + text + "'");
    }
    const std::string body = text.substr(i + 2, close - i - 2);
    const size_t op = body.find(":-");
    const std::string name = body.substr(0, op);
    const bool valid_name = !name.empty() && IsVarStart(name[0]) &&
                            std::all_of(name.begin(), name.end(), IsVarChar);
    if (!valid_name) {
      return InvalidArgument("'${" + body + "}' is not a variable reference (expected ${NAME} or ${NAME:-default})");
    }
    const char* value = std::getenv(name.c_str());
    if (op == std::string::npos) {
      if (value == nullptr) {
        return InvalidArgument("environment variable " + name + " is not set (write ${" + name +
                               ":-default} to give a default)");
      }
      out += value;
    } else if (value != nullptr && *value != '\0') {
      out += value;
    } else {
      out += body.substr(op + 2);
    }
    i = close;
  }
  return out;
}

std::string EscapeDollars(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '$') out += '$';
    out += c;
  }
  return out;
}

std::string KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return "'" + node.Scalar() + "'";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Undefined: return "nothing";
  }
  return "nothing";
}

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

bool IsValidDevice(const std::string& device) {
  if (device == "cpu") return true;
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5) return false;
  return std::all_of(device.begin() + 5, device.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsDummy(const std::string& path) { return path.rfind("dummy:", 0) == 0; }

std::string ResolvePath(const std::string& base_dir, const std::string& path) {
  if (base_dir.empty() || path.empty() || IsDummy(path) || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

// Reads one YAML document into a ClusterConfig. Every method returns a Status whose
// message is "<source>: <key path>: <what>".
class ConfigReader {
 public:
  ConfigReader(std::string source, std::string base_dir)
      : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  Result<ClusterConfig> Read(const YAML::Node& root) {
    ClusterConfig config;
    config.source = source_;
    if (!root.IsNull() && !root.IsMap()) {
      return InvalidArgument(source_ + ": expected a mapping of sections (cluster, endpoints, model, ...) at the "
                             "top level, got " + KindName(root));
    }
    FLOVER_RETURN_IF_ERROR(CheckKeys(root, "", {"cluster", "endpoints", "model", "parallel", "workers",
                                                "kv_cache", "scheduler", "heartbeat"}));
    FLOVER_RETURN_IF_ERROR(ReadCluster(root, &config));
    FLOVER_RETURN_IF_ERROR(ReadEndpoints(root, &config.endpoints));
    FLOVER_RETURN_IF_ERROR(ReadModel(root, &config.model));
    FLOVER_RETURN_IF_ERROR(ReadParallel(root, &config));
    FLOVER_RETURN_IF_ERROR(ReadWorkers(root, &config));
    FLOVER_RETURN_IF_ERROR(CheckDevices(config));
    FLOVER_RETURN_IF_ERROR(ReadKvCache(root, &config.kv_cache));
    FLOVER_RETURN_IF_ERROR(ReadScheduler(root, &config.scheduler));
    FLOVER_RETURN_IF_ERROR(ReadHeartbeat(root, &config.heartbeat));
    return config;
  }

 private:
  Status Error(const std::string& path, const std::string& what) const {
    return InvalidArgument(source_ + ": " + (path.empty() ? what : path + ": " + what));
  }

  // `map` (a mapping or null) has only `known` keys, each once.
  Status CheckKeys(const YAML::Node& map, const std::string& path, std::initializer_list<const char*> known) {
    if (map.IsNull()) return Status::Ok();
    std::set<std::string> seen;
    for (const auto& entry : map) {
      if (!entry.first.IsScalar()) return Error(path, "keys must be plain names, got " + KindName(entry.first));
      const std::string key = entry.first.Scalar();
      const bool is_known = std::any_of(known.begin(), known.end(), [&](const char* k) { return key == k; });
      if (!is_known) {
        return Error(Child(path, key), "unknown key (expected one of " +
                                           Join(std::vector<std::string>(known.begin(), known.end()), ", ") + ")");
      }
      if (!seen.insert(key).second) return Error(Child(path, key), "duplicate key");
    }
    return Status::Ok();
  }

  // The mapping under `key` of `parent`, checked against `known`; null when absent.
  Result<YAML::Node> Section(const YAML::Node& parent, const std::string& parent_path, const std::string& key,
                             std::initializer_list<const char*> known) {
    const std::string path = Child(parent_path, key);
    YAML::Node node = parent.IsMap() ? parent[key] : YAML::Node();
    if (!node.IsDefined() || node.IsNull()) return YAML::Node(YAML::NodeType::Null);
    if (!node.IsMap()) return Error(path, "expected a mapping, got " + KindName(node));
    FLOVER_RETURN_IF_ERROR(CheckKeys(node, path, known));
    return node;
  }

  // The expanded scalar under `key`, or nullopt when the key is absent.
  Result<std::optional<std::string>> Scalar(const YAML::Node& map, const std::string& path, const std::string& key) {
    const std::string key_path = Child(path, key);
    if (!map.IsMap()) return std::optional<std::string>();
    const YAML::Node node = map[key];
    if (!node.IsDefined()) return std::optional<std::string>();
    if (!node.IsScalar()) return Error(key_path, "expected a value, got " + KindName(node));
    Result<std::string> expanded = ExpandEnv(node.Scalar());
    if (!expanded.ok()) return Error(key_path, expanded.status().message());
    return std::optional<std::string>(std::move(expanded).value());
  }

  Status Required(const YAML::Node& map, const std::string& path, const std::string& key) {
    if (map.IsMap() && map[key].IsDefined()) return Status::Ok();
    return Error(Child(path, key), "required key is missing");
  }

  Status ReadString(const YAML::Node& map, const std::string& path, const std::string& key, std::string* out) {
    FLOVER_ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(map, path, key));
    if (text) *out = *text;
    return Status::Ok();
  }

  Status ReadInt(const YAML::Node& map, const std::string& path, const std::string& key, int* out) {
    FLOVER_ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(map, path, key));
    if (!text) return Status::Ok();
    const std::string& s = *text;
    const char* begin = s.data() + (!s.empty() && s[0] == '+' ? 1 : 0);
    long long value = 0;
    const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), value);
    if (ec == std::errc::result_out_of_range ||
        (ec == std::errc() && (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()))) {
      return Error(Child(path, key), "'" + s + "' is out of range");
    }
    if (ec != std::errc() || end != s.data() + s.size()) {
      return Error(Child(path, key), "expected an integer, got '" + s + "'");
    }
    *out = static_cast<int>(value);
    return Status::Ok();
  }

  Status ReadUint64(const YAML::Node& map, const std::string& path, const std::string& key, uint64_t* out) {
    FLOVER_ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(map, path, key));
    if (!text) return Status::Ok();
    const std::string& s = *text;
    unsigned long long value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec == std::errc::result_out_of_range) return Error(Child(path, key), "'" + s + "' is out of range");
    if (ec != std::errc() || end != s.data() + s.size()) {
      return Error(Child(path, key), "expected a non-negative integer, got '" + s + "'");
    }
    *out = value;
    return Status::Ok();
  }

  Status ReadDouble(const YAML::Node& map, const std::string& path, const std::string& key, double* out) {
    FLOVER_ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(map, path, key));
    if (!text) return Status::Ok();
    const std::string& s = *text;
    const char* begin = s.data() + (!s.empty() && s[0] == '+' ? 1 : 0);
    double value = 0;
    const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(value)) {
      return Error(Child(path, key), "expected a number, got '" + s + "'");
    }
    *out = value;
    return Status::Ok();
  }

  Status AtLeast(const std::string& path, long long value, long long min) {
    if (value >= min) return Status::Ok();
    return Error(path, "must be >= " + std::to_string(min) + ", got " + std::to_string(value));
  }

  Status ReadCluster(const YAML::Node& root, ClusterConfig* config) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "cluster", {"name"}));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "cluster", "name", &config->name));
    if (config->name.empty()) return Error("cluster.name", "must not be empty");
    return Status::Ok();
  }

  Status ReadEndpoints(const YAML::Node& root, EndpointsConfig* endpoints) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node,
                            Section(root, "", "endpoints", {"client", "control", "plans", "results"}));
    FLOVER_RETURN_IF_ERROR(Required(node, "endpoints", "control"));
    const std::vector<std::pair<const char*, std::string*>> fields = {{"client", &endpoints->client},
                                                                     {"control", &endpoints->control},
                                                                     {"plans", &endpoints->plans},
                                                                     {"results", &endpoints->results}};
    std::map<std::string, std::string> bound;  // fixed endpoint -> key that binds it
    for (const auto& [key, value] : fields) {
      const std::string path = Child("endpoints", key);
      FLOVER_RETURN_IF_ERROR(ReadString(node, "endpoints", key, value));
      if (!IsValidEndpoint(*value)) {
        return Error(path, "'" + *value +
                               "' is not a ZeroMQ endpoint (expected tcp://host:port, ipc://path or inproc://name; "
                               "port may be *)");
      }
      const bool any_port = value->size() >= 2 && value->compare(value->size() - 2, 2, ":*") == 0;
      if (any_port) continue;
      const auto [it, inserted] = bound.emplace(*value, path);
      if (!inserted) return Error(path, "'" + *value + "' is also " + it->second + "; each endpoint needs its own address");
    }
    return Status::Ok();
  }

  Status ReadModel(const YAML::Node& root, ModelConfig* model) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "model", {"path", "tokenizer", "dummy_seed", "dtype"}));
    FLOVER_RETURN_IF_ERROR(Required(node, "model", "path"));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "path", &model->path));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "tokenizer", &model->tokenizer));
    FLOVER_RETURN_IF_ERROR(ReadUint64(node, "model", "dummy_seed", &model->dummy_seed));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "dtype", &model->dtype));
    if (model->dtype != "auto" && !ParseDType(model->dtype).ok())
      return Error("model.dtype", "'" + model->dtype + "' is not auto, fp32, fp16 or bf16");
    if (model->path.empty()) return Error("model.path", "must not be empty");
    if (model->path == "dummy:") return Error("model.path", "'dummy:' names no preset (e.g. dummy:llama-7b)");
    model->path = ResolvePath(base_dir_, model->path);
    model->tokenizer = ResolvePath(base_dir_, model->tokenizer);
    return Status::Ok();
  }

  Status ReadParallel(const YAML::Node& root, ClusterConfig* config) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "parallel", {"replicas", "tensor", "cpu_transport"}));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "parallel", "replicas", &config->replicas));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "parallel", "tensor", &config->tensor_parallel));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "parallel", "cpu_transport", &config->cpu_transport));
    const auto& transports = CpuTransportNames();
    if (std::find(transports.begin(), transports.end(), config->cpu_transport) == transports.end())
      return Error("parallel.cpu_transport", "'" + config->cpu_transport + "' is not one of " + Join(transports, ", "));
    FLOVER_RETURN_IF_ERROR(AtLeast("parallel.replicas", config->replicas, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("parallel.tensor", config->tensor_parallel, 1));
    return Status::Ok();
  }

  // REQUIRES: replicas and tensor_parallel already read and validated.
  Status ReadWorkers(const YAML::Node& root, ClusterConfig* config) {
    const int replicas = config->replicas;
    const int tensor = config->tensor_parallel;
    const YAML::Node list = root.IsMap() ? root["workers"] : YAML::Node();
    if (!list.IsDefined() || list.IsNull()) {
      config->workers.clear();
      for (int r = 0; r < replicas; ++r) {
        for (int k = 0; k < tensor; ++k) config->workers.push_back(WorkerConfig{.replica = r, .rank = k});
      }
      return Status::Ok();
    }
    if (!list.IsSequence()) return Error("workers", "expected a list, got " + KindName(list));

    std::map<std::pair<int, int>, std::string> seen;  // (replica, rank) -> key path
    std::vector<WorkerConfig> workers;
    for (size_t i = 0; i < list.size(); ++i) {
      const YAML::Node item = list[i];
      const std::string path = Item("workers", i);
      if (!item.IsMap()) return Error(path, "expected a mapping {replica, rank, host, device, threads}, got " + KindName(item));
      FLOVER_RETURN_IF_ERROR(CheckKeys(item, path, {"replica", "rank", "host", "device", "threads"}));
      FLOVER_RETURN_IF_ERROR(Required(item, path, "replica"));
      FLOVER_RETURN_IF_ERROR(Required(item, path, "rank"));
      WorkerConfig worker;
      FLOVER_RETURN_IF_ERROR(ReadInt(item, path, "replica", &worker.replica));
      FLOVER_RETURN_IF_ERROR(ReadInt(item, path, "rank", &worker.rank));
      FLOVER_RETURN_IF_ERROR(ReadString(item, path, "host", &worker.host));
      FLOVER_RETURN_IF_ERROR(ReadString(item, path, "device", &worker.device));
      FLOVER_RETURN_IF_ERROR(ReadInt(item, path, "threads", &worker.threads));
      if (worker.replica < 0 || worker.replica >= replicas) {
        return Error(Child(path, "replica"), std::to_string(worker.replica) + " is out of range [0, " +
                                                 std::to_string(replicas) + ") (parallel.replicas is " +
                                                 std::to_string(replicas) + ")");
      }
      if (worker.rank < 0 || worker.rank >= tensor) {
        return Error(Child(path, "rank"), std::to_string(worker.rank) + " is out of range [0, " +
                                              std::to_string(tensor) + ") (parallel.tensor is " +
                                              std::to_string(tensor) + ")");
      }
      if (worker.host.empty()) return Error(Child(path, "host"), "must not be empty");
      if (!IsValidDevice(worker.device)) {
        return Error(Child(path, "device"), "'" + worker.device + "' is not cpu or cuda:N");
      }
      FLOVER_RETURN_IF_ERROR(AtLeast(Child(path, "threads"), worker.threads, 0));
      const auto [it, inserted] = seen.emplace(std::make_pair(worker.replica, worker.rank), path);
      if (!inserted) {
        return Error(path, "replica " + std::to_string(worker.replica) + " rank " + std::to_string(worker.rank) +
                               " is listed twice (also " + it->second + ")");
      }
      workers.push_back(std::move(worker));
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
    std::sort(workers.begin(), workers.end(), [](const WorkerConfig& a, const WorkerConfig& b) {
      return std::tie(a.replica, a.rank) < std::tie(b.replica, b.rank);
    });
    config->workers = std::move(workers);
    return Status::Ok();
  }

  Status CheckDevices(const ClusterConfig& config) const {
    // The ranks of a replica run collectives together: Gloo between CPU ranks, NCCL
    // between GPUs; they cannot mix. The CPU backend stores fp32 only.
    for (const WorkerConfig& w : config.workers) {
      const WorkerConfig& first = config.workers[static_cast<size_t>(w.replica) * config.tensor_parallel];
      if ((w.device == "cpu") != (first.device == "cpu"))
        return Error("workers", "replica " + std::to_string(w.replica) + " mixes devices " + first.device + " and " +
                                    w.device + "; the ranks of a replica are all cpu or all cuda");
      if (w.device == "cpu" && (config.model.dtype == "fp16" || config.model.dtype == "bf16"))
        return Error("model.dtype", config.model.dtype + " needs CUDA workers; replica " + std::to_string(w.replica) +
                                        " rank " + std::to_string(w.rank) +
                                        " runs on cpu, which computes in fp32 (use dtype auto or fp32)");
    }
    return Status::Ok();
  }

  Status ReadKvCache(const YAML::Node& root, KvCacheSettings* kv) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "kv_cache", {"block_size", "memory_mib"}));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "kv_cache", "block_size", &kv->block_size));
    FLOVER_RETURN_IF_ERROR(ReadDouble(node, "kv_cache", "memory_mib", &kv->memory_mib));
    FLOVER_RETURN_IF_ERROR(AtLeast("kv_cache.block_size", kv->block_size, 1));
    if (!(kv->memory_mib > 0)) {
      std::ostringstream value;
      value << kv->memory_mib;
      return Error("kv_cache.memory_mib", "must be > 0, got " + value.str());
    }
    return Status::Ok();
  }

  Status ReadScheduler(const YAML::Node& root, SchedulerSettings* s) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node,
                            Section(root, "", "scheduler",
                                    {"policy", "max_step_tokens", "max_running", "max_queued", "pipeline_depth",
                                     "batch_window_ms", "max_batch", "failover_wait_ms"}));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "scheduler", "policy", &s->policy));
    const auto& names = SchedulerPolicyNames();
    if (std::find(names.begin(), names.end(), s->policy) == names.end()) {
      return Error("scheduler.policy", "'" + s->policy + "' is not one of " + Join(names, ", "));
    }
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_step_tokens", &s->max_step_tokens));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_running", &s->max_running));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_queued", &s->max_queued));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "pipeline_depth", &s->pipeline_depth));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "batch_window_ms", &s->batch_window_ms));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_batch", &s->max_batch));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "failover_wait_ms", &s->failover_wait_ms));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_step_tokens", s->max_step_tokens, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_running", s->max_running, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_queued", s->max_queued, 1));
    if (s->pipeline_depth < 1 || s->pipeline_depth > kMaxPipelineDepth) {
      return Error("scheduler.pipeline_depth", "must be in 1.." + std::to_string(kMaxPipelineDepth) + ", got " +
                                                   std::to_string(s->pipeline_depth));
    }
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.batch_window_ms", s->batch_window_ms, 0));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.max_batch", s->max_batch, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("scheduler.failover_wait_ms", s->failover_wait_ms, 0));
    return Status::Ok();
  }

  Status ReadHeartbeat(const YAML::Node& root, HeartbeatSettings* h) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "heartbeat", {"interval_ms", "timeout_ms", "step_timeout_ms"}));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "heartbeat", "interval_ms", &h->interval_ms));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "heartbeat", "timeout_ms", &h->timeout_ms));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "heartbeat", "step_timeout_ms", &h->step_timeout_ms));
    FLOVER_RETURN_IF_ERROR(AtLeast("heartbeat.step_timeout_ms", h->step_timeout_ms, 1));
    FLOVER_RETURN_IF_ERROR(AtLeast("heartbeat.interval_ms", h->interval_ms, 1));
    if (h->timeout_ms <= h->interval_ms) {
      return Error("heartbeat.timeout_ms", std::to_string(h->timeout_ms) + " must be greater than heartbeat.interval_ms (" +
                                               std::to_string(h->interval_ms) + ")");
    }
    return Status::Ok();
  }

  const std::string source_;
  const std::string base_dir_;
};

std::string DoubleToString(double value) {
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  FLOVER_CHECK(ec == std::errc()) << "to_chars failed for " << value;
  return std::string(buffer, end);
}

}  // namespace

const WorkerConfig* ClusterConfig::FindWorker(int replica, int rank) const {
  for (const WorkerConfig& worker : workers) {
    if (worker.replica == replica && worker.rank == rank) return &worker;
  }
  return nullptr;
}

const std::vector<std::string>& SchedulerPolicyNames() {
  static const std::vector<std::string> kNames = {"fused", "dynamic", "instances", "sequential"};
  return kNames;
}

const std::vector<std::string>& CpuTransportNames() {
  static const std::vector<std::string> kNames = {"auto", "shm", "tcp"};
  return kNames;
}

Result<ClusterConfig> ParseClusterConfig(const std::string& yaml_text, const std::string& source,
                                         const std::string& base_dir) {
  try {
    YAML::Node root;
    try {
      root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
      if (e.mark.is_null()) return InvalidArgument(source + ": YAML syntax error: " + e.msg);
      return InvalidArgument(source + ": line " + std::to_string(e.mark.line + 1) + ", column " +
                             std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
    }
    return ConfigReader(source, base_dir).Read(root);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return InvalidArgument(source + ": " + e.msg);
    return InvalidArgument(source + ": line " + std::to_string(e.mark.line + 1) + ", column " +
                           std::to_string(e.mark.column + 1) + ": " + e.msg);
  } catch (const std::exception& e) {
    return Internal(source + ": unexpected error while reading the config: " + e.what());
  } catch (...) {
    return Internal(source + ": unexpected error while reading the config");
  }
}

Result<ClusterConfig> LoadClusterConfig(const std::string& path) {
  try {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) return NotFound(path + ": config file not found");
    if (fs::is_directory(status)) return InvalidArgument(path + ": is a directory, not a config file");
    std::ifstream in(path, std::ios::binary);
    if (!in) return IoError(path + ": cannot open config file for reading");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return IoError(path + ": error while reading the config file");
    fs::path dir = fs::path(path).parent_path();
    if (dir.empty()) dir = ".";
    const fs::path absolute_dir = fs::absolute(dir, ec);
    const std::string base_dir = ec ? dir.string() : absolute_dir.lexically_normal().string();
    return ParseClusterConfig(text.str(), path, base_dir);
  } catch (const std::exception& e) {
    return IoError(path + ": cannot read config file: " + e.what());
  } catch (...) {
    return IoError(path + ": cannot read config file");
  }
}

DType WorkerDType(const ModelConfig& model, const std::string& device) {
  if (model.dtype == "auto") return device == "cpu" ? DType::kF32 : DType::kF16;
  Result<DType> dtype = ParseDType(model.dtype);
  return dtype.ok() ? *dtype : DType::kF32;
}

Status ValidateAgainstModel(const ClusterConfig& config, const ModelSpec& spec) {
  if (Status status = spec.Validate(); !status.ok()) {
    return status.WithContext(config.source + ": model '" + config.model.path + "'");
  }
  const int tensor = config.tensor_parallel;
  auto error = [&](const std::string& what, int count) {
    return InvalidArgument(config.source + ": parallel.tensor: " + std::to_string(tensor) + " does not divide " + what +
                           "=" + std::to_string(count));
  };
  if (spec.n_heads % tensor != 0) return error("heads", spec.n_heads);
  if (spec.n_kv_heads % tensor != 0) return error("kv_heads", spec.n_kv_heads);
  return Status::Ok();
}

std::string ToYaml(const ClusterConfig& config) {
  YAML::Emitter out;
  auto str = [](const std::string& s) { return EscapeDollars(s); };
  if (!config.source.empty()) out << YAML::Comment("Derived from " + config.source);
  out << YAML::BeginMap;

  out << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << str(config.name);
  out << YAML::EndMap;

  out << YAML::Key << "endpoints" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "client" << YAML::Value << str(config.endpoints.client);
  out << YAML::Key << "control" << YAML::Value << str(config.endpoints.control);
  out << YAML::Key << "plans" << YAML::Value << str(config.endpoints.plans);
  out << YAML::Key << "results" << YAML::Value << str(config.endpoints.results);
  out << YAML::EndMap;

  out << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "path" << YAML::Value << str(config.model.path);
  if (!config.model.tokenizer.empty()) out << YAML::Key << "tokenizer" << YAML::Value << str(config.model.tokenizer);
  out << YAML::Key << "dummy_seed" << YAML::Value << std::to_string(config.model.dummy_seed);
  out << YAML::Key << "dtype" << YAML::Value << str(config.model.dtype);
  out << YAML::EndMap;

  out << YAML::Key << "parallel" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "replicas" << YAML::Value << config.replicas;
  out << YAML::Key << "tensor" << YAML::Value << config.tensor_parallel;
  out << YAML::Key << "cpu_transport" << YAML::Value << str(config.cpu_transport);
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
  out << YAML::EndMap;

  const SchedulerSettings& s = config.scheduler;
  out << YAML::Key << "scheduler" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "policy" << YAML::Value << str(s.policy);
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

  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace flover
