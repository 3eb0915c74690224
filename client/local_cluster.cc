#include "client/local_cluster.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "client/client.h"
#include "common/cluster_config_reader.h"
#include "common/local_address.h"

namespace flover {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

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

// Workers ready and workers known, for progress messages.
void CountReadyWorkers(const proto::ClusterStatus& s, int* n_ready, int* n_workers) {
  *n_ready = *n_workers = 0;
  for (const auto& r : s.replicas()) {
    for (const auto& w : r.workers()) {
      ++*n_workers;
      if (w.state() == "ready") ++*n_ready;
    }
  }
}

// The last `n` non-empty lines of a file, joined with "\n  ".
std::string TailOf(const std::string& path, size_t n) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    lines.push_back(line);
    if (lines.size() > n) lines.pop_front();
  }
  std::string out;
  for (const std::string& l : lines) out += "\n  " + l;
  return out;
}

// What the coordinator says of its unhealthy replicas ("; replica 0 is unhealthy: ..."), so
// that the reason a worker gave up reaches the user even when its log went elsewhere.
std::string ReplicaErrors(Client& client) {
  Result<proto::ClusterStatus> status = client.FetchStatus(1000ms);
  if (!status.ok()) return "";
  std::string errors;
  for (const auto& r : status->replicas())
    if (!r.error().empty()) errors += "; " + r.error();
  return errors;
}

}  // namespace

std::string RemoteWorkerCommand(const std::string& control_endpoint, const WorkerConfig& w,
                                const std::optional<std::string>& host, bool curve) {
  std::string command = "flover-worker --coordinator " + control_endpoint + " --replica " +
                        std::to_string(w.replica) + " --rank " + std::to_string(w.rank);
  if (host) command += " --host " + *host;
  if (curve) command += " --key WORKER.key --coordinator-public-key COORDINATOR.pub";
  if (IsLoopbackEndpoint(control_endpoint))
    command += " (but the control endpoint " + control_endpoint +
               " is on loopback, which other hosts cannot reach: set endpoints.control to this host's address, "
               "with a security section, docs/security.md)";
  return command;
}

bool IsLocalHost(const std::string& host) {
  if (host == "127.0.0.1" || host == "localhost" || host == "::1" || host.empty()) return true;
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return host == name;
}

Result<std::unique_ptr<LocalCluster>> LocalCluster::Start(const std::string& config_path,
                                                          const LocalClusterOptions& options) {
  std::unique_ptr<LocalCluster> cluster(new LocalCluster());
  Status s = cluster->StartDaemons(config_path, options);
  if (!s.ok()) return s;  // the destructor stops what did start
  return cluster;
}

LocalCluster::~LocalCluster() { Stop(); }

std::string LocalCluster::LogFile(const std::string& name) const {
  if (!capture_logs_) return "";
  std::string file = name;
  for (char& c : file)
    if (c == ' ' || c == '/') c = '-';
  return (fs::path(run_dir_) / (file + ".log")).string();
}

std::string LocalCluster::Describe(ChildProcess& child, const std::string& what, const std::string& exit) const {
  std::string message = child.name() + " " + what + " (" + exit + ")";
  if (capture_logs_) message += ":" + TailOf(LogFile(child.name()), 5);
  return message;
}

