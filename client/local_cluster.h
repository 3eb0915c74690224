// LocalCluster: a whole Flover cluster started on this host from a YAML file, as child
// processes: flover-coordinator, then every worker of the file whose host is local. It
// is what `flover up` and `flover bench --config` run.
//
// Start() returns once every replica reports "ready" (progress lines go to
// options.progress), or an error naming the daemon that stopped, the timeout or the
// interruption; on error everything it started is already stopped. Stop() (also run by
// the destructor) stops the coordinator at once (its requests in flight fail), which
// shuts its workers down, then any worker left, so no process survives. BeginDrain()
// instead lets the requests in flight finish first (options.drain_timeout_s). Children
// also get SIGTERM when this process dies, and each leads its own process group, so a
// terminal's Ctrl-C reaches only this process.
//
// A worker's collectives bind the address its workers[].host names unless that is
// loopback (the default); then the worker takes its address on the route to the
// coordinator (local_address.h). For a worker of another host, a progress line gives the
// command that starts it there (RemoteWorkerCommand).
//
// A cluster with `security.mode: curve` (docs/security.md) is started secured: each
// worker gets --key security.worker_key --coordinator-public-key
// security.coordinator_public_key, and this process watches the cluster as a client with
// security.client_key (which should be an admin key: the status then says why a replica
// failed); both must be set. client_keys() are those credentials, for its other clients.
//
// Thread-safety: none; one thread owns a LocalCluster.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/child_process.h"
#include "client/client.h"
#include "common/cluster_config.h"
#include "common/curve_socket.h"
#include "common/status.h"

