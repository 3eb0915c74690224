// The deployment files run the real daemons: the ExecStart lines of deploy/systemd and
// the container commands of deploy/kubernetes (the kustomization's resource files) are
// read from the shipped files, pointed at the binaries of this build, the shipped secured cluster files (keys
// made here, given to each daemon as systemd's LoadCredential= and Kubernetes' Secret and
// ConfigMap volumes would) and free ports, and run as the service manager would.
// Checked: the cluster becomes ready and serves run.c's text to a client key; when a
// worker dies, the other worker of its replica exits non-zero (so that systemd's
// Restart=on-failure restarts it), and the restarted workers bring the replica back; the
// units' ExecReload admits a new key; a replica added to the Kubernetes files as
// docs/deploy.md says serves after the coordinator's reload; stopping the coordinator
// with the units' signal shuts everything down with exit 0 within the units' stop
// timeouts. The coordinator
// unit is Type=notify: the coordinator tells the NOTIFY_SOCKET its progress, and READY=1
// once a replica is ready.
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "client/child_process.h"
#include "client/client.h"
#include "common/cluster_config_reader.h"
#include "common/curve_keys.h"
#include "tests/integration/test_cluster.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

using namespace std::chrono_literals;
using testing::RunShell;
using testing::ShellRun;

const std::string kSourceDir = FLOVER_SOURCE_DIR;
const std::string kExpectedText = " and Ben were playing in the park.";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

// A TCP port on 127.0.0.1 that nothing listens on now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  return ok ? ntohs(addr.sin_port) : -1;
}

// The value of `key=` in a unit file's lines ("" when absent).
std::string UnitSetting(const std::string& unit, const std::string& key) {
  std::istringstream in(unit);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  return "";
}

// systemd's expansion of the specifiers and `$$` these units use (%i, %H, %%, $$); any
// other specifier or variable fails the test, so a unit cannot silently use one this
// test does not model.
std::string ExpandSpecifiers(const std::string& line, const std::string& instance) {
  std::string out;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i], next = i + 1 < line.size() ? line[i + 1] : '\0';
    if (c == '%') {
      ++i;
      if (next == 'i') out += instance;
      else if (next == '%') out += '%';
      else if (next == 'H') {
        char host[256] = {};
        gethostname(host, sizeof(host) - 1);
        out += host;
      } else ADD_FAILURE() << "specifier %" << next << " in: " << line;
    } else if (c == '$') {
      ++i;
      if (next == '$') out += '$';
      else ADD_FAILURE() << "environment variable in: " << line;
    } else {
      out += c;
    }
  }
  return out;
}

// A command line split into words as systemd does for these units: whitespace
// separates, '...' and "..." quote.
std::vector<std::string> SplitCommandLine(const std::string& line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '\'' || c == '"') {
      const size_t close = line.find(c, i + 1);
      EXPECT_NE(close, std::string::npos) << "unbalanced quote in: " << line;
      if (close == std::string::npos) return {};
      word += line.substr(i + 1, close - i - 1);
      in_word = true;
      i = close;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

// The daemons of the units and the manifest are installed in /usr/local/bin or on the
// PATH; here they are the ones of this build.
void UseBuiltBinaries(std::string& command) {
  ReplaceAll(command, "/usr/local/bin/flover-coordinator", testing::CoordinatorBinary());
  ReplaceAll(command, "/usr/local/bin/flover-worker", testing::WorkerBinary());
}

// Waits until every replica is ready; false after `timeout`.
bool WaitReady(const std::string& client_endpoint, const CurveClientKeys& keys, std::chrono::seconds timeout) {
  Result<std::unique_ptr<Client>> client = Client::Connect(client_endpoint, keys);
  if (!client.ok()) return false;
  for (auto deadline = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < deadline;) {
    Result<proto::ClusterStatus> status = (*client)->FetchStatus(1000ms);
    if (status.ok() && AllReplicasReady(*status)) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// The flags of a client with the key pair `key` that pins the coordinator's `server_key`.
std::string KeyFlags(const std::string& key, const std::string& server_key) {
  return " --key " + key + " --server-key " + server_key;
}

// `flover generate` against the cluster: run.c's greedy story for "Sara". `key_flags`:
// KeyFlags of an admitted client.
void ExpectServes(const std::string& client_endpoint, const std::string& key_flags) {
  const ShellRun run = RunShell(testing::FloverBinary() + " generate --endpoint " + client_endpoint + key_flags +
                                " --prompt Sara --max-tokens 61 --json");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find(kExpectedText), std::string::npos) << run.output;
}

// Waits up to `timeout` for the process to exit; its status ("exit 0"), or "" if it did not.
std::string WaitExit(ChildProcess& process, std::chrono::milliseconds timeout) {
  for (auto deadline = std::chrono::steady_clock::now() + timeout;; std::this_thread::sleep_for(20ms)) {
    if (std::optional<std::string> exit = process.PollExit()) return *exit;
    if (std::chrono::steady_clock::now() > deadline) return "";
  }
}

// The argv prefix that runs a command with `host` as its host name, in a UTS namespace
// of its own (unshare as root, else inside a user namespace); empty when this machine
// allows neither, with what unshare said in `why`.
std::vector<std::string> WithHostName(const std::string& host, std::string& why) {
  const ShellRun which = RunShell("command -v unshare");
  const std::string unshare = which.output.substr(0, which.output.find('\n'));
  if (which.exit_code != 0 || unshare.empty()) {
    why = "unshare (util-linux) is not installed";
    return {};
  }
  const std::vector<std::string> prefixes[] = {{unshare, "--uts"}, {unshare, "--user", "--map-root-user", "--uts"}};
  for (const std::vector<std::string>& prefix : prefixes) {
    std::string line;
    for (const std::string& word : prefix) line += word + " ";
    const ShellRun probe = RunShell(line + "/bin/sh -c 'hostname " + host + " && hostname'");
    if (probe.exit_code == 0 && probe.output == host + "\n") {
      std::vector<std::string> argv = prefix;
      argv.insert(argv.end(), {"/bin/sh", "-c", "hostname \"$0\" && exec \"$@\"", host});
      return argv;
    }
    why += line + ": " + probe.output;
  }
  return {};
}

// True when `host` resolves to an address.
bool Resolves(const std::string& host) {
  addrinfo* resolved = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, nullptr, &resolved) != 0) return false;
  freeaddrinfo(resolved);
  return true;
}

