// ClusterConfig: the whole cluster as plain, typed structs with defaults. One YAML file
// (configs/*.yaml, read by cluster_config_reader.h) describes it, so every process
// agrees on endpoints, the model, the parallel layout and the scheduler settings; the
// coordinator sends the config it runs to its workers in protobuf
// (cluster_config_proto.h), never as text to parse again; the security section stays
// behind (no key material or key path goes over the wire).
//
//   cluster:   {name}
//   endpoints: {client, control, plans, http}  ZeroMQ endpoints the coordinator binds, and
//                                             its HTTP (OpenAI API) listener
//   model:     {path, tokenizer, dummy_seed, dtype, name, chat_template}
//   parallel:  {replicas, tensor, cpu_transport}
//   workers:   [{replica, rank, host, device, threads}, ...]   (optional in YAML)
//   kv_cache:  {block_size, memory_mib, dtype}
//   scheduler: {policy, max_step_tokens, max_running, max_queued, pipeline_depth,
//               batch_window_ms, max_batch, failover_wait_ms}
//   heartbeat: {interval_ms, timeout_ms, step_timeout_ms}
//   limits:    {max_client_message_bytes, max_worker_message_bytes, max_request_id_bytes,
//               max_prompt_bytes, max_prompt_tokens, max_stop_ids, max_stop_strings,
//               max_stop_string_bytes, max_requests_per_client,
//               max_undelivered_per_client, status_per_client_per_second,
//               max_client_connections}
//   http:      {api_keys, max_connections, max_body_bytes, header_timeout_ms,
//               idle_timeout_ms, write_timeout_ms, request_timeout_ms, max_n}  (docs/http.md)
//   security:  {mode, coordinator_key, coordinator_public_key, worker_key, client_key,
//               worker_keys, client_keys, admin_keys}        (optional; docs/security.md)
//
// Validity: every ClusterConfig a process acts on has passed Validate(), the one place
// that states what a valid config is. The reader calls it, FromProto calls it, and so
// must anything that builds a config in code. Model-dependent checks (head counts
// divisible by the tensor-parallel degree) need the ModelSpec, which only the weights
// know: ValidateAgainstModel, once it is loaded.
//
// Thread-safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/cpu_transport.h"
#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/scheduler_policy.h"
#include "common/status.h"

namespace flover {

// ZeroMQ endpoints the coordinator binds: tcp://host:port (port 1..65535, or "*" for any
// free port), ipc://path or inproc://name. The fixed ones are pairwise distinct.
struct EndpointsConfig {
  std::string client = "tcp://127.0.0.1:*";   // ROUTER: generate, status, bench
  std::string control;                        // ROUTER: register, rendezvous, heartbeat, step results (required)
  std::string plans = "tcp://127.0.0.1:*";    // PUB: step plans
  // The HTTP server (OpenAI API, /health, /metrics): http://host:port, port 0 = any free
  // port; "" = none. Bound by the coordinator itself (docs/http.md).
  std::string http;

  bool operator==(const EndpointsConfig&) const = default;
};

// One worker process: tensor-parallel rank `rank` of replica `replica`.
struct WorkerConfig {
  int replica = 0;             // 0 .. replicas - 1
  int rank = 0;                // 0 .. tensor_parallel - 1
  std::string host = "127.0.0.1";  // not empty
  std::string device = "cpu";  // "cpu" or "cuda:N"; the ranks of a replica are all cpu or all cuda
  int threads = 0;             // CPU threads, >= 0; 0 = let the worker choose

  bool operator==(const WorkerConfig&) const = default;
};

struct ModelConfig {
  std::string path;       // weights file/folder (absolute after loading) or "dummy:<preset>"; not empty
  std::string tokenizer;  // empty = none (token ids only)
  uint64_t dummy_seed = 0;
  // The precision of the weights. nullopt is "auto": CPU workers keep each weight matrix
  // in its file's format where they compute it natively (fp32, fp16, bf16, Q8_0, Q4_0,
  // Q4_K; other GGUF types become Q8_0), CUDA workers store fp16. CPU workers take every
  // WeightDType (worker/model/weight_policy.h) and compute in fp32 from it; CUDA workers
  // store fp32, fp16 or bf16 (weights and KV cache), the block formats q8_0, q4_0 and
  // q4_k are a config error for them.
  std::optional<WeightDType> dtype;
  // The model id the HTTP API serves (/v1/models, the requests' "model"); "" = derived
  // from path (ServedModelName).
  std::string name;
  // The chat template of /v1/chat/completions: a family name (chatml, llama3, ...) or a
  // Jinja text; "" = the model file's own, if any (docs/openai-api.md).
  std::string chat_template;

