#include "common/cluster_config_reader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

#include "common/config_env.h"
#include "common/utf8.h"

namespace flover {
namespace {

namespace fs = std::filesystem;

// More workers than this is a typo, not a cluster; the reader does not list them.
constexpr long long kMaxDefaultWorkers = 1 << 16;

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

bool IsValidUtf8(std::string_view text) { return ToValidUtf8(text) == text; }

std::string Child(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string Item(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
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

bool IsDummy(const std::string& path) { return path.rfind("dummy:", 0) == 0; }

std::string ResolvePath(const std::string& base_dir, const std::string& path) {
  if (base_dir.empty() || path.empty() || IsDummy(path) || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

// Reads one YAML document into a ClusterConfig: the keys, their types and the names of
// enum values; ClusterConfig::Validate checks the rest. Every method returns a Status
// whose message is "<source>: <key path>: <what>".
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
    FLOVER_RETURN_IF_ERROR(CheckKeys(root, "",
                                     {"cluster", "endpoints", "model", "parallel", "workers", "kv_cache", "scheduler",
                                      "heartbeat", "limits", "http", "security"}));
    FLOVER_RETURN_IF_ERROR(ReadCluster(root, &config));
    FLOVER_RETURN_IF_ERROR(ReadEndpoints(root, &config.endpoints));
    FLOVER_RETURN_IF_ERROR(ReadModel(root, &config.model));
    FLOVER_RETURN_IF_ERROR(ReadParallel(root, &config));
    FLOVER_RETURN_IF_ERROR(ReadWorkers(root, &config));
    FLOVER_RETURN_IF_ERROR(ReadKvCache(root, &config.kv_cache));
    FLOVER_RETURN_IF_ERROR(ReadScheduler(root, &config.scheduler));
    FLOVER_RETURN_IF_ERROR(ReadHeartbeat(root, &config.heartbeat));
    FLOVER_RETURN_IF_ERROR(ReadLimits(root, &config.limits));
    FLOVER_RETURN_IF_ERROR(ReadHttp(root, &config.http));
    FLOVER_RETURN_IF_ERROR(ReadSecurity(root, &config.security));
    // Validate names workers[i] as the file lists them; sort only afterwards.
    FLOVER_RETURN_IF_ERROR(config.Validate());
    std::sort(config.workers.begin(), config.workers.end(), [](const WorkerConfig& a, const WorkerConfig& b) {
      return std::tie(a.replica, a.rank) < std::tie(b.replica, b.rank);
    });
    return config;
  }

 private:
  Status Error(const std::string& path, const std::string& what) const {
    return InvalidArgument(source_ + ": " + (path.empty() ? what : path + ": " + what));
  }

  // `map` (a mapping or null) has only `known` keys, each once.
  Status CheckKeys(const YAML::Node& map, const std::string& path, std::initializer_list<const char*> known) {
    return CheckKeys(map, path, std::span<const char* const>(known.begin(), known.size()));
  }
  Status CheckKeys(const YAML::Node& map, const std::string& path, std::span<const char* const> known) {
    if (map.IsNull()) return Status::Ok();
    std::set<std::string> seen;
    for (const auto& entry : map) {
      if (!entry.first.IsScalar()) return Error(path, "keys must be plain names, got " + KindName(entry.first));
      const std::string key = entry.first.Scalar();
      const bool is_known = std::any_of(known.begin(), known.end(), [&](const char* k) { return key == k; });
      if (!is_known) {
        return Error(Child(path, key),
                     "unknown key (expected one of " + Join(std::vector<std::string>(known.begin(), known.end())) + ")");
      }
      if (!seen.insert(key).second) return Error(Child(path, key), "duplicate key");
    }
    return Status::Ok();
  }

  // The mapping under `key` of `parent`, checked against `known`; null when absent.
  Result<YAML::Node> Section(const YAML::Node& parent, const std::string& parent_path, const std::string& key,
                             std::initializer_list<const char*> known) {
    return Section(parent, parent_path, key, std::span<const char* const>(known.begin(), known.size()));
  }
  Result<YAML::Node> Section(const YAML::Node& parent, const std::string& parent_path, const std::string& key,
                             std::span<const char* const> known) {
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
    FLOVER_ASSIGN_OR_RETURN(std::string text, Expanded(node, key_path));
    return std::optional<std::string>(std::move(text));
  }

  // The text of the scalar `node` (at `key_path`), ${VAR}-expanded.
  Result<std::string> Expanded(const YAML::Node& node, const std::string& key_path) {
    // YAML is Unicode text, and every string of the config goes out in protobuf string
    // fields (to the workers, in the status), which must be UTF-8.
    if (!IsValidUtf8(node.Scalar())) return Error(key_path, "the value is not valid UTF-8 text");
    Result<std::string> expanded = ExpandEnv(node.Scalar());
    if (!expanded.ok()) return Error(key_path, expanded.status().message());
    if (!IsValidUtf8(*expanded)) return Error(key_path, "the value is not valid UTF-8 text after ${VAR} expansion");
    return std::move(expanded).value();
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

  // An enum value by its name: `from_name` maps a name to the value, or to nullopt;
  // `names` lists the valid ones for the message ("one of a, b, c").
  template <typename T, typename FromName>
  Status ReadEnum(const YAML::Node& map, const std::string& path, const std::string& key, FromName from_name,
                  const std::string& names, T* out) {
    FLOVER_ASSIGN_OR_RETURN(std::optional<std::string> text, Scalar(map, path, key));
    if (!text) return Status::Ok();
    std::optional<T> value = from_name(*text);
    if (!value) return Error(Child(path, key), "'" + *text + "' is not " + names);
    *out = *value;
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

  Status ReadCluster(const YAML::Node& root, ClusterConfig* config) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "cluster", {"name"}));
    return ReadString(node, "cluster", "name", &config->name);
  }

  Status ReadEndpoints(const YAML::Node& root, EndpointsConfig* endpoints) {
    // A file written for protocol version 2 names a results socket, which is gone.
    if (const YAML::Node section = root.IsMap() ? root["endpoints"] : YAML::Node();
        section.IsDefined() && section.IsMap() && section["results"].IsDefined())
      return Error("endpoints.results",
                   "step results now travel on the control connection (endpoints.control); there is no results "
                   "socket any more: delete this key");
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "endpoints", {"client", "control", "plans", "http"}));
    FLOVER_RETURN_IF_ERROR(Required(node, "endpoints", "control"));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "endpoints", "client", &endpoints->client));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "endpoints", "control", &endpoints->control));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "endpoints", "plans", &endpoints->plans));
    return ReadString(node, "endpoints", "http", &endpoints->http);
  }

  Status ReadModel(const YAML::Node& root, ModelConfig* model) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "model", {"path", "tokenizer", "dummy_seed", "dtype", "name", "chat_template"}));
    FLOVER_RETURN_IF_ERROR(Required(node, "model", "path"));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "path", &model->path));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "tokenizer", &model->tokenizer));
    FLOVER_RETURN_IF_ERROR(ReadUint64(node, "model", "dummy_seed", &model->dummy_seed));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "name", &model->name));
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "chat_template", &model->chat_template));
    std::string dtype = ModelDTypeName(model->dtype);
    FLOVER_RETURN_IF_ERROR(ReadString(node, "model", "dtype", &dtype));
    Result<std::optional<WeightDType>> parsed = ParseModelDType(dtype);
    if (!parsed.ok()) return Error("model.dtype", parsed.status().message());
    model->dtype = *parsed;
    model->path = ResolvePath(base_dir_, model->path);
    model->tokenizer = ResolvePath(base_dir_, model->tokenizer);
    return Status::Ok();
  }

  Status ReadParallel(const YAML::Node& root, ClusterConfig* config) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "parallel", {"replicas", "tensor", "cpu_transport"}));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "parallel", "replicas", &config->replicas));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "parallel", "tensor", &config->tensor_parallel));
    return ReadEnum(node, "parallel", "cpu_transport", CpuTransportFromName, "one of " + Join(CpuTransportNames()),
                    &config->cpu_transport);
  }

  // The list as the file gives it (Validate checks it), or every (replica, rank) on
  // loopback when absent.
  Status ReadWorkers(const YAML::Node& root, ClusterConfig* config) {
    const YAML::Node list = root.IsMap() ? root["workers"] : YAML::Node();
    config->workers.clear();
    if (!list.IsDefined() || list.IsNull()) {
      const long long n_workers = static_cast<long long>(config->replicas) * config->tensor_parallel;
      if (config->replicas >= 1 && config->tensor_parallel >= 1 && n_workers > kMaxDefaultWorkers) {
        return Error("parallel", std::to_string(config->replicas) + " replicas x " +
                                     std::to_string(config->tensor_parallel) + " ranks is more than " +
                                     std::to_string(kMaxDefaultWorkers) + " workers");
      }
      for (int r = 0; r < config->replicas; ++r) {
        for (int k = 0; k < config->tensor_parallel; ++k)
          config->workers.push_back(WorkerConfig{.replica = r, .rank = k});
      }
      return Status::Ok();
    }
    if (!list.IsSequence()) return Error("workers", "expected a list, got " + KindName(list));
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
      config->workers.push_back(std::move(worker));
    }
    return Status::Ok();
  }

  Status ReadKvCache(const YAML::Node& root, KvCacheSettings* kv) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "kv_cache", {"block_size", "memory_mib", "dtype"}));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "kv_cache", "block_size", &kv->block_size));
    FLOVER_RETURN_IF_ERROR(ReadDouble(node, "kv_cache", "memory_mib", &kv->memory_mib));
    auto from_name = [](const std::string& name) -> std::optional<std::optional<DType>> {
      Result<DType> parsed = ParseDType(name);
      if (!parsed.ok()) return std::nullopt;
      return std::optional<DType>(*parsed);
    };
    return ReadEnum(node, "kv_cache", "dtype", from_name, "fp32, fp16 or bf16", &kv->dtype);
  }

  Status ReadScheduler(const YAML::Node& root, SchedulerSettings* s) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node,
                            Section(root, "", "scheduler",
                                    {"policy", "max_step_tokens", "max_running", "max_queued", "pipeline_depth",
                                     "batch_window_ms", "max_batch", "failover_wait_ms"}));
    FLOVER_RETURN_IF_ERROR(ReadEnum(node, "scheduler", "policy", SchedulerPolicyFromName,
                                    "one of " + Join(SchedulerPolicyNames()), &s->policy));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_step_tokens", &s->max_step_tokens));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_running", &s->max_running));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_queued", &s->max_queued));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "pipeline_depth", &s->pipeline_depth));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "batch_window_ms", &s->batch_window_ms));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "scheduler", "max_batch", &s->max_batch));
    return ReadInt(node, "scheduler", "failover_wait_ms", &s->failover_wait_ms);
  }

  Status ReadHeartbeat(const YAML::Node& root, HeartbeatSettings* h) {
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "heartbeat", {"interval_ms", "timeout_ms", "step_timeout_ms"}));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "heartbeat", "interval_ms", &h->interval_ms));
    FLOVER_RETURN_IF_ERROR(ReadInt(node, "heartbeat", "timeout_ms", &h->timeout_ms));
    return ReadInt(node, "heartbeat", "step_timeout_ms", &h->step_timeout_ms);
  }

  Status ReadLimits(const YAML::Node& root, LimitsSettings* l) {
    std::vector<const char*> keys;
    for (const LimitField& field : kLimitFields) keys.push_back(field.key);
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "limits", keys));
    for (const LimitField& field : kLimitFields) FLOVER_RETURN_IF_ERROR(ReadInt(node, "limits", field.key, &(l->*field.value)));
    return Status::Ok();
  }

  // api_keys: a list of strings (each ${VAR}-expanded: keys come from the environment,
  // e.g. a systemd EnvironmentFile); the integers as in kHttpFields.
  Status ReadHttp(const YAML::Node& root, HttpSettings* h) {
    std::vector<const char*> keys = {"api_keys"};
    for (const HttpField& field : kHttpFields) keys.push_back(field.key);
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "http", keys));
    for (const HttpField& field : kHttpFields) FLOVER_RETURN_IF_ERROR(ReadInt(node, "http", field.key, &(h->*field.value)));
    const YAML::Node list = node.IsMap() ? node["api_keys"] : YAML::Node();
    if (!list.IsDefined() || list.IsNull()) return Status::Ok();
    if (!list.IsSequence()) return Error("http.api_keys", "expected a list of keys, got " + KindName(list));
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string path = Item("http.api_keys", i);
      if (!list[i].IsScalar()) return Error(path, "expected a key, got " + KindName(list[i]));
      FLOVER_ASSIGN_OR_RETURN(std::string key, Expanded(list[i], path));
      h->api_keys.push_back(std::move(key));
    }
    return Status::Ok();
  }

  // Absent (or empty): SecurityMode::kNone. Present: `mode` is required; the key paths
  // are resolved like model.path.
  Status ReadSecurity(const YAML::Node& root, SecuritySettings* sec) {
    std::vector<const char*> keys = {"mode"};
    for (const SecurityPathField& field : kSecurityPathFields) keys.push_back(field.key);
    FLOVER_ASSIGN_OR_RETURN(YAML::Node node, Section(root, "", "security", keys));
    if (node.IsNull()) return Status::Ok();
    FLOVER_RETURN_IF_ERROR(Required(node, "security", "mode"));
    FLOVER_RETURN_IF_ERROR(ReadEnum(node, "security", "mode", SecurityModeFromName, "curve or insecure", &sec->mode));
    for (const SecurityPathField& field : kSecurityPathFields) {
      std::string& path = sec->*field.value;
      FLOVER_RETURN_IF_ERROR(ReadString(node, "security", field.key, &path));
      path = ResolvePath(base_dir_, path);
    }
    return Status::Ok();
  }

  const std::string source_;
  const std::string base_dir_;
};

}  // namespace

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

}  // namespace flover