// Every value of `key=` in a unit file's lines.
std::vector<std::string> UnitSettings(const std::string& unit, const std::string& key) {
  std::vector<std::string> values;
  std::istringstream in(unit);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + "=", 0) == 0) values.push_back(line.substr(key.size() + 1));
  return values;
}

// Key files made here: DIR/NAME.key and DIR/NAME.pub for each name.
void MakeKeys(const std::string& dir, const std::vector<std::string>& names) {
  const Status made = testing::MakeKeys(dir, names);
  ASSERT_TRUE(made.ok()) << made.ToString();
}

// What systemd does for a unit's LoadCredential=ID:PATH lines: copies each PATH (with
// `from` replaced by `to`) into a folder of the service's own as ID, readable by the
// service only, and names that folder in $CREDENTIALS_DIRECTORY. The argv prefix that
// sets it.
std::vector<std::string> LoadCredentials(const std::string& unit, const std::string& dir, const std::string& from,
                                         const std::string& to) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (std::string credential : UnitSettings(unit, "LoadCredential")) {
    const size_t colon = credential.find(':');
    EXPECT_NE(colon, std::string::npos) << credential;
    std::string source = credential.substr(colon + 1);
    ReplaceAll(source, from, to);
    const std::string target = dir + "/" + credential.substr(0, colon);
    EXPECT_TRUE(std::filesystem::copy_file(source, target)) << source;
    std::filesystem::permissions(target, std::filesystem::perms::owner_read);
  }
  return {"/usr/bin/env", "CREDENTIALS_DIRECTORY=" + dir};
}

// What systemd does for a unit's EnvironmentFile=[-]PATH lines: the VAR=value lines of
// each file (PATH with `from` replaced by `to`; one with "-" may be missing) as
// environment assignments.
std::vector<std::string> EnvironmentFiles(const std::string& unit, const std::string& from, const std::string& to) {
  std::vector<std::string> assignments;
  for (std::string path : UnitSettings(unit, "EnvironmentFile")) {
    const bool optional = path.rfind('-', 0) == 0;
    if (optional) path.erase(0, 1);
    ReplaceAll(path, from, to);
    std::ifstream in(path);
    EXPECT_TRUE(in || optional) << path;
    for (std::string line; std::getline(in, line);)
      if (!line.empty() && line[0] != '#' && line.find('=') != std::string::npos) assignments.push_back(line);
  }
  return assignments;
}

// systemd's side of sd_notify: a unix datagram socket bound at `path`, the
// NOTIFY_SOCKET of a Type=notify service, read all the time as systemd does (a sender
// blocks when the socket's queue is full).
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    std::remove(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    EXPECT_LT(path_.size(), sizeof(addr.sun_path)) << path_;
    path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << path_ << ": " << strerror(errno);
    reader_ = std::thread([this] {
      while (!stop_) {
        pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, 50) != 1) continue;
        char buf[4096];
        const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n <= 0) continue;
        std::lock_guard lock(mu_);
        received_.emplace_back(buf, n);
      }
    });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    close(fd_);
    std::remove(path_.c_str());
  }
  const std::string& path() const { return path_; }
  // The first notification not returned before that contains `wanted`, waiting up to
  // `timeout`; "" if none came. `seen` collects the notifications looked at.
  std::string WaitFor(const std::string& wanted, std::chrono::seconds timeout, std::string& seen) {
    for (auto deadline = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(20ms)) {
      std::lock_guard lock(mu_);
      for (; next_ < received_.size(); ++next_) {
        seen += received_[next_] + "\n---\n";
        if (received_[next_].find(wanted) != std::string::npos) return received_[next_++];
      }
    }
    return "";
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> received_;  // guarded by mu_
  size_t next_ = 0;                    // guarded by mu_: received_[next_..] not looked at yet
  std::thread reader_;
};

std::chrono::milliseconds StopTimeout(const std::string& unit) {
  const std::string value = UnitSetting(unit, "TimeoutStopSec");
  return std::chrono::seconds(value.empty() ? 90 : std::stoi(value));  // systemd's default
}

TEST(DeployTest, SystemdUnitsVerify) {
  // systemd's own checker on the shipped units, the binaries pointed at this build.
  const std::string dir = ::testing::TempDir() + "/units";
  std::filesystem::create_directories(dir);
  for (const std::string name : {"flover-coordinator.service", "flover-worker@.service"}) {
    std::string unit = ReadFile(kSourceDir + "/deploy/systemd/" + name);
    ASSERT_FALSE(unit.empty()) << name;
    UseBuiltBinaries(unit);
    std::ofstream(dir + "/" + name) << unit;
  }
  std::filesystem::copy_file(dir + "/flover-worker@.service", dir + "/flover-worker@0-1.service",
                             std::filesystem::copy_options::overwrite_existing);
  const ShellRun verify = RunShell("systemd-analyze verify " + dir + "/flover-coordinator.service " + dir +
                                   "/flover-worker@0-1.service");
  EXPECT_EQ(verify.exit_code, 0) << "systemd-analyze (package systemd) is needed: " << verify.output;
  // Its complaints about our units name them ("...flover-coordinator.service:13: ...");
  // other lines are about the machine (a container, a missing machine-id) and pass.
  std::istringstream lines(verify.output);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_EQ(line.find("flover-coordinator.service"), std::string::npos) << "systemd-analyze: " << line;
    EXPECT_EQ(line.find("flover-worker@"), std::string::npos) << "systemd-analyze: " << line;
  }
}

