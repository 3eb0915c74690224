// ClusterConfig: the whole cluster described by one YAML file (configs/*.yaml), as
// plain structs with defaults. The coordinator, the workers and `flover up` all read
// the same file, so every process agrees on endpoints, the model, the parallel layout
// and the scheduler settings.
//
//   cluster:   {name}
//   endpoints: {client, control, plans, results}      ZeroMQ endpoints the coordinator binds
//   model:     {path, tokenizer, dummy_seed, dtype}
//   parallel:  {replicas, tensor}
//   workers:   [{replica, rank, host, device, threads}, ...]   (optional)
//   kv_cache:  {block_size, memory_mib}
//   scheduler: {policy, max_step_tokens, max_running, max_queued, pipeline_depth,
//               batch_window_ms, max_batch, failover_wait_ms}
//   heartbeat: {interval_ms, timeout_ms, step_timeout_ms}
//
// Loading rules (see configs/local.yaml for a commented example):
//  * Every error is a Status whose message names the file and the key path:
//    "configs/x.yaml: scheduler.policy: 'fast' is not one of fused, dynamic, ...".
//    Unknown and duplicate keys are errors. A missing file is NotFound, everything else
//    InvalidArgument. No exception escapes this module.
//  * Every scalar value gets environment expansion before it is interpreted:
//    ${VAR} (error when VAR is unset), ${VAR:-default} (default when VAR is unset or
//    empty), and $$ for a literal '$'. Any other '$' is kept as is.
//  * A relative model.path / model.tokenizer (after expansion; "dummy:<preset>" is not
//    a file) is resolved against the directory of the config file.
//  * `workers` is optional; when absent every (replica, rank) runs on 127.0.0.1 with
//    device cpu. When given it must list every (replica, rank) exactly once.
//
// Model-dependent checks (head counts divisible by the tensor-parallel degree) need the
// ModelSpec, which only the weights know: call ValidateAgainstModel once it is loaded.
//
// Thread-safety: value types and pure functions (they read the environment).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"

namespace flover {

// ZeroMQ endpoints the coordinator binds: tcp://host:port (port may be "*" for any free
// port), ipc://path or inproc://name.
struct EndpointsConfig {
  std::string client = "tcp://127.0.0.1:*";   // ROUTER: generate, status, bench
  std::string control;                        // ROUTER: register, rendezvous, heartbeat (required)
  std::string plans = "tcp://127.0.0.1:*";    // PUB: step plans
  std::string results = "tcp://127.0.0.1:*";  // PULL: step results

  bool operator==(const EndpointsConfig&) const = default;
};

// One worker process: tensor-parallel rank `rank` of replica `replica`.
struct WorkerConfig {
  int replica = 0;
  int rank = 0;
  std::string host = "127.0.0.1";
  std::string device = "cpu";  // "cpu" or "cuda:N"
  int threads = 0;             // CPU threads; 0 = let the worker choose

  bool operator==(const WorkerConfig&) const = default;
};

struct ModelConfig {
  std::string path;       // weights file/folder (absolute after loading) or "dummy:<preset>"
  std::string tokenizer;  // empty = none (token ids only)
  uint64_t dummy_seed = 0;
  // Storage type of weights and KV cache: "auto" (fp32 on CPU workers, fp16 on CUDA
  // workers), "fp32", "fp16" or "bf16" (CUDA only; the CPU backend is fp32).
  std::string dtype = "auto";

  bool operator==(const ModelConfig&) const = default;
};

struct KvCacheSettings {
  int block_size = 16;      // tokens per block
  double memory_mib = 256;  // KV memory per worker

  bool operator==(const KvCacheSettings&) const = default;
};

struct SchedulerSettings {
  std::string policy = "fused";  // fused | dynamic | instances | sequential
  int max_step_tokens = 512;     // token budget of one step (decode + prefill chunks)
  int max_running = 64;          // requests in the running batch
  int max_queued = 1024;         // requests waiting for admission
  int pipeline_depth = 2;        // plans in flight ahead of results, 1..8 (1 = lock-step)
  int batch_window_ms = 10;      // policy dynamic: how long a batch collects; 0 = no wait
  int max_batch = 32;            // policy dynamic: requests per batch
  // How long the requests of a failed replica wait for a ready replica when no other is
  // ready (its workers restarted by flover up, systemd or Kubernetes bring it back);
  // requests submitted while every replica is down wait until this long after the last
  // failure. 0: they fail at once.
  int failover_wait_ms = 30000;

  bool operator==(const SchedulerSettings&) const = default;
};

struct HeartbeatSettings {
  int interval_ms = 500;
  int timeout_ms = 5000;  // a worker silent this long is dead; > interval_ms
  // A step whose result is this late marks the replica unhealthy although its workers
  // still heartbeat (a hung collective, a wedged device). Long enough for the slowest
  // legitimate step: a full-context prefill chunk, or a `instances` step under load.
  int step_timeout_ms = 60000;

  bool operator==(const HeartbeatSettings&) const = default;
};

struct ClusterConfig {
  std::string source;  // file name, for messages ("configs/local.yaml")
  std::string name = "flover";
  EndpointsConfig endpoints;
  ModelConfig model;
  int replicas = 1;
  int tensor_parallel = 1;
  // parallel.cpu_transport: how the ranks of a CPU replica run their collectives: "shm"
  // (shared memory, ranks on one host), "tcp" (Gloo, anywhere) or "auto" (shm when all
  // ranks can share a segment, else tcp). CUDA replicas always use NCCL.
  std::string cpu_transport = "auto";
  // Always filled by the loader: replicas * tensor_parallel entries, sorted by
  // (replica, rank).
  std::vector<WorkerConfig> workers;
  KvCacheSettings kv_cache;
  SchedulerSettings scheduler;
  HeartbeatSettings heartbeat;

  // nullptr when no worker has this (replica, rank).
  const WorkerConfig* FindWorker(int replica, int rank) const;

  // Field-by-field, `source` included.
  bool operator==(const ClusterConfig&) const = default;
};

// The scheduler policy names, in the order error messages list them.
const std::vector<std::string>& SchedulerPolicyNames();

// The values of parallel.cpu_transport: auto, shm, tcp.
const std::vector<std::string>& CpuTransportNames();

// Reads, parses and validates `path`. `source` is `path` as given; relative model
// paths are resolved against the (absolute) directory of `path`.
Result<ClusterConfig> LoadClusterConfig(const std::string& path);

// Parses and validates YAML text. `source` prefixes every error message; relative model
// paths are resolved against `base_dir` (left relative when base_dir is empty).
Result<ClusterConfig> ParseClusterConfig(const std::string& yaml_text, const std::string& source,
                                         const std::string& base_dir);

// Checks that need the model: query heads and kv heads divisible by tensor_parallel.
// "configs/x.yaml: parallel.tensor: 3 does not divide heads=8".
Status ValidateAgainstModel(const ClusterConfig& config, const ModelSpec& spec);

// The storage type a worker on `device` ("cpu" or "cuda:N") uses for model.dtype.
// REQUIRES: the config was loaded (so the combination is valid).
DType WorkerDType(const ModelConfig& model, const std::string& device);

// Writes `config` as YAML that ParseClusterConfig reads back into an equal config
// (every field written explicitly, workers included; '$' escaped as "$$").
std::string ToYaml(const ClusterConfig& config);

}  // namespace flover
