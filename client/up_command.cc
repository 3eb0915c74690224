#include "client/up_command.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "client/child_process.h"
#include "client/client.h"
#include "client/interrupt_flag.h"
#include "client/local_cluster.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

void Log(const std::string& message) {
  std::fprintf(stderr, "flover up: %s\n", message.c_str());
  std::fflush(stderr);
}

int Fail(const std::string& message) {
  Log(message);
  return 1;
}

// After the first signal: asks the coordinator to drain and waits until it has exited
// (its requests in flight finished or the drain ran out, and it told the workers to shut
// down). A second signal ends the wait: the caller then stops everything at once.
// Returns 0 when the coordinator exited 0 or a second signal came, else 1.
int Drain(LocalCluster& cluster, const InterruptFlag& stop, double drain_timeout_s) {
  const std::optional<int> n = cluster.RequestsInFlight(1000ms);
  char line[160];
  std::snprintf(line, sizeof(line), "draining: %s requests in flight, up to %g s (a second signal stops at once)",
                n ? std::to_string(*n).c_str() : "(unknown)", drain_timeout_s);
  Log(line);
  cluster.BeginDrain();
  // The drain, then the coordinator's shutdown (its Shutdown messages linger briefly).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(drain_timeout_s) + 30s;
  while (stop.count() < 2) {
    if (std::optional<std::string> exit = cluster.CoordinatorExit()) {
      Log(*exit);
      return exit->find("(exit 0)") != std::string::npos ? 0 : 1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      Log("the coordinator did not stop within 30 s of the drain's end");
      return 1;
    }
    std::this_thread::sleep_for(50ms);
  }
  Log("second signal: stopping at once");
  return 0;
}

}  // namespace

int UpCommand(const UpOptions& o) {
  const InterruptFlag stop({SIGINT, SIGTERM, SIGHUP});

  LocalClusterOptions options;
  options.bin_dir = o.bin_dir;
  options.ready_timeout_s = o.ready_timeout_s;
  options.restart_failed_workers = !o.no_restart;
  options.progress = Log;
  options.interrupted = stop.predicate();
  options.drain_timeout_s = o.drain_timeout_s;
  Result<std::unique_ptr<LocalCluster>> started = LocalCluster::Start(o.config, options);
  if (!started.ok()) return Fail(started.status().ToString());
  LocalCluster& cluster = **started;
  std::fprintf(stderr, "flover up: cluster '%s' ready: client endpoint %s%s%s (Ctrl-C to stop)\n",
               cluster.config().name.c_str(), cluster.client_endpoint().c_str(),
               cluster.http_endpoint().empty() ? "" : ", HTTP ", cluster.http_endpoint().c_str());
  std::fflush(stderr);

  std::optional<ChildProcess> exec_child;
  if (!o.exec.empty()) {
    setenv("FLOVER_ENDPOINT", cluster.client_endpoint().c_str(), 1);
    if (!cluster.http_endpoint().empty()) setenv("FLOVER_HTTP_ENDPOINT", cluster.http_endpoint().c_str(), 1);
    if (const ChildProcess* coordinator = cluster.coordinator())
      setenv("FLOVER_COORDINATOR_PID", std::to_string(coordinator->pid()).c_str(), 1);
    const SecuritySettings& security = cluster.config().security;
    if (security.mode == SecurityMode::kCurve) {  // flover generate/status/bench read them
      setenv("FLOVER_KEY", security.client_key.c_str(), 1);
      setenv("FLOVER_SERVER_KEY", security.coordinator_public_key.c_str(), 1);
    }
    Result<ChildProcess> child = ChildProcess::Spawn({"/bin/sh", "-c", o.exec}, "exec");
    if (!child.ok()) return Fail(child.status().ToString());
    exec_child.emplace(std::move(child).value());
  }

  // Reloads of the cluster file (`flover reload`, SIGHUP to the coordinator): the workers
  // of added replicas are started here once the coordinator took the new file.
  Result<std::unique_ptr<Client>> watcher = Client::Connect(cluster.client_endpoint(), cluster.client_keys());
  auto next_follow = std::chrono::steady_clock::now();
  int exit_code = 0;
  while (!stop.raised()) {
    if (std::optional<std::string> exit = cluster.CoordinatorExit()) {
      std::fprintf(stderr, "flover up: %s\n", exit->c_str());
      exit_code = 1;
      break;
    }
    for (const std::string& event : cluster.SuperviseWorkers()) Log(event);
    if (watcher.ok() && std::chrono::steady_clock::now() >= next_follow) {
      next_follow = std::chrono::steady_clock::now() + 1s;
      Result<std::vector<std::string>> events = cluster.FollowReloads(**watcher);
      if (!events.ok()) {
        Log("following a reload: " + events.status().ToString());
      } else {
        for (const std::string& event : *events) Log(event);
      }
    }
    if (exec_child) {
      if (auto exit = exec_child->PollExit()) {
        exit_code = exit->rfind("exit ", 0) == 0 ? std::atoi(exit->c_str() + 5) : 1;
        break;
      }
    }
    std::this_thread::sleep_for(50ms);
  }
  if (stop.raised() && o.drain_timeout_s > 0 && !cluster.CoordinatorExit()) {
    // The command (a client, perhaps, whose requests are draining) runs until the end.
    exit_code = Drain(cluster, stop, o.drain_timeout_s);
  }
  std::fprintf(stderr, "flover up: stopping\n");
  if (exec_child) exec_child->Stop(2000ms);
  cluster.Stop();
  std::fprintf(stderr, "flover up: stopped\n");
  return exit_code;
}

}  // namespace flover