TEST(DeployTest, SystemdWorkerUnitPassesHostOnlyWhenFloverWorkerHostIsSet) {
  // The worker unit's command as systemd runs it, flover-worker replaced by a script that
  // prints its arguments one a line. Without FLOVER_WORKER_HOST the worker gets no --host
  // (it takes the file's workers[].host, else its address on the route to the
  // coordinator); with it, --host and the value, one word.
  const std::string unit = ReadFile(kSourceDir + "/deploy/systemd/flover-worker@.service");
  ASSERT_FALSE(unit.empty());
  const std::string dir = ::testing::TempDir() + "/worker-unit";
  std::filesystem::create_directories(dir);
  const std::string print_args = dir + "/print-args";
  std::ofstream(print_args) << "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n";
  std::filesystem::permissions(print_args, std::filesystem::perms::owner_all);
  std::string line = ExpandSpecifiers(UnitSetting(unit, "ExecStart"), "1-0");
  ReplaceAll(line, "/usr/local/bin/flover-worker", print_args);
  const std::string base = "--config\n/etc/flover/cluster.yaml\n--replica\n1\n--rank\n0\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"/usr/bin/env", "-u", "FLOVER_WORKER_HOST"}, base},
      {{"/usr/bin/env", "FLOVER_WORKER_HOST="}, base},
      {{"/usr/bin/env", "FLOVER_WORKER_HOST=10.0.0.2"}, base + "--host\n10.0.0.2\n"},
  };
  for (const auto& [prefix, expected] : cases) {
    SCOPED_TRACE(prefix.back());
    std::vector<std::string> argv = prefix;
    for (std::string& word : SplitCommandLine(line)) argv.push_back(std::move(word));
    const std::string out = dir + "/args.txt";
    std::remove(out.c_str());
    Result<ChildProcess> run = ChildProcess::Spawn(argv, "flover-worker@1-0", out);
    ASSERT_TRUE(run.ok()) << run.status().ToString();
    EXPECT_EQ(WaitExit(*run, 60s), "exit 0");
    EXPECT_EQ(ReadFile(out), expected);
  }
}