  bool operator==(const ModelConfig&) const = default;
};

struct KvCacheSettings {
  int block_size = 16;      // tokens per block, >= 1
  double memory_mib = 256;  // KV memory per worker, finite and > 0
  // The element type of K and V. nullopt (unset): fp32 on CPU workers, the weights'
  // type on CUDA workers (CudaWorkerDType). CPU workers store fp32, fp16 or bf16 (a
  // 16-bit cache holds twice the tokens of memory_mib); CUDA workers only their
  // weights' type.
  std::optional<DType> dtype;

  bool operator==(const KvCacheSettings&) const = default;
};

inline constexpr int kMaxPipelineDepth = 8;

struct SchedulerSettings {
  SchedulerPolicy policy = SchedulerPolicy::kFused;
  int max_step_tokens = 512;     // token budget of one step (decode + prefill chunks), >= 1
  int max_running = 64;          // requests in the running batch, >= 1
  int max_queued = 1024;         // requests waiting for admission, >= 1
  int pipeline_depth = 2;        // plans in flight ahead of results, 1..kMaxPipelineDepth (1 = lock-step)
  int batch_window_ms = 10;      // policy dynamic: how long a batch collects, >= 0; 0 = no wait
  int max_batch = 32;            // policy dynamic: requests per batch, >= 1
  // How long the requests of a failed replica wait for a ready replica when no other is
  // ready (its workers restarted by flover up, systemd or Kubernetes bring it back);
  // requests submitted while every replica is down wait until this long after the last
  // failure. 0: they fail at once. >= 0.
  int failover_wait_ms = 30000;

  bool operator==(const SchedulerSettings&) const = default;
};

struct HeartbeatSettings {
  int interval_ms = 500;  // >= 1
  int timeout_ms = 5000;  // a worker silent this long is dead; > interval_ms
  // A step whose result is this late marks the replica unhealthy although its workers
  // still heartbeat (a hung collective, a wedged device). Long enough for the slowest
  // legitimate step: a full-context prefill chunk, or a `instances` step under load. >= 1.
  int step_timeout_ms = 60000;

  bool operator==(const HeartbeatSettings&) const = default;
};

// What one peer may cost the coordinator and the workers: every size and queue that a
// peer's messages can grow is bounded here (docs/limits.md). Each >= 1.
struct LimitsSettings {
  int max_client_message_bytes = 4 << 20;    // a ClientMessage; larger ones drop the connection
  int max_worker_message_bytes = 256 << 20;  // plans and results carry whole batches
  int max_request_id_bytes = 256;            // SubmitRequest.client_request_id
  int max_prompt_bytes = 1 << 20;            // a text prompt
  int max_prompt_tokens = 1 << 17;           // a prompt of token ids
  int max_stop_ids = 64;                     // stop token ids of one request
  int max_stop_strings = 16;                 // stop strings of one request
  int max_stop_string_bytes = 256;           // each stop string
  int max_requests_per_client = 256;         // queued or running, per client connection
  // Replies waiting for a client that does not read them; one more and the client's
  // requests are cancelled (its memory released).
  int max_undelivered_per_client = 10000;
  int status_per_client_per_second = 10;     // status requests answered per connection
  int max_client_connections = 1024;         // more are refused; workers keep their own way in

