// flover-worker: one tensor-parallel rank of one replica. Parses flags and runs a
// WorkerDaemon (worker_daemon.h). Raises its open-file limit (file_limit.h). Exits 0 on
// SIGTERM/SIGINT (while starting, too), and with the codes of worker_daemon.h
// otherwise.
//
//   flover-worker --coordinator tcp://127.0.0.1:5556 --replica 0 --rank 1
//   flover-worker --config configs/local.yaml --replica 0 --rank 1   (control endpoint from the file)
//
// --host: the address the collectives listen on and the coordinator shows; by default
// the --config file's workers[].host for this worker when it is not loopback, else this
// host's address on its route to the coordinator (local_address.h).
//
// CURVE (docs/security.md): --key FILE (this worker's key pair, NAME.key) and
// --coordinator-public-key FILE (the coordinator's NAME.pub), or, with --config and
// `security.mode: curve`, security.worker_key and security.coordinator_public_key.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>

#include "common/cluster_config_reader.h"
#include "common/curve_socket.h"
#include "common/file_limit.h"
#include "common/local_address.h"
#include "common/protobuf_log.h"
#include "common/version.h"
#include "worker/worker_daemon.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flover-worker: one tensor-parallel shard of a Flover replica"};
  app.set_version_flag("--version", flover::VersionLine("flover-worker"));
  flover::WorkerOptions options;
  std::string config_path;
  auto* coord = app.add_option("--coordinator", options.coordinator, "Coordinator control endpoint");
  app.add_option("--config", config_path, "Cluster YAML (for the control endpoint)")->excludes(coord);
  app.add_option("--replica", options.replica, "Replica index")->required()->check(CLI::NonNegativeNumber);
  app.add_option("--rank", options.rank, "Tensor-parallel rank")->required()->check(CLI::NonNegativeNumber);
  app.add_option("--threads", options.threads, "Compute threads (default: config, else all cores)");
  std::string host_flag;
  app.add_option("--host", host_flag,
                 "Address the collectives listen on and the coordinator shows (default: the cluster file's "
                 "workers[].host for this worker when not loopback, else this host's address on its route to the "
                 "coordinator)");
  std::string key_file, server_key_file;
  auto* key = app.add_option("--key", key_file, "This worker's CURVE key pair (flover keygen's NAME.key)");
  auto* server_key = app.add_option("--coordinator-public-key", server_key_file,
                                    "The coordinator's CURVE public key (NAME.pub), which this worker pins");
  key->needs(server_key);
  server_key->needs(key);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? flover::kExitOk : flover::kExitStartup;  // a bad flag: 2
  }

  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  flover::RouteProtobufLogs();  // a peer's bad bytes: rate-limited lines, not one per message
  std::string file_host;  // workers[].host of this worker in the --config file
  if (!config_path.empty()) {
    flover::Result<flover::ClusterConfig> config = flover::LoadClusterConfig(config_path);
    if (!config.ok()) {
      spdlog::error("{}", config.status().ToString());
      return flover::kExitStartup;
    }
    for (const flover::WorkerConfig& w : config->workers)
      if (w.replica == options.replica && w.rank == options.rank) file_host = w.host;
    options.coordinator = config->endpoints.control;
    options.max_message_bytes = config->limits.max_worker_message_bytes;
    if (config->security.mode == flover::SecurityMode::kCurve && key_file.empty()) {
      if (config->security.worker_key.empty()) {
        spdlog::error("{}: security.mode is curve but security.worker_key is not set: set it, or give this worker "
                      "--key FILE --coordinator-public-key FILE",
                      config_path);
        return flover::kExitStartup;
      }
      key_file = config->security.worker_key;
      server_key_file = config->security.coordinator_public_key;
    }
    for (const char* wildcard : {"tcp://*:", "tcp://0.0.0.0:", "tcp://[::]:"}) {
      if (options.coordinator.rfind(wildcard, 0) == 0) {
        spdlog::error("{}: endpoints.control {} binds every interface, which a worker cannot connect to: name the "
                      "coordinator's host there, or give this worker --coordinator tcp://HOST:PORT",
                      config_path, options.coordinator);
        return flover::kExitStartup;
      }
    }
  }
  if (options.coordinator.empty() || options.coordinator.find(":*") != std::string::npos) {
    spdlog::error("flover-worker needs the coordinator's control endpoint: --coordinator tcp://HOST:PORT");
    return flover::kExitStartup;
  }
  options.host = flover::ConfiguredWorkerHost(host_flag, file_host).value_or("");  // "": picked at start
  if (!key_file.empty()) {
    flover::Result<flover::CurveClientKeys> keys = flover::LoadCurveClientKeys(key_file, server_key_file);
    if (!keys.ok()) {
      spdlog::error("worker {}/{}: {}", options.replica, options.rank, keys.status().ToString());
      return flover::kExitStartup;
    }
    options.curve = std::move(keys).value();
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  flover::RaiseFileLimitAndLog("worker " + std::to_string(options.replica) + "/" + std::to_string(options.rank));

  flover::Result<std::unique_ptr<flover::WorkerDaemon>> worker = flover::WorkerDaemon::Start(options, &g_stop);
  if (!worker.ok()) {
    if (g_stop) {  // SIGTERM/SIGINT while starting: a requested stop, not a failure
      spdlog::info("worker {}/{}: stopping on signal while starting", options.replica, options.rank);
      return flover::kExitOk;
    }
    spdlog::error("worker {}/{}: {}", options.replica, options.rank, worker.status().ToString());
    return flover::kExitStartup;
  }
  return (*worker)->Run(g_stop);
}