TEST(DeployTest, SystemdUnitCommandsServeRecoverFromAWorkerCrashAndStopCleanly) {
  const std::string coordinator_unit = ReadFile(kSourceDir + "/deploy/systemd/flover-coordinator.service");
  const std::string worker_unit = ReadFile(kSourceDir + "/deploy/systemd/flover-worker@.service");
  ASSERT_FALSE(coordinator_unit.empty());
  ASSERT_FALSE(worker_unit.empty());
  // Recovery below relies on these: systemd restarts a worker that exits non-zero or is
  // killed, and stops the coordinator with SIGTERM.
  EXPECT_EQ(UnitSetting(worker_unit, "Restart"), "on-failure");
  EXPECT_EQ(UnitSetting(worker_unit, "SuccessExitStatus"), "") << "the test assumes only exit 0 is success";
  const std::string kill_signal = UnitSetting(coordinator_unit, "KillSignal");
  EXPECT_TRUE(kill_signal.empty() || kill_signal == "SIGTERM") << kill_signal;
  for (const std::string* unit : {&coordinator_unit, &worker_unit}) {
    EXPECT_EQ(UnitSetting(*unit, "LimitNOFILE"), "65536") << "a descriptor per client connection";
    EXPECT_EQ(UnitSetting(*unit, "EnvironmentFile"), "-/etc/flover/flover.env");
  }
  // The coordinator is ready (READY=1, checked below) once a replica is; its workers
  // therefore must not wait for it, or neither would start.
  EXPECT_EQ(UnitSetting(coordinator_unit, "Type"), "notify");
  EXPECT_EQ(UnitSetting(worker_unit, "After").find("flover-coordinator"), std::string::npos)
      << UnitSetting(worker_unit, "After");
  EXPECT_EQ(UnitSetting(worker_unit, "Requires"), "");
  EXPECT_EQ(UnitSetting(worker_unit, "BindsTo"), "");

  // /etc/flover/cluster.yaml as deploy/systemd ships it, secured, on this host: its
  // addresses on loopback (the control port fixed, as workers read it from the file),
  // the model files of the tests, its keys made here (/etc/flover/keys), heartbeats
  // that a loaded machine cannot miss, one thread per worker.
  const std::string dir = ::testing::TempDir() + "/systemd";
  std::filesystem::remove_all(dir);
  const std::string keys = dir + "/keys";
  MakeKeys(keys, {"coordinator", "workers/host-a", "clients/alice", "admins/root"});
  std::filesystem::copy_file(keys + "/workers/host-a.key", keys + "/worker.key");  // this host's worker key pair
  const std::string config = dir + "/cluster.yaml", endpoints_file = dir + "/endpoints.json";
  const int control_port = FreePort();
  ASSERT_GT(control_port, 0);
  std::string cluster_yaml = ReadFile(kSourceDir + "/deploy/systemd/cluster.yaml");
  ASSERT_NE(cluster_yaml.find("mode: curve"), std::string::npos) << "the shipped cluster file is secured";
  ReplaceAll(cluster_yaml, "tcp://10.0.0.1:5556", "tcp://127.0.0.1:" + std::to_string(control_port));
  for (const char* port : {"5555", "5557"})
    ReplaceAll(cluster_yaml, std::string("tcp://10.0.0.1:") + port, "tcp://127.0.0.1:*");
  ReplaceAll(cluster_yaml, "/var/lib/flover/models/", testing::ModelsDir() + "/");
  ReplaceAll(cluster_yaml, "/etc/flover/keys", keys);
  ReplaceAll(cluster_yaml, "heartbeat: {interval_ms: 500, timeout_ms: 5000}",
             "heartbeat: {interval_ms: 100, timeout_ms: 30000}");
  ReplaceAll(cluster_yaml, "memory_mib: 256", "memory_mib: 16");
  cluster_yaml += "workers:\n  - {replica: 0, rank: 0, threads: 1}\n  - {replica: 0, rank: 1, threads: 1}\n";
  std::ofstream(config) << cluster_yaml;
  const CurveClientKeys root = testing::ClusterKeys(keys, "admins/root");
  const std::string alice = KeyFlags(keys + "/clients/alice.key", keys + "/coordinator.pub");
  // /etc/flover/flover.env: the shipped example, with this host's address for the workers.
  std::string env = ReadFile(kSourceDir + "/deploy/systemd/flover.env");
  ASSERT_NE(env.find("#FLOVER_WORKER_HOST="), std::string::npos);
  std::ofstream(dir + "/flover.env") << env << "FLOVER_WORKER_HOST=localhost\n";
  // systemd's notification socket for the Type=notify coordinator.
  NotifySocket notify(dir + "/notify.sock");

  // A unit's command as systemd runs it, its credentials loaded, its environment file read
  // (and the coordinator's NOTIFY_SOCKET set).
  auto command = [&](const std::string& unit, const std::string& instance) {
    std::string line = ExpandSpecifiers(UnitSetting(unit, "ExecStart"), instance);
    UseBuiltBinaries(line);
    ReplaceAll(line, "/etc/flover/cluster.yaml", config);
    ReplaceAll(line, "/run/flover/endpoints.json", endpoints_file);
    std::vector<std::string> argv = LoadCredentials(
        unit, dir + "/credentials-" + (instance.empty() ? "coordinator" : instance), "/etc/flover/keys", keys);
    for (std::string& assignment : EnvironmentFiles(unit, "/etc/flover", dir)) argv.push_back(std::move(assignment));
    if (UnitSetting(unit, "Type") == "notify") argv.push_back("NOTIFY_SOCKET=" + notify.path());
    for (std::string& word : SplitCommandLine(line)) argv.push_back(std::move(word));
    return argv;
  };
  auto start_worker = [&](int rank) {
    const std::string instance = "0-" + std::to_string(rank);
    Result<ChildProcess> w = ChildProcess::Spawn(command(worker_unit, instance), "flover-worker@" + instance);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return std::move(w).value();
  };

  // Starts the coordinator unit's command; the client endpoint from its endpoints file.
  std::optional<ChildProcess> coordinator;
  auto start_coordinator = [&]() -> std::string {
    std::remove(endpoints_file.c_str());
    Result<ChildProcess> c = ChildProcess::Spawn(command(coordinator_unit, ""), "flover-coordinator");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (!c.ok()) return "";
    coordinator.emplace(std::move(c).value());
    for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
      if (coordinator->PollExit().has_value()) break;
      const nlohmann::json j = nlohmann::json::parse(ReadFile(endpoints_file), nullptr, false);
      if (j.is_object() && j.contains("client")) return j["client"];
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "no endpoints file " << endpoints_file;
    return "";
  };
  std::string client_endpoint = start_coordinator();
  ASSERT_FALSE(client_endpoint.empty());
  // Before any worker: its progress, and not ready.
  std::string notified;
  const std::string waiting = notify.WaitFor("STATUS=no replica is ready", 30s, notified);
  EXPECT_NE(waiting.find("STATUS=no replica is ready: replica 0 starting (0 of 2 workers registered, 0 ready)"),
            std::string::npos)
      << notified;
  EXPECT_EQ(notified.find("READY=1"), std::string::npos) << notified;
  std::vector<ChildProcess> workers;
  workers.push_back(start_worker(0));
  workers.push_back(start_worker(1));
  const std::string ready = notify.WaitFor("READY=1", 60s, notified);
  EXPECT_NE(ready.find("STATUS=1 of 1 replica(s) ready"), std::string::npos) << notified;
  ASSERT_TRUE(WaitReady(client_endpoint, root, 60s));
  // The workers' host came from the environment file (the coordinator shows it to admins).
  {
    Result<std::unique_ptr<Client>> admin = Client::Connect(client_endpoint, root);
    ASSERT_TRUE(admin.ok()) << admin.status().ToString();
    Result<proto::ClusterStatus> status = (*admin)->FetchStatus(10s);
    ASSERT_TRUE(status.ok()) << status.status().ToString();
    for (const proto::WorkerStatus& w : status->replicas(0).workers()) EXPECT_EQ(w.host(), "localhost");
  }
  ExpectServes(client_endpoint, alice);
  // The cluster is CURVE: a plain-text client is turned away.
  const ShellRun plain = RunShell(testing::FloverBinary() + " status --endpoint " + client_endpoint);
  EXPECT_EQ(plain.exit_code, 1) << plain.output;
  EXPECT_NE(plain.output.find("requires CURVE"), std::string::npos) << plain.output;

  // systemctl reload: a key added to clients/ is admitted once the unit's ExecReload ran.
  MakeKeys(keys, {"clients/bob"});
  const std::string bob = KeyFlags(keys + "/clients/bob.key", keys + "/coordinator.pub");
  std::string reload = UnitSetting(coordinator_unit, "ExecReload");
  ASSERT_NE(reload.find("$MAINPID"), std::string::npos) << reload;
  ReplaceAll(reload, "$MAINPID", std::to_string(coordinator->pid()));
  ASSERT_EQ(RunShell(reload).exit_code, 0) << reload;
  for (auto deadline = std::chrono::steady_clock::now() + 30s;; std::this_thread::sleep_for(50ms)) {
    const ShellRun status = RunShell(testing::FloverBinary() + " status --endpoint " + client_endpoint + bob);
    if (status.exit_code == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the reload did not admit the new key: " << status.output;
  }

  // A worker dies: the coordinator shuts the replica's other worker down, and it exits
  // non-zero, so that Restart=on-failure starts it again too.
  workers[1].Signal(SIGKILL);
  EXPECT_EQ(WaitExit(workers[1], 60s), "signal Killed");
  EXPECT_EQ(WaitExit(workers[0], 60s), "exit 5") << "rank 0 must ask systemd for a restart";
  // What systemd then does after RestartSec: run both units' commands again.
  workers.clear();
  workers.push_back(start_worker(0));
  workers.push_back(start_worker(1));
  ASSERT_TRUE(WaitReady(client_endpoint, root, 60s)) << "the restarted workers did not bring the replica back";
  ExpectServes(client_endpoint, alice);

  // The coordinator crashes and systemd starts it again: the new one does not know the
  // workers, which reconnect to it, and tells them at their first heartbeat to start
  // again: exit 5, not exit 4 at their heartbeat timeout (30 s here, 5 s by default),
  // which the wait below would also see. Restarted, they register, and the cluster
  // serves again.
  coordinator->Signal(SIGKILL);
  EXPECT_EQ(WaitExit(*coordinator, 60s), "signal Killed");
  client_endpoint = start_coordinator();
  ASSERT_FALSE(client_endpoint.empty());
  for (ChildProcess& w : workers)
    EXPECT_EQ(WaitExit(w, 60s), "exit 5") << w.name() << ": told to start again by the new coordinator";
  workers.clear();
  workers.push_back(start_worker(0));
  workers.push_back(start_worker(1));
  ASSERT_TRUE(WaitReady(client_endpoint, root, 60s)) << "the workers did not come back to the restarted coordinator";
  ExpectServes(client_endpoint, alice);

  // systemctl stop flover-coordinator: SIGTERM. The coordinator drains (the unit keeps
  // the default --drain-timeout of 10 s, within TimeoutStopSec): the request in flight
  // finishes whole; then the workers are told to stop and exit 0.
  const std::string story_file = dir + "/systemd-story.txt";
  std::ofstream(story_file).close();
  Result<ChildProcess> story = ChildProcess::Spawn(
      {testing::FloverBinary(), "generate", "--endpoint", client_endpoint, "--key", keys + "/clients/alice.key",
       "--server-key", keys + "/coordinator.pub", "--prompt", "Sara", "--max-tokens", "400", "--ignore-eos"},
      "flover generate", story_file);
  ASSERT_TRUE(story.ok()) << story.status().ToString();
  for (auto deadline = std::chrono::steady_clock::now() + 30s; ReadFile(story_file).empty();) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no token";
    std::this_thread::sleep_for(2ms);
  }
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(WaitExit(*story, 30s), "exit 0") << ReadFile(story_file);
  EXPECT_NE(ReadFile(story_file).find(kExpectedText), std::string::npos) << ReadFile(story_file);
  EXPECT_EQ(WaitExit(*coordinator, StopTimeout(coordinator_unit)), "exit 0");
  for (ChildProcess& w : workers) EXPECT_EQ(WaitExit(w, StopTimeout(worker_unit)), "exit 0") << w.name();
}