  bool operator==(const LimitsSettings&) const = default;
};

// Each limit under its YAML key (and protobuf field name), in file order: the one list
// that the reader, the writer, Validate and the wire form go through.
struct LimitField {
  const char* key;
  int LimitsSettings::*value;
};
inline constexpr LimitField kLimitFields[] = {
    {"max_client_message_bytes", &LimitsSettings::max_client_message_bytes},
    {"max_worker_message_bytes", &LimitsSettings::max_worker_message_bytes},
    {"max_request_id_bytes", &LimitsSettings::max_request_id_bytes},
    {"max_prompt_bytes", &LimitsSettings::max_prompt_bytes},
    {"max_prompt_tokens", &LimitsSettings::max_prompt_tokens},
    {"max_stop_ids", &LimitsSettings::max_stop_ids},
    {"max_stop_strings", &LimitsSettings::max_stop_strings},
    {"max_stop_string_bytes", &LimitsSettings::max_stop_string_bytes},
    {"max_requests_per_client", &LimitsSettings::max_requests_per_client},
    {"max_undelivered_per_client", &LimitsSettings::max_undelivered_per_client},
    {"status_per_client_per_second", &LimitsSettings::status_per_client_per_second},
    {"max_client_connections", &LimitsSettings::max_client_connections},
};

// The HTTP server of the coordinator (docs/http.md): who may call it and what one
// connection may cost.
struct HttpSettings {
  // Bearer keys (Authorization: Bearer <key>); empty = no key needed, and then
  // endpoints.http must be on loopback. Each not empty. Never on the wire.
  std::vector<std::string> api_keys;
  int max_connections = 1024;        // open HTTP connections; more are closed at once; >= 1
  int max_body_bytes = 1 << 20;      // a request body; larger ones get 413; >= 1
  int header_timeout_ms = 10000;     // a request (head and body) must arrive within this; >= 1
  int idle_timeout_ms = 60000;       // a keep-alive connection idle this long is closed; >= 1
  int write_timeout_ms = 30000;      // a response write stalled this long closes the connection; >= 1
  int request_timeout_ms = 600000;   // SubmitRequest.timeout_ms of each request; 0 = none; >= 0
  int max_n = 16;                    // choices one request may ask for (n); >= 1

  bool operator==(const HttpSettings&) const = default;
};

// Each integer of HttpSettings under its YAML key (and protobuf field name), in file
// order, with its smallest valid value.
struct HttpField {
  const char* key;
  int HttpSettings::*value;
  int min;
};
inline constexpr HttpField kHttpFields[] = {
    {"max_connections", &HttpSettings::max_connections, 1},
    {"max_body_bytes", &HttpSettings::max_body_bytes, 1},
    {"header_timeout_ms", &HttpSettings::header_timeout_ms, 1},
    {"idle_timeout_ms", &HttpSettings::idle_timeout_ms, 1},
    {"write_timeout_ms", &HttpSettings::write_timeout_ms, 1},
    {"request_timeout_ms", &HttpSettings::request_timeout_ms, 0},
    {"max_n", &HttpSettings::max_n, 1},
};

// security.mode. Without a security section every endpoint must be on loopback.
enum class SecurityMode {
  kNone,      // no security section: plain text, loopback only (every local peer is an admin)
  kInsecure,  // `mode: insecure`: plain text on any address, logged as a warning; nobody is an admin
  kCurve,     // `mode: curve`: CurveZMQ and ZAP on the client, control and plans sockets
};

// "curve" / "insecure" (the YAML spellings; kNone has none: it is the absent section).
const char* SecurityModeName(SecurityMode mode);
std::optional<SecurityMode> SecurityModeFromName(const std::string& name);

// Who may connect, and with which keys (docs/security.md). Paths are files made by
// `flover keygen` (NAME.key: key pair, NAME.pub: public key); the reader resolves
// relative ones against the config file's folder. Each process reads only the files it
// needs: the coordinator its key pair and the admitted keys, a worker the worker key pair
// and the coordinator's public key, `flover up` / `flover bench --config` the client key
// pair and the coordinator's public key.
struct SecuritySettings {
  SecurityMode mode = SecurityMode::kNone;
  std::string coordinator_key;         // the coordinator's key pair          (curve: required)
  std::string coordinator_public_key;  // its public key, pinned by peers     (curve: required)
  std::string worker_key;              // key pair of workers started from this file (flover up, --config)
  std::string client_key;              // key pair of flover up's / flover bench --config's own client
  std::string worker_keys;             // admitted as workers: a folder of *.pub or one file (curve: required)
  std::string client_keys;             // admitted as clients                 (curve: this or admin_keys)
  std::string admin_keys;              // admitted as clients with admin rights (status shows pids, hosts)

