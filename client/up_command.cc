#include "client/up_command.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "client/child_process.h"
#include "client/client.h"
#include "common/cluster_config.h"

namespace flover {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

volatile std::sig_atomic_t g_stop = 0;
void OnStop(int) { g_stop = 1; }

// The daemon `name`: in bin_dir, beside this executable, or in the build tree layout.
std::string FindBinary(const std::string& bin_dir, const std::string& name, const std::string& subdir) {
  std::vector<fs::path> candidates;
  if (!bin_dir.empty()) candidates.push_back(fs::path(bin_dir) / name);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec).parent_path();
  candidates.push_back(self / name);
  candidates.push_back(self.parent_path() / subdir / name);
  for (const fs::path& p : candidates)
    if (access(p.c_str(), X_OK) == 0) return p.string();
  return "";
}

bool IsLocalHost(const std::string& host) {
  if (host == "127.0.0.1" || host == "localhost" || host == "::1" || host.empty()) return true;
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return host == name;
}

bool AllReady(const proto::ClusterStatus& s, int* n_ready, int* n_workers) {
  *n_ready = *n_workers = 0;
  bool all = s.replicas_size() > 0;
  for (const auto& r : s.replicas()) {
    all = all && r.state() == "ready";
    for (const auto& w : r.workers()) {
      ++*n_workers;
      if (w.state() == "ready") ++*n_ready;
    }
  }
  return all;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "flover up: %s\n", message.c_str());
  return 1;
}

}  // namespace

int UpCommand(const UpOptions& o) {
  Result<ClusterConfig> config = LoadClusterConfig(o.config);
  if (!config.ok()) return Fail(config.status().ToString());
  const std::string coordinator_bin = FindBinary(o.bin_dir, "flover-coordinator", "coordinator");
  const std::string worker_bin = FindBinary(o.bin_dir, "flover-worker", "worker");
  if (coordinator_bin.empty() || worker_bin.empty())
    return Fail("cannot find flover-coordinator and flover-worker beside flover (use --bin-dir)");

  std::signal(SIGINT, OnStop);
  std::signal(SIGTERM, OnStop);
  std::signal(SIGHUP, OnStop);

  char dir_template[] = "/tmp/flover-up-XXXXXX";
  if (!mkdtemp(dir_template)) return Fail("cannot create a temporary folder");
  const fs::path run_dir(dir_template);
  const fs::path endpoints_file = run_dir / "endpoints.json";
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{run_dir};

  Result<ChildProcess> coordinator = ChildProcess::Spawn(
      {coordinator_bin, "--config", o.config, "--endpoints-file", endpoints_file.string()}, "flover-coordinator");
  if (!coordinator.ok()) return Fail(coordinator.status().ToString());

  // The coordinator writes its bound endpoints (ports of "*" resolved) once listening.
  nlohmann::json endpoints;
  for (auto deadline = std::chrono::steady_clock::now() + 30s;; std::this_thread::sleep_for(20ms)) {
    if (auto exit = coordinator->PollExit()) return Fail("flover-coordinator stopped at start-up (" + *exit + ")");
    if (g_stop) return Fail("interrupted");
    if (std::chrono::steady_clock::now() > deadline) return Fail("flover-coordinator did not start listening in 30 s");
    std::ifstream in(endpoints_file);
    if (in) {
      endpoints = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (endpoints.is_object() && endpoints.contains("control") && endpoints.contains("client")) break;
    }
  }
  const std::string control = endpoints["control"], client_endpoint = endpoints["client"];

  std::vector<ChildProcess> workers;
  for (const WorkerConfig& w : config->workers) {
    const std::string name = "flover-worker " + std::to_string(w.replica) + "/" + std::to_string(w.rank);
    if (!IsLocalHost(w.host)) {
      std::fprintf(stderr, "flover up: %s runs on %s: start it there with flover-worker --coordinator %s --replica %d --rank %d\n",
                   name.c_str(), w.host.c_str(), control.c_str(), w.replica, w.rank);
      continue;
    }
    std::vector<std::string> argv = {worker_bin, "--coordinator", control, "--replica", std::to_string(w.replica),
                                     "--rank", std::to_string(w.rank)};
    if (w.threads > 0) argv.insert(argv.end(), {"--threads", std::to_string(w.threads)});
    Result<ChildProcess> child = ChildProcess::Spawn(argv, name);
    if (!child.ok()) return Fail(child.status().ToString());
    workers.push_back(std::move(child).value());
  }

  // Wait until every replica is ready, reporting progress.
  Result<std::unique_ptr<Client>> client = Client::Connect(client_endpoint);
  if (!client.ok()) return Fail(client.status().ToString());
  int last_ready = -1;
  const auto ready_deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.ready_timeout_s);
  for (;;) {
    if (g_stop) return Fail("interrupted while starting");
    if (auto exit = coordinator->PollExit()) return Fail("flover-coordinator stopped (" + *exit + ")");
    for (ChildProcess& w : workers)
      if (auto exit = w.PollExit()) return Fail(w.name() + " stopped while starting (" + *exit + ")");
    if (std::chrono::steady_clock::now() > ready_deadline)
      return Fail("the cluster was not ready after " + std::to_string(static_cast<int>(o.ready_timeout_s)) + " s");
    Result<proto::ClusterStatus> status = (*client)->FetchStatus(1000ms);
    if (!status.ok()) continue;
    int n_ready = 0, n_workers = 0;
    const bool ready = AllReady(*status, &n_ready, &n_workers);
    if (n_ready != last_ready) {
      std::fprintf(stderr, "flover up: %d/%d workers ready\n", n_ready, n_workers);
      last_ready = n_ready;
    }
    if (ready) break;
    std::this_thread::sleep_for(100ms);
  }
  std::fprintf(stderr, "flover up: cluster '%s' ready: client endpoint %s (Ctrl-C to stop)\n", config->name.c_str(),
               client_endpoint.c_str());
  std::fflush(stderr);

  std::optional<ChildProcess> exec_child;
  if (!o.exec.empty()) {
    setenv("FLOVER_ENDPOINT", client_endpoint.c_str(), 1);
    Result<ChildProcess> child = ChildProcess::Spawn({"/bin/sh", "-c", o.exec}, "exec");
    if (!child.ok()) return Fail(child.status().ToString());
    exec_child.emplace(std::move(child).value());
  }

  int exit_code = 0;
  while (!g_stop) {
    if (auto exit = coordinator->PollExit()) {
      std::fprintf(stderr, "flover up: flover-coordinator stopped (%s)\n", exit->c_str());
      exit_code = 1;
      break;
    }
    for (ChildProcess& w : workers)
      if (w.running() && w.PollExit())
        std::fprintf(stderr, "flover up: %s stopped (%s)\n", w.name().c_str(), w.PollExit()->c_str());
    if (exec_child) {
      if (auto exit = exec_child->PollExit()) {
        exit_code = exit->rfind("exit ", 0) == 0 ? std::atoi(exit->c_str() + 5) : 1;
        break;
      }
    }
    std::this_thread::sleep_for(50ms);
  }
  std::fprintf(stderr, "flover up: stopping\n");
  if (exec_child) exec_child->Stop(2000ms);
  coordinator->Stop(5000ms);  // sends Shutdown to the workers
  for (ChildProcess& w : workers) w.Stop(5000ms);
  std::fprintf(stderr, "flover up: stopped\n");
  return exit_code;
}

}  // namespace flover