// The failure drills that docs/benchmarks.md quotes run as shipped, each on a cluster of
// its own (random ports; FLOVER_ENDPOINT from flover up), and report what they measure.
TEST(DeployTest, FailureDrillsRunAndReport) {
  testing::TestClusterOptions o;
  o.model = testing::Stories260kBin();
  o.tokenizer = testing::Tok512Bin();
  o.failover_wait_ms = 30000;  // the request of the worker drill waits for its replica
  const std::string config = ::testing::TempDir() + "/drill.yaml";
  std::ofstream(config) << testing::ClusterYaml(o);
  const std::string bin_dir = testing::FloverBinary().substr(0, testing::FloverBinary().rfind('/'));
  const std::pair<const char*, const char*> expected[] = {
      {"worker", "text: the same as without the failure"},
      {"idle-worker", "replica unhealthy "},
      {"client", "requests cancelled "},
      {"coordinator", "client exited 1 "}};
  for (const auto& [scenario, line] : expected) {
    const ShellRun run = RunShell("timeout 300 bash " + kSourceDir + "/scripts/failure-drill.sh --scenario " + scenario +
                                  " --config " + config + " --bin-dir " + bin_dir);
    EXPECT_EQ(run.exit_code, 0) << scenario << ":\n" << run.output;
    EXPECT_NE(run.output.find(line), std::string::npos) << scenario << ":\n" << run.output;
  }
}

TEST(DeployTest, WorkerTakingTheControlEndpointFromTheClusterFileNeedsAHost) {
  // The worker unit reads endpoints.control from the cluster file: a bind-all or
  // random-port endpoint there is a clear start-up error (exit 2), not a hang.
  struct Case {
    std::string control;
    std::string message;
  };
  for (const Case& c : {Case{"tcp://*:5556", "binds every interface"},
                        Case{"tcp://0.0.0.0:5556", "binds every interface"},
                        Case{"tcp://127.0.0.1:*", "needs the coordinator's control endpoint"}}) {
    SCOPED_TRACE(c.control);
    const std::string config = ::testing::TempDir() + "/control.yaml";
    std::ofstream(config) << "endpoints:\n  control: " << c.control << "\nmodel:\n  path: dummy:tiny\n";
    const ShellRun run =
        RunShell("timeout 20 " + testing::WorkerBinary() + " --config " + config + " --replica 0 --rank 0");
    EXPECT_EQ(run.exit_code, 2) << run.output;
    EXPECT_NE(run.output.find(c.message), std::string::npos) << run.output;
  }
}

// A pod's files, as Kubernetes mounts its volumes: each mount of its first container
// under `root` (a path P in the pod is root + P). ConfigMaps come from the manifest or
// from `provided` (name -> file -> content), Secrets from `provided` with their
// defaultMode, the models volume is this build's model folder.
class PodFiles {
 public:
  PodFiles(const YAML::Node& pod, const std::string& root, const std::map<std::string, YAML::Node>& manifest,
           const std::map<std::string, std::map<std::string, std::string>>& provided)
      : root_(root) {
    std::map<std::string, YAML::Node> volumes;
    for (const YAML::Node& v : pod["volumes"]) volumes[v["name"].as<std::string>()] = v;
    for (const YAML::Node& mount : pod["containers"][0]["volumeMounts"]) {
      const std::string mount_path = mount["mountPath"].as<std::string>();
      const YAML::Node volume = volumes[mount["name"].as<std::string>()];
      if (!volume.IsDefined()) {
        ADD_FAILURE() << "no volume " << mount["name"];
        return;
      }
      mounts_.push_back(mount_path);
      const std::string dir = root + mount_path;
      std::filesystem::create_directories(std::filesystem::path(dir).parent_path());
      if (volume["persistentVolumeClaim"]) {
        std::filesystem::create_directory_symlink(testing::ModelsDir(), dir);
        continue;
      }
      std::filesystem::create_directories(dir);
      std::map<std::string, std::string> files;
      int mode = 0644;
      if (const YAML::Node secret = volume["secret"]) {
        const std::string name = secret["secretName"].as<std::string>();
        if (!provided.count(name)) {
          ADD_FAILURE() << "the test makes no Secret " << name;
          return;
        }
        files = provided.at(name);
        const std::string text = secret["defaultMode"].as<std::string>("0644");
        mode = std::stoi(text, nullptr, text.size() > 1 && text[0] == '0' ? 8 : 10);
        secrets_.push_back(name);
      } else {
        const std::string name = volume["configMap"]["name"].as<std::string>();
        if (manifest.count("ConfigMap/" + name)) {
          for (const auto& entry : manifest.at("ConfigMap/" + name)["data"])
            files[entry.first.as<std::string>()] = entry.second.as<std::string>();
        } else {
          if (!provided.count(name)) {
            ADD_FAILURE() << "the test makes no ConfigMap " << name;
            return;
          }
          files = provided.at(name);
          config_maps_.push_back(name);
        }
      }
      for (const auto& [file, content] : files) {
        const std::string path = dir + "/" + file;
        std::ofstream(path) << content;
        std::filesystem::permissions(path, static_cast<std::filesystem::perms>(mode));
      }
    }
  }