  bool operator==(const SecuritySettings&) const = default;
};

// Each path of SecuritySettings under its YAML key, in file order.
struct SecurityPathField {
  const char* key;
  std::string SecuritySettings::*value;
};
inline constexpr SecurityPathField kSecurityPathFields[] = {
    {"coordinator_key", &SecuritySettings::coordinator_key},
    {"coordinator_public_key", &SecuritySettings::coordinator_public_key},
    {"worker_key", &SecuritySettings::worker_key},
    {"client_key", &SecuritySettings::client_key},
    {"worker_keys", &SecuritySettings::worker_keys},
    {"client_keys", &SecuritySettings::client_keys},
    {"admin_keys", &SecuritySettings::admin_keys},
};

struct ClusterConfig {
  std::string source;  // where it came from, for messages ("configs/local.yaml"); may be empty
  std::string name = "flover";  // not empty
  EndpointsConfig endpoints;
  ModelConfig model;
  int replicas = 1;         // >= 1
  int tensor_parallel = 1;  // >= 1
  CpuTransport cpu_transport = CpuTransport::kAuto;  // parallel.cpu_transport
  // Exactly one entry per (replica, rank): replicas * tensor_parallel entries. The
  // reader sorts them by (replica, rank).
  std::vector<WorkerConfig> workers;
  KvCacheSettings kv_cache;
  SchedulerSettings scheduler;
  HeartbeatSettings heartbeat;
  LimitsSettings limits;
  HttpSettings http;          // api_keys never on the wire
  SecuritySettings security;  // never on the wire

  // nullptr when no worker has this (replica, rank).
  const WorkerConfig* FindWorker(int replica, int rank) const;

  // OK, or InvalidArgument naming the source and the key path of the first rule broken,
  // as the YAML file spells it: "configs/x.yaml: scheduler.pipeline_depth: must be in
  // 1..8, got 0", "x.yaml: workers[4]: replica 0 rank 1 is listed twice (also
  // workers[1])". Checks every rule stated in the comments above, in file order.
  [[nodiscard]] Status Validate() const;

  // Field-by-field, `source` included.
  bool operator==(const ClusterConfig&) const = default;
};

// InvalidArgument "<source>: <key path>: <what>" (without "<source>: " when source is
// empty): the form of every config error.
Status ConfigError(const std::string& source, const std::string& key_path, const std::string& what);

// "auto", "fp32", "fp16", "bf16", "q8_0", "q4_0" or "q4_k": the spelling of model.dtype.
const char* ModelDTypeName(const std::optional<WeightDType>& dtype);
// The inverse: nullopt for "auto"; InvalidArgument "'<name>' is not auto, fp32, ..." for
// anything else (callers prefix the field or flag).
Result<std::optional<WeightDType>> ParseModelDType(std::string_view name);

// The start-up rule of the coordinator, as far as the config alone tells: without a
// security section, an endpoint that binds a non-loopback address (tcp://*, 0.0.0.0, a
// LAN IP) is InvalidArgument "<source>: endpoints.client: 'tcp://*:5555' binds a
// non-loopback address and the config has no security section: add a security section
// (docs/security.md) or bind 127.0.0.1". A name (libzmq binds interface names, not DNS
// names) needs resolving: the coordinator checks the address it bound (IsLoopbackEndpoint).
// endpoints.http off loopback needs http.api_keys, whatever the security section (CURVE
// does not cover HTTP): "endpoints.http: 'http://0.0.0.0:8000' binds a non-loopback
// address and http.api_keys is empty: ...".
[[nodiscard]] Status CheckEndpointExposure(const ClusterConfig& config);

// True for an endpoint that only this machine can reach: tcp:// (or http://) on
// 127.0.0.0/8, ::1 or localhost; ipc:// and inproc://. False for any other tcp:// host.
bool IsLoopbackEndpoint(const std::string& endpoint);

// The HTTP endpoint "http://host:port" split: host without IPv6 brackets, port 0..65535
// (0: any free port). nullopt when it is not of that form.
struct HttpAddress {
  std::string host;
  int port = 0;
};
std::optional<HttpAddress> ParseHttpEndpoint(const std::string& endpoint);

// The model id the HTTP API serves: model.name, else the file name of model.path without
// its extension ("stories260K"), "dummy-<preset>" for dummy:<preset>.
std::string ServedModelName(const ModelConfig& model);

// Checks that need the model: query heads and kv heads divisible by tensor_parallel.
// "configs/x.yaml: parallel.tensor: 3 does not divide heads=8".
[[nodiscard]] Status ValidateAgainstModel(const ClusterConfig& config, const ModelSpec& spec);

// The storage type a CUDA worker uses for model.dtype: fp16 for auto. REQUIRES:
// model.dtype is auto, fp32, fp16 or bf16 (what Validate allows a CUDA worker).
DType CudaWorkerDType(const ModelConfig& model);

}  // namespace flover