Status LocalCluster::StartDaemons(const std::string& config_path, const LocalClusterOptions& o) {
  FLOVER_ASSIGN_OR_RETURN(config_, LoadClusterConfig(config_path));
  // A secured cluster: the keys of its workers and of this process's own client.
  std::vector<std::string> worker_key_flags;
  const SecuritySettings& security = config_.security;
  if (security.mode == SecurityMode::kCurve) {
    for (const auto& [key, path] :
         {std::pair{"worker_key", &security.worker_key}, {"client_key", &security.client_key}}) {
      if (path->empty())
        return InvalidArgument(config_path + ": security." + key +
                               " is not set: a cluster with security mode curve "
                               "started here needs it (docs/security.md)");
    }
    Result<CurveClientKeys> keys = LoadCurveClientKeys(security.client_key, security.coordinator_public_key);
    if (!keys.ok()) return keys.status().WithContext(config_path + ": security.client_key");
    client_keys_ = std::move(keys).value();
    worker_key_flags = {"--key", security.worker_key, "--coordinator-public-key", security.coordinator_public_key};
  }
  const std::string coordinator_bin =
      o.coordinator_bin.empty() ? FindBinary(o.bin_dir, "flover-coordinator", "coordinator") : o.coordinator_bin;
  const std::string worker_bin = o.worker_bin.empty() ? FindBinary(o.bin_dir, "flover-worker", "worker") : o.worker_bin;
  if (coordinator_bin.empty() || worker_bin.empty())
    return NotFound("cannot find flover-coordinator and flover-worker beside flover (use --bin-dir)");
  auto progress = [&](const std::string& line) {
    if (o.progress) o.progress(line);
  };
  auto interrupted = [&] { return o.interrupted && o.interrupted(); };

  char dir_template[] = "/tmp/flover-cluster-XXXXXX";
  if (!mkdtemp(dir_template)) return IoError("cannot create a temporary folder in /tmp");
  run_dir_ = dir_template;
  capture_logs_ = o.capture_logs;
  restart_failed_workers_ = o.restart_failed_workers;
  const std::string endpoints_file = (fs::path(run_dir_) / "endpoints.json").string();

  FLOVER_ASSIGN_OR_RETURN(ChildProcess coordinator,
                          ChildProcess::Spawn({coordinator_bin, "--config", config_path, "--endpoints-file",
                                               endpoints_file, "--drain-timeout", std::to_string(o.drain_timeout_s)},
                                              "flover-coordinator", LogFile("flover-coordinator"),
                                              /*own_process_group=*/true));
  coordinator_.emplace(std::move(coordinator));

  // The coordinator writes its bound endpoints (ports of "*" resolved) once listening.
  nlohmann::json endpoints;
  for (auto deadline = std::chrono::steady_clock::now() + 30s;; std::this_thread::sleep_for(20ms)) {
    if (auto exit = coordinator_->PollExit())
      return Unavailable(Describe(*coordinator_, "stopped at start-up", *exit));
    if (interrupted()) return Cancelled("interrupted while starting");
    if (std::chrono::steady_clock::now() > deadline)
      return Unavailable("flover-coordinator did not start listening in 30 s");
    std::ifstream in(endpoints_file);
    if (in) {
      endpoints = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (endpoints.is_object() && endpoints.contains("control") && endpoints.contains("client")) break;
    }
  }
  control_endpoint_ = endpoints["control"];
  client_endpoint_ = endpoints["client"];
  plans_endpoint_ = endpoints.value("plans", "");
  http_endpoint_ = endpoints.value("http", "");

  config_path_ = config_path;
  worker_bin_ = worker_bin;
  worker_key_flags_ = worker_key_flags;
  for (const WorkerConfig& w : config_.workers) {
    std::optional<std::string> elsewhere;
    FLOVER_RETURN_IF_ERROR(StartWorker(w, &elsewhere));
    if (elsewhere) progress(*elsewhere);
  }

  // Wait until every replica is ready, reporting progress.
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(client_endpoint_, client_keys_));
  int last_ready = -1;
  const auto ready_deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.ready_timeout_s);
  for (;;) {
    if (interrupted()) return Cancelled("interrupted while starting");
    if (auto exit = coordinator_->PollExit()) return Unavailable(Describe(*coordinator_, "stopped", *exit));
    for (Worker& w : workers_)
      if (auto exit = w.process.PollExit())
        return Unavailable(Describe(w.process, "stopped while starting", *exit) + ReplicaErrors(*client));
    if (std::chrono::steady_clock::now() > ready_deadline)
      return Unavailable("the cluster was not ready after " + std::to_string(static_cast<int>(o.ready_timeout_s)) +
                         " s");
    Result<proto::ClusterStatus> status = client->FetchStatus(1000ms);
    if (!status.ok() && IsHandshakeRefusal(status.status())) return status.status();
    if (!status.ok()) continue;
    int n_ready = 0, n_workers = 0;
    CountReadyWorkers(*status, &n_ready, &n_workers);
    const bool ready = AllReplicasReady(*status);
    if (n_ready != last_ready) {
      progress(std::to_string(n_ready) + "/" + std::to_string(n_workers) + " workers ready");
      last_ready = n_ready;
    }
    if (ready) return Status::Ok();
    std::this_thread::sleep_for(100ms);
  }
}