  // `text` with every path under a mount turned into this machine's.
  std::string Local(const std::string& text) const {
    std::string out;
    for (size_t i = 0; i < text.size();) {
      const bool starts_word = i == 0 || std::string(" '\"=:\n\t").find(text[i - 1]) != std::string::npos;
      bool replaced = false;
      for (const std::string& m : mounts_) {
        const size_t end = i + m.size();
        if (end > text.size()) continue;
        const bool ends_name = end == text.size() || !(std::isalnum(static_cast<unsigned char>(text[end])) ||
                                                       text[end] == '-' || text[end] == '_' || text[end] == '.');
        if (starts_word && text.compare(i, m.size(), m) == 0 && ends_name) {
          out += root_ + m;
          i = end;
          replaced = true;
          break;
        }
      }
      if (!replaced) out += text[i++];
    }
    return out;
  }
  const std::vector<std::string>& secrets() const { return secrets_; }
  const std::vector<std::string>& config_maps() const { return config_maps_; }

 private:
  std::string root_;
  std::vector<std::string> mounts_;
  std::vector<std::string> secrets_, config_maps_;  // the ones the operator creates
};

// `env` of a container as NAME=value words (the values' pod paths made local).
std::vector<std::string> ContainerEnv(const YAML::Node& container, const PodFiles& files) {
  std::vector<std::string> words;
  for (const YAML::Node& e : container["env"])
    if (e["value"]) words.push_back(e["name"].as<std::string>() + "=" + files.Local(e["value"].as<std::string>()));
  return words;
}

// The objects of a kustomization folder's resource files (`dir`/kustomization.yaml,
// which lists only files here: tests/deploy renders overlays), by "Kind/name".
std::map<std::string, YAML::Node> KustomizationObjects(const std::string& dir) {
  std::map<std::string, YAML::Node> by_kind_name;
  const YAML::Node kustomization = YAML::LoadFile(dir + "/kustomization.yaml");
  EXPECT_TRUE(kustomization["resources"].IsSequence()) << dir;
  for (const YAML::Node& resource : kustomization["resources"]) {
    for (const YAML::Node& d : YAML::LoadAllFromFile(dir + "/" + resource.as<std::string>())) {
      const std::string kind_name = d["kind"].as<std::string>() + "/" + d["metadata"]["name"].as<std::string>();
      EXPECT_FALSE(by_kind_name.count(kind_name)) << kind_name << " twice";
      by_kind_name[kind_name] = d;
    }
  }
  return by_kind_name;
}