namespace flover {

struct LocalClusterOptions {
  std::string bin_dir;           // flover-coordinator / flover-worker; default: found beside flover
  std::string coordinator_bin;   // explicit paths of the daemons (tests); override bin_dir
  std::string worker_bin;
  double ready_timeout_s = 300;  // loading big models takes a while
  // false: the daemons write to this process's stdout/stderr. true: each daemon's output
  // goes to a file in the cluster's temporary folder, and errors quote its last lines.
  bool capture_logs = false;
  std::function<void(const std::string&)> progress;  // "1/2 workers ready"; may be empty
  std::function<bool()> interrupted;                 // polled while starting; may be empty
  // SuperviseWorkers() restarts a worker that stopped with anything but exit 0 (a worker
  // exits 0 only when told to stop), as systemd's Restart=on-failure would: after 1 s,
  // doubling after each restart up to 30 s, and at most kMaxRestarts times within
  // kRestartWindow. Restarted workers register again and bring their replica back.
  bool restart_failed_workers = false;
  // The coordinator's --drain-timeout: how long BeginDrain() lets the requests in flight
  // run. 0: BeginDrain() stops them at once, as Stop() does.
  double drain_timeout_s = 0;
};

class LocalCluster {
 public:
  static Result<std::unique_ptr<LocalCluster>> Start(const std::string& config_path,
                                                     const LocalClusterOptions& options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const ClusterConfig& config() const { return config_; }
  const std::string& client_endpoint() const { return client_endpoint_; }    // ports resolved
  const std::string& control_endpoint() const { return control_endpoint_; }  // ports resolved
  const std::string& plans_endpoint() const { return plans_endpoint_; }      // ports resolved
  const std::string& http_endpoint() const { return http_endpoint_; }        // "" without endpoints.http
  // The coordinator's process, and the file its output goes to ("" without capture_logs).
  ChildProcess* coordinator() { return coordinator_ ? &*coordinator_ : nullptr; }
  std::string coordinator_log() const { return LogFile("flover-coordinator"); }
  // The client credentials of a secured cluster (security.client_key and the
  // coordinator's public key); nullopt without CURVE.
  const std::optional<CurveClientKeys>& client_keys() const { return client_keys_; }

  // "flover-coordinator stopped (exit 1)" once the coordinator has exited, else nullopt.
  std::optional<std::string> CoordinatorExit();
  // Call every few tens of ms once started. Returns one line per event since the last
  // call: "flover-worker 0/1 stopped (signal Killed)" for a worker that exited, then,
  // with options.restart_failed_workers, "... restarting in 1 s", "... restarted", or
  // "... not restarting: it stopped 5 times within 10 min".
  std::vector<std::string> SuperviseWorkers();
  static constexpr int kMaxRestarts = 5;
  static constexpr std::chrono::minutes kRestartWindow{10};
  // The process of worker (replica, rank) started here; nullptr if it runs elsewhere.
  ChildProcess* worker(int replica, int rank);

  // Live reconfiguration (docs/deploy.md). Reload() asks the coordinator to read the
  // cluster file again (a reload request, as `flover reload`); once it applied it,
  // FollowConfig(). The coordinator's answer, with one "; ..." per worker started, or
  // its error (then nothing was started).
  Result<proto::ReloadReply> Reload(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // For a reload made by someone else (`flover reload`, SIGHUP to the coordinator): when
  // `client`'s status shows a config generation this cluster has not followed yet,
  // FollowConfig(). One line per event; none when nothing changed.
  Result<std::vector<std::string>> FollowReloads(Client& client);
  // Reads the cluster file again and starts here the workers of the replicas it adds
  // (or adds back) whose host is local; for the others, a line saying where to start
  // them. Workers of removed replicas exit 0 when the coordinator tells them, and are not
  // restarted.
  Result<std::vector<std::string>> FollowConfig();

  // The requests the coordinator has queued or running (its status), or nullopt when it
  // does not answer within `wait`.
  std::optional<int> RequestsInFlight(std::chrono::milliseconds wait);
  // Asks the coordinator to drain (SIGTERM): it refuses new requests, lets those in
  // flight finish for up to options.drain_timeout_s, then sends Shutdown to the workers
  // (they exit 0) and exits 0. Returns at once; CoordinatorExit() says when it is done.
  void BeginDrain();

  // Stops the coordinator at once, ending any drain (it sends Shutdown to the workers),
  // then every worker left. Safe to call twice.
  void Stop();

 private:
  LocalCluster() = default;
  Status StartDaemons(const std::string& config_path, const LocalClusterOptions& options);
  // Spawns worker `w` here when its host is local (replacing an exited one of the same
  // replica and rank), else sets *elsewhere to how to start it on its host.
  Status StartWorker(const WorkerConfig& w, std::optional<std::string>* elsewhere);
  // Where a daemon's output goes ("" = inherited).
  std::string LogFile(const std::string& name) const;
  // "name stopped ... (exit 2)" plus the last lines of its log when captured.
  std::string Describe(ChildProcess& child, const std::string& what, const std::string& exit) const;

  ClusterConfig config_;    // the cluster file as last followed
  std::string config_path_;
  std::string worker_bin_;
  std::vector<std::string> worker_key_flags_;  // a secured cluster's workers' key flags
  uint64_t generation_seen_ = 1;  // the coordinator's config generation followed
  std::string run_dir_;  // temporary: endpoints file, logs; removed by Stop()
  bool capture_logs_ = false;
  std::string client_endpoint_;
  std::string control_endpoint_;
  std::string plans_endpoint_;
  std::string http_endpoint_;
  std::optional<CurveClientKeys> client_keys_;
  std::optional<ChildProcess> coordinator_;
  using Clock = std::chrono::steady_clock;
  struct Worker {
    int replica;
    int rank;
    std::vector<std::string> argv;
    ChildProcess process;
    bool reported = false;                  // exit already returned by SuperviseWorkers
    std::optional<Clock::time_point> restart_at{};
    std::vector<Clock::time_point> restarts{};  // within kRestartWindow
  };
  bool restart_failed_workers_ = false;
  std::vector<Worker> workers_;
};

// True for 127.0.0.1, localhost, ::1, "" and this machine's host name.
bool IsLocalHost(const std::string& host);

// The command that starts worker `w` on its own host, as `flover up` prints it:
// "flover-worker --coordinator tcp://10.0.0.1:5556 --replica 0 --rank 1 [--host H]
// [--key WORKER.key --coordinator-public-key COORDINATOR.pub]", with --host when `host`
// is set (the file names the worker's address; without it the worker takes its address
// on the route to the coordinator), the key flags for a `curve` cluster, and a warning
// when `control_endpoint` is on loopback (no other host reaches it).
std::string RemoteWorkerCommand(const std::string& control_endpoint, const WorkerConfig& w,
                                const std::optional<std::string>& host, bool curve);

}  // namespace flover