Status LocalCluster::StartWorker(const WorkerConfig& w, std::optional<std::string>* elsewhere) {
  const std::string name = "flover-worker " + std::to_string(w.replica) + "/" + std::to_string(w.rank);
  // The file's host for the worker's collectives when it names one (not loopback);
  // else the worker takes its address on the route to the coordinator.
  const std::optional<std::string> host = ConfiguredWorkerHost("", w.host);
  if (!IsLocalHost(w.host)) {
    *elsewhere = name + " runs on " + w.host + ": start it there with " +
                 RemoteWorkerCommand(control_endpoint_, w, host, !worker_key_flags_.empty());
    return Status::Ok();
  }
  std::vector<std::string> argv = {worker_bin_, "--coordinator", control_endpoint_, "--replica",
                                   std::to_string(w.replica), "--rank", std::to_string(w.rank)};
  if (host) argv.insert(argv.end(), {"--host", *host});
  if (w.threads > 0) argv.insert(argv.end(), {"--threads", std::to_string(w.threads)});
  argv.insert(argv.end(), worker_key_flags_.begin(), worker_key_flags_.end());
  FLOVER_ASSIGN_OR_RETURN(ChildProcess child,
                          ChildProcess::Spawn(argv, name, LogFile(name), /*own_process_group=*/true));
  std::erase_if(workers_, [&](const Worker& old) { return old.replica == w.replica && old.rank == w.rank; });
  workers_.push_back(Worker{.replica = w.replica, .rank = w.rank, .argv = std::move(argv), .process = std::move(child)});
  return Status::Ok();
}

Result<std::vector<std::string>> LocalCluster::FollowConfig() {
  FLOVER_ASSIGN_OR_RETURN(ClusterConfig next, LoadClusterConfig(config_path_));
  std::vector<std::string> events;
  for (const WorkerConfig& w : next.workers) {
    if (w.replica < config_.replicas) continue;  // not added (or added before: running or restarting)
    const auto it = std::find_if(workers_.begin(), workers_.end(),
                                 [&](const Worker& old) { return old.replica == w.replica && old.rank == w.rank; });
    // A worker of a replica removed earlier has exited 0 (told to); one still running is
    // of a retiring replica that the reload keeps.
    if (it != workers_.end() && !it->process.PollExit()) continue;
    std::optional<std::string> elsewhere;
    FLOVER_RETURN_IF_ERROR(StartWorker(w, &elsewhere));
    events.push_back(elsewhere ? *elsewhere
                               : "flover-worker " + std::to_string(w.replica) + "/" + std::to_string(w.rank) +
                                     " started for replica " + std::to_string(w.replica) + ", added by a reload");
  }
  config_ = std::move(next);
  return events;
}

Result<proto::ReloadReply> LocalCluster::Reload(std::chrono::milliseconds timeout) {
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(client_endpoint_, client_keys_));
  FLOVER_ASSIGN_OR_RETURN(proto::ReloadReply reply, client->Reload(timeout));
  generation_seen_ = reply.config_generation();
  FLOVER_ASSIGN_OR_RETURN(std::vector<std::string> events, FollowConfig());
  for (const std::string& e : events) reply.set_summary(reply.summary() + "; " + e);
  return reply;
}