TEST(DeployTest, KubernetesManifestCommandsServe) {
  // The kustomization's header holds the commands that make the Secrets and ConfigMaps.
  const std::string kubernetes_dir = kSourceDir + "/deploy/kubernetes";
  const std::string manifest_text = ReadFile(kubernetes_dir + "/kustomization.yaml");
  std::map<std::string, YAML::Node> by_kind_name = KustomizationObjects(kubernetes_dir);
  ASSERT_TRUE(by_kind_name.count("ConfigMap/flover-config"));
  ASSERT_TRUE(by_kind_name.count("Deployment/flover-coordinator"));
  ASSERT_TRUE(by_kind_name.count("StatefulSet/flover-replica-0"));
  ASSERT_TRUE(by_kind_name.count("Service/flover-coordinator"));
  for (const auto& [kind_name, doc] : by_kind_name)
    EXPECT_NE(kind_name.rfind("Secret/", 0), 0u) << "key material has no place in the manifest";
  // The data plane (Gloo between the ranks) is open only to the replica's own pods.
  ASSERT_TRUE(by_kind_name.count("NetworkPolicy/flover-replica-0-data-plane"));
  const YAML::Node policy = by_kind_name["NetworkPolicy/flover-replica-0-data-plane"]["spec"];
  const YAML::Node worker_labels =
      by_kind_name["StatefulSet/flover-replica-0"]["spec"]["template"]["metadata"]["labels"];
  EXPECT_EQ(YAML::Dump(policy["podSelector"]["matchLabels"]), YAML::Dump(worker_labels));
  ASSERT_EQ(policy["ingress"].size(), 1u);
  ASSERT_EQ(policy["ingress"][0]["from"].size(), 1u);
  EXPECT_EQ(YAML::Dump(policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]), YAML::Dump(worker_labels));

  // The shipped cluster file is valid and secured, and the StatefulSet has one pod per rank.
  std::string cluster_yaml = by_kind_name["ConfigMap/flover-config"]["data"]["cluster.yaml"].as<std::string>();
  Result<ClusterConfig> shipped = ParseClusterConfig(cluster_yaml, "ConfigMap flover-config", "/etc/flover");
  ASSERT_TRUE(shipped.ok()) << shipped.status().ToString();
  EXPECT_EQ(shipped->security.mode, SecurityMode::kCurve);
  const YAML::Node workers_set = by_kind_name["StatefulSet/flover-replica-0"];
  EXPECT_EQ(workers_set["spec"]["replicas"].as<int>(), shipped->tensor_parallel);
  for (const YAML::Node& port : by_kind_name["Service/flover-coordinator"]["spec"]["ports"]) {
    const std::string name = port["name"].as<std::string>();
    const int number = port["port"].as<int>();
    ASSERT_TRUE(name == "client" || name == "control" || name == "plans") << "Service port " << name;
    const std::string& endpoint = name == "client"    ? shipped->endpoints.client
                                  : name == "control" ? shipped->endpoints.control
                                                      : shipped->endpoints.plans;
    EXPECT_EQ(endpoint, "tcp://*:" + std::to_string(number)) << "Service port " << name;
  }

  // The keys, made as the manifest's header says, and the Secrets and ConfigMaps made of them.
  const std::string dir = ::testing::TempDir() + "/k8s";
  std::filesystem::remove_all(dir);
  const std::string keys = dir + "/keys";
  MakeKeys(keys, {"coordinator", "worker", "probe", "alice", "root"});
  auto content = [&](const std::string& file) { return ReadFile(keys + "/" + file); };
  const std::map<std::string, std::map<std::string, std::string>> provided = {
      {"flover-coordinator-keys",
       {{"coordinator.key", content("coordinator.key")}, {"probe.key", content("probe.key")}}},
      {"flover-worker-key", {{"worker.key", content("worker.key")}}},
      {"flover-public-keys", {{"coordinator.pub", content("coordinator.pub")}}},
      {"flover-worker-keys", {{"worker.pub", content("worker.pub")}}},
      {"flover-client-keys", {{"probe.pub", content("probe.pub")}, {"alice.pub", content("alice.pub")}}},
      {"flover-admin-keys", {{"root.pub", content("root.pub")}}}};

  // The coordinator binds every interface and advertises its host name to the workers.
  // The manifest names the pod after the Service, whose name the cluster's DNS resolves
  // to the coordinator. Here the Service is 127.0.0.1 (see the workers' --coordinator
  // below), so the coordinator pod runs with that as its host name, in a UTS namespace
  // of its own: the test depends neither on this machine's name nor on its resolver.
  const std::string service = "flover-coordinator", service_address = "127.0.0.1";
  const YAML::Node coordinator_pod = by_kind_name["Deployment/flover-coordinator"]["spec"]["template"]["spec"];
  EXPECT_EQ(coordinator_pod["hostname"].as<std::string>(""), service) << "the workers could not resolve the pod";
  std::string no_namespace;
  std::vector<std::string> coordinator_argv = WithHostName(service_address, no_namespace);
  if (coordinator_argv.empty()) {
    // Without namespaces (a container without CAP_SYS_ADMIN), this machine's own name
    // stands in for the pod's, when it resolves.
    char host[256] = {};
    ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
    ASSERT_TRUE(Resolves(host)) << "cannot give the coordinator pod a host name (" << no_namespace
                                << ") and this machine's name " << host << " does not resolve";
  }

  // The pods' files (each pod its own), and free ports for the three endpoints.
  const PodFiles coordinator_files(coordinator_pod, dir + "/coordinator-pod", by_kind_name, provided);
  const PodFiles worker_files(workers_set["spec"]["template"]["spec"], dir + "/worker-pod", by_kind_name, provided);
  for (const PodFiles* files : {&coordinator_files, &worker_files}) {
    for (const std::string& name : files->secrets())
      EXPECT_NE(manifest_text.find("kubectl create secret generic " + name), std::string::npos) << name;
    for (const std::string& name : files->config_maps())
      EXPECT_NE(manifest_text.find("kubectl create configmap " + name), std::string::npos) << name;
  }
  std::map<std::string, int> port_of;  // "5556" -> a free port
  for (const std::string p : {"5555", "5556", "5557"}) {
    port_of[p] = FreePort();
    ASSERT_GT(port_of[p], 0);
    ReplaceAll(cluster_yaml, "tcp://*:" + p, "tcp://*:" + std::to_string(port_of[p]));
  }
  const std::string config = coordinator_files.Local("/etc/flover/cluster.yaml");
  std::ofstream(config) << coordinator_files.Local(cluster_yaml);

  const YAML::Node coordinator_container = coordinator_pod["containers"][0];
  std::vector<std::string> coordinator_command = coordinator_container["command"].as<std::vector<std::string>>();
  ASSERT_FALSE(coordinator_command.empty());
  EXPECT_EQ(coordinator_command[0], "flover-coordinator");
  coordinator_command[0] = testing::CoordinatorBinary();
  for (std::string& a : coordinator_command) a = coordinator_files.Local(a);
  const std::vector<std::string> coordinator_env = ContainerEnv(coordinator_container, coordinator_files);
  coordinator_argv.push_back("/usr/bin/env");
  coordinator_argv.insert(coordinator_argv.end(), coordinator_env.begin(), coordinator_env.end());
  coordinator_argv.insert(coordinator_argv.end(), coordinator_command.begin(), coordinator_command.end());
  Result<ChildProcess> coordinator = ChildProcess::Spawn(coordinator_argv, "coordinator pod");
  ASSERT_TRUE(coordinator.ok()) << coordinator.status().ToString();

  // The coordinator's probes, as the kubelet runs them: in the pod (the client port), in
  // the container's environment (its probe key).
  auto probe = [&](const char* which) {
    std::vector<std::string> argv = coordinator_container[which]["exec"]["command"].as<std::vector<std::string>>();
    EXPECT_EQ(argv.at(0), "flover");
    std::string line = "env";
    for (const std::string& word : coordinator_env) line += " '" + word + "'";
    line += " " + testing::FloverBinary();
    for (size_t i = 1; i < argv.size(); ++i) {
      ReplaceAll(argv[i], "tcp://127.0.0.1:5555", "tcp://127.0.0.1:" + std::to_string(port_of["5555"]));
      line += " '" + argv[i] + "'";
    }
    return RunShell(line);
  };
  for (auto deadline = std::chrono::steady_clock::now() + 30s;;) {
    const ShellRun alive = probe("livenessProbe");
    if (alive.exit_code == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the liveness probe never passed: " << alive.output;
    std::this_thread::sleep_for(100ms);
  }
  const ShellRun not_ready = probe("readinessProbe");  // no worker yet
  EXPECT_EQ(not_ready.exit_code, 1) << not_ready.output;
  EXPECT_NE(not_ready.output.find("not ready: 0 of 1 replicas ready; replica 0 starting"), std::string::npos)
      << not_ready.output;

  // A StatefulSet's pods, one per rank: its container's command, with the pods'
  // environment (the downward API; OMP_NUM_THREADS: the CPU limit, one thread here), the
  // Service's DNS name and port, and the image's PATH.
  std::vector<ChildProcess> pods;
  auto start_pods = [&](const YAML::Node& statefulset) {
    const std::string name = statefulset["metadata"]["name"].as<std::string>();
    const YAML::Node container = statefulset["spec"]["template"]["spec"]["containers"][0];
    const std::vector<std::string> command = container["command"].as<std::vector<std::string>>();
    const std::vector<std::string> args = container["args"].as<std::vector<std::string>>();
    ASSERT_EQ(args.size(), 1u) << name;
    std::string script = worker_files.Local(args[0]);
    ReplaceAll(script, "tcp://" + service + ":5556",
               "tcp://" + service_address + ":" + std::to_string(port_of["5556"]));
    ReplaceAll(script, "exec flover-worker ", "exec " + testing::WorkerBinary() + " ");
    for (int ordinal = 0; ordinal < statefulset["spec"]["replicas"].as<int>(); ++ordinal) {
      const std::string pod_name = name + "-" + std::to_string(ordinal);
      std::vector<std::string> argv = {"/usr/bin/env", "POD_NAME=" + pod_name, "POD_IP=127.0.0.1", "OMP_NUM_THREADS=1"};
      argv.insert(argv.end(), command.begin(), command.end());
      argv.push_back(script);
      Result<ChildProcess> pod = ChildProcess::Spawn(argv, "pod " + pod_name);
      ASSERT_TRUE(pod.ok()) << pod.status().ToString();
      pods.push_back(std::move(pod).value());
    }
  };
  start_pods(workers_set);
  const std::string client_endpoint = "tcp://127.0.0.1:" + std::to_string(port_of["5555"]);
  ASSERT_TRUE(WaitReady(client_endpoint, testing::ClusterKeys(keys, "root"), 60s));
  const ShellRun ready = probe("readinessProbe");
  EXPECT_EQ(ready.exit_code, 0) << ready.output;
  EXPECT_NE(ready.output.find("ready: 1 of 1 replicas ready"), std::string::npos) << ready.output;
  ExpectServes(client_endpoint, KeyFlags(keys + "/alice.key", keys + "/coordinator.pub"));

  // Scaling replicas as docs/deploy.md says: add-replica.sh 1 (on a copy of the files),
  // parallel.replicas raised in config.yaml, the ConfigMap's new file seen by the pod,
  // the coordinator told (kill -HUP 1 in its container), the new StatefulSet's pods
  // started: both replicas serve.
  const std::string scaled_dir = dir + "/kubernetes-scaled";
  std::filesystem::copy(kubernetes_dir, scaled_dir, std::filesystem::copy_options::recursive);
  const ShellRun added = RunShell("bash " + scaled_dir + "/add-replica.sh 1");
  ASSERT_EQ(added.exit_code, 0) << added.output;
  std::string scaled_config = ReadFile(scaled_dir + "/config.yaml");
  ASSERT_NE(scaled_config.find("parallel: {replicas: 1, tensor: 2}"), std::string::npos);
  ReplaceAll(scaled_config, "parallel: {replicas: 1, tensor: 2}", "parallel: {replicas: 2, tensor: 2}");
  std::ofstream(scaled_dir + "/config.yaml") << scaled_config;
  std::map<std::string, YAML::Node> scaled = KustomizationObjects(scaled_dir);
  ASSERT_TRUE(scaled.count("StatefulSet/flover-replica-1"));
  ASSERT_TRUE(scaled.count("Service/flover-replica-1"));
  std::string scaled_yaml = scaled["ConfigMap/flover-config"]["data"]["cluster.yaml"].as<std::string>();
  for (const auto& [shipped_port, free_port] : port_of)
    ReplaceAll(scaled_yaml, "tcp://*:" + shipped_port, "tcp://*:" + std::to_string(free_port));
  std::ofstream(config) << coordinator_files.Local(scaled_yaml);
  coordinator->Signal(SIGHUP);
  start_pods(scaled["StatefulSet/flover-replica-1"]);
  ASSERT_TRUE(WaitReady(client_endpoint, testing::ClusterKeys(keys, "root"), 60s))
      << "the added replica did not become ready";
  const ShellRun both = probe("readinessProbe");
  EXPECT_EQ(both.exit_code, 0) << both.output;
  EXPECT_NE(both.output.find("ready: 2 of 2 replicas ready"), std::string::npos) << both.output;
  ExpectServes(client_endpoint, KeyFlags(keys + "/alice.key", keys + "/coordinator.pub"));

  coordinator->Signal(SIGTERM);  // a pod's termination
  EXPECT_EQ(WaitExit(*coordinator, 15s), "exit 0");
  for (ChildProcess& pod : pods) EXPECT_EQ(WaitExit(pod, 15s), "exit 0") << pod.name();
}

