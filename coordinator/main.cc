// flover-coordinator: admission, scheduling and the client API of one cluster.
//
//   flover-coordinator --config FILE [--endpoints-file PATH] [--drain-timeout S] [--log-level info]
//
// SIGINT/SIGTERM: new requests are refused while those in flight finish, for up to
// --drain-timeout seconds (10 by default); a second signal stops at once. The open-file
// limit is raised at start-up (file_limit.h).
// SIGHUP: reads the admitted keys (security.worker_keys, client_keys, admin_keys) again,
// for key rotation without a restart (docs/security.md); a bad key file keeps the old ones.
// It also reads the cluster file again and applies what may change live (replicas added
// or removed, scheduler settings; docs/deploy.md), as `flover reload` does; a change
// that cannot apply live is refused and logged, and nothing changes.
// Exit status: 0 after SIGINT/SIGTERM (workers told to shut down), 2 for a bad flag,
// config or key file, or a non-loopback endpoint without a security section (message on
// stderr), 1 when an endpoint cannot be bound or the endpoints file cannot be written.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/cluster_config_reader.h"
#include "common/file_limit.h"
#include "common/protobuf_log.h"
#include "common/version.h"
#include "coordinator/coordinator.h"
#include "coordinator/endpoints_file.h"

namespace {

// Set before the handlers are installed; lock-free, so reading it is async-signal-safe.
std::atomic<flover::Coordinator*> g_coordinator{nullptr};
static_assert(std::atomic<flover::Coordinator*>::is_always_lock_free);

extern "C" void OnSignal(int) {
  if (flover::Coordinator* c = g_coordinator.load()) c->Stop();
}

extern "C" void OnReload(int) {
  if (flover::Coordinator* c = g_coordinator.load()) c->ReloadKeys();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flover-coordinator: admits requests, schedules token steps and streams results"};
  std::string config_path;
  std::string endpoints_file;
  std::string log_level = "info";
  double drain_timeout_s = 10;
  app.set_version_flag("--version", flover::VersionLine("flover-coordinator"));
  app.add_option("--config", config_path, "cluster YAML file (configs/*.yaml)")->required();
  app.add_option("--endpoints-file", endpoints_file,
                 "write the bound endpoints (ports resolved) here as JSON once listening");
  app.add_option("--drain-timeout", drain_timeout_s,
                 "on SIGINT/SIGTERM, seconds to let the requests in flight finish (new ones are refused); a "
                 "second signal stops at once")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  // SIGHUP reloads keys; one that comes while starting (before there is a coordinator,
  // whose start reads the keys anyway) must not stop the process.
  struct sigaction reload = {};
  reload.sa_handler = OnReload;
  sigemptyset(&reload.sa_mask);
  sigaction(SIGHUP, &reload, nullptr);

  auto logger = spdlog::stderr_color_mt("flover-coordinator");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  flover::RouteProtobufLogs();  // a peer's bad bytes: rate-limited lines, not one per message

  flover::Result<flover::ClusterConfig> config = flover::LoadClusterConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "flover-coordinator: %s\n", config.status().ToString().c_str());
    return 2;
  }
  const flover::ClusterConfig as_read = *config;  // what a reload compares the file with
  const std::optional<flover::FileLimit> files = flover::RaiseFileLimitAndLog(
      "flover-coordinator", flover::CoordinatorFilesNeeded(*config),
      "limits.max_client_connections (" + std::to_string(config->limits.max_client_connections) + "), " +
          (config->endpoints.http.empty() ? std::string()
                                          : "http.max_connections (" + std::to_string(config->http.max_connections) +
                                                "), ") +
          std::to_string(config->replicas * config->tensor_parallel) + " worker(s)");
  // Clients beyond what the descriptors allow are refused, so the workers keep theirs.
  if (const int fit = files ? flover::ClientConnectionsThatFit(*config, files->soft) : 0;
      files && fit < config->limits.max_client_connections) {
    spdlog::warn("flover-coordinator: limits.max_client_connections lowered from {} to {} to fit the open-file "
                 "limit {}: the workers' connections and a reserve keep their descriptors",
                 config->limits.max_client_connections, fit, files->soft);
    config->limits.max_client_connections = fit;
  }
  flover::Result<std::unique_ptr<flover::Coordinator>> coordinator =
      flover::Coordinator::Create(std::move(config).value(),
                                  std::chrono::duration_cast<flover::Clock::duration>(
                                      std::chrono::duration<double>(drain_timeout_s)));
  if (!coordinator.ok()) {
    std::fprintf(stderr, "flover-coordinator: %s\n", coordinator.status().ToString().c_str());
    return coordinator.status().code() == flover::StatusCode::kUnavailable ? 1 : 2;
  }
  (*coordinator)->SetConfigFile(config_path, as_read);
  // Handlers first: whoever reads the endpoints file may signal us right away.
  g_coordinator = coordinator->get();
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  if (!endpoints_file.empty()) {
    if (flover::Status s = flover::WriteEndpointsFile(endpoints_file, (*coordinator)->endpoints()); !s.ok()) {
      std::fprintf(stderr, "flover-coordinator: %s\n", s.ToString().c_str());
      g_coordinator = nullptr;
      return 1;
    }
  }

  (*coordinator)->Run();
  g_coordinator = nullptr;
  return 0;
}