Result<std::vector<std::string>> LocalCluster::FollowReloads(Client& client) {
  FLOVER_ASSIGN_OR_RETURN(proto::ClusterStatus status, client.FetchStatus(5000ms));
  if (status.config_generation() <= generation_seen_) return std::vector<std::string>();
  generation_seen_ = status.config_generation();
  FLOVER_ASSIGN_OR_RETURN(std::vector<std::string> events, FollowConfig());
  events.insert(events.begin(), "the coordinator took config generation " + std::to_string(generation_seen_));
  return events;
}

std::optional<std::string> LocalCluster::CoordinatorExit() {
  if (!coordinator_) return std::nullopt;
  std::optional<std::string> exit = coordinator_->PollExit();
  if (!exit) return std::nullopt;
  return Describe(*coordinator_, "stopped", *exit);
}

std::vector<std::string> LocalCluster::SuperviseWorkers() {
  std::vector<std::string> events;
  const Clock::time_point now = Clock::now();
  for (Worker& w : workers_) {
    if (!w.reported) {
      std::optional<std::string> exit = w.process.PollExit();
      if (!exit) continue;
      events.push_back(Describe(w.process, "stopped", *exit));
      w.reported = true;
      if (!restart_failed_workers_ || *exit == "exit 0") continue;
      std::erase_if(w.restarts, [&](Clock::time_point t) { return now - t > kRestartWindow; });
      if (w.restarts.size() >= kMaxRestarts) {
        events.push_back(w.process.name() + " not restarting: it stopped " + std::to_string(kMaxRestarts + 1) +
                         " times within " + std::to_string(kRestartWindow.count()) + " min");
        continue;
      }
      const auto delay = std::chrono::seconds(std::min(30, 1 << w.restarts.size()));
      w.restart_at = now + delay;
      events.push_back(w.process.name() + " restarting in " + std::to_string(delay.count()) + " s");
    } else if (w.restart_at && now >= *w.restart_at) {
      w.restart_at.reset();
      const std::string name = w.process.name();
      Result<ChildProcess> child = ChildProcess::Spawn(w.argv, name, LogFile(name), /*own_process_group=*/true);
      if (!child.ok()) {
        events.push_back(name + " not restarting: " + child.status().ToString());
        continue;
      }
      w.process = std::move(child).value();
      w.reported = false;
      w.restarts.push_back(now);
      events.push_back(name + " restarted (pid " + std::to_string(w.process.pid()) + ")");
    }
  }
  return events;
}

ChildProcess* LocalCluster::worker(int replica, int rank) {
  for (Worker& w : workers_)
    if (w.replica == replica && w.rank == rank) return &w.process;
  return nullptr;
}

std::optional<int> LocalCluster::RequestsInFlight(std::chrono::milliseconds wait) {
  Result<std::unique_ptr<Client>> client = Client::Connect(client_endpoint_, client_keys_);
  if (!client.ok()) return std::nullopt;
  Result<proto::ClusterStatus> status = (*client)->FetchStatus(wait);
  if (!status.ok()) return std::nullopt;
  int n = status->queued();
  for (const auto& r : status->replicas()) n += r.running() + r.waiting();
  return n;
}

void LocalCluster::BeginDrain() {
  if (coordinator_) coordinator_->Signal(SIGTERM);
}

void LocalCluster::Stop() {
  if (coordinator_ && coordinator_->running()) {
    // Each SIGTERM after the first ends a drain at once; signals sent close together may
    // arrive as one, so they are sent until the coordinator exits (it sends Shutdown to
    // the workers), for up to 5 s.
    for (const auto deadline = Clock::now() + 5000ms; !coordinator_->PollExit() && Clock::now() < deadline;) {
      coordinator_->Signal(SIGTERM);
      for (int i = 0; i < 5 && !coordinator_->PollExit(); ++i) std::this_thread::sleep_for(20ms);
    }
    coordinator_->Stop(0ms);  // SIGKILL if it is still there
  }
  for (Worker& w : workers_) w.process.Stop(5000ms);
  if (!run_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(run_dir_, ec);
    run_dir_.clear();
  }
}

}  // namespace flover