TEST(DeployTest, KubernetesGpuClusterFileIsValid) {
  // gpu/config.yaml replaces the base's cluster file for GPU workers: valid, secured, a
  // worker on its pod's only GPU for every rank of every replica, ranks as many as each
  // worker StatefulSet's pods, the base's endpoints and key paths.
  const std::string kubernetes_dir = kSourceDir + "/deploy/kubernetes";
  const YAML::Node gpu = YAML::LoadFile(kubernetes_dir + "/gpu/config.yaml");
  ASSERT_EQ(gpu["metadata"]["name"].as<std::string>(""), "flover-config");
  Result<ClusterConfig> config =
      ParseClusterConfig(gpu["data"]["cluster.yaml"].as<std::string>(), "gpu/config.yaml", "/etc/flover");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  std::map<std::string, YAML::Node> base = KustomizationObjects(kubernetes_dir);
  Result<ClusterConfig> cpu = ParseClusterConfig(base["ConfigMap/flover-config"]["data"]["cluster.yaml"].as<std::string>(),
                                                 "config.yaml", "/etc/flover");
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  EXPECT_EQ(config->security.mode, SecurityMode::kCurve);
  EXPECT_EQ(config->security.coordinator_key, cpu->security.coordinator_key);
  EXPECT_EQ(config->security.client_keys, cpu->security.client_keys);
  EXPECT_EQ(config->endpoints.client, cpu->endpoints.client);
  EXPECT_EQ(config->endpoints.control, cpu->endpoints.control);
  EXPECT_EQ(config->endpoints.plans, cpu->endpoints.plans);
  EXPECT_EQ(config->tensor_parallel, base["StatefulSet/flover-replica-0"]["spec"]["replicas"].as<int>());
  ASSERT_EQ(config->workers.size(), static_cast<size_t>(config->replicas * config->tensor_parallel));
  for (const WorkerConfig& w : config->workers) EXPECT_EQ(w.device, "cuda:0") << w.replica << "-" << w.rank;
}

}  // namespace
}  // namespace flover
