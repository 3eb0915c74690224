// Runs the real flover-coordinator binary: endpoints file, a status round trip, clean
// exit on SIGTERM, exit 2 on a bad config. Always reaps the process it started.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/protocol.h"
#include "coordinator/endpoints_file.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/coordinator_main_test_" + std::to_string(::getpid()) + "_" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A started flover-coordinator; killed (SIGKILL) and reaped if the test did not wait.
class Daemon {
 public:
  Daemon(std::vector<std::string> args, const std::string& stderr_path) : args_(std::move(args)) {
    // Everything the child needs is prepared before fork: it only calls async-signal-safe
    // functions.
    args_.insert(args_.begin(), FLOVER_COORDINATOR_BIN);
    std::vector<char*> argv;
    for (std::string& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) ::dup2(fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // Exit code, or -1 if it did not exit within `timeout` (or died of a signal).
  int Wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  std::vector<std::string> args_;
  pid_t pid_ = -1;
};

TEST(CoordinatorMainTest, WritesEndpointsServesStatusAndStopsOnSigterm) {
  const std::string config = TempPath("ok.yaml");
  const std::string endpoints_file = TempPath("endpoints.json");
  const std::string err = TempPath("stderr.txt");
  std::filesystem::remove(endpoints_file);
  std::ofstream(config) << "cluster: {name: main-test}\n"
                           "endpoints: {control: 'tcp://127.0.0.1:*'}\n"
                           "model: {path: 'dummy:test'}\n";
  Daemon daemon({"--config", config, "--endpoints-file", endpoints_file, "--log-level", "warn"}, err);
  ASSERT_GT(daemon.pid(), 0);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!std::filesystem::exists(endpoints_file) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  Result<EndpointsConfig> endpoints = ReadEndpointsFile(endpoints_file);
  ASSERT_TRUE(endpoints.ok()) << endpoints.status().ToString() << "\n" << ReadFile(err);
  EXPECT_EQ(endpoints->client.rfind("tcp://127.0.0.1:", 0), 0u);
  EXPECT_EQ(endpoints->control.find('*'), std::string::npos);

  zmq::context_t context;
  zmq::socket_t client(context, zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.set(zmq::sockopt::rcvtimeo, 5000);
  client.connect(endpoints->client);
  proto::ClientMessage status;
  status.mutable_status();
  client.send(zmq::buffer(Serialize(status)), zmq::send_flags::none);
  zmq::message_t reply;
  ASSERT_TRUE(client.recv(reply).has_value());
  Result<proto::ServerMessage> m = Parse<proto::ServerMessage>(reply.to_string_view());
  ASSERT_TRUE(m.ok() && m->has_status());
  EXPECT_EQ(m->status().name(), "main-test");
  EXPECT_EQ(m->status().replicas(0).state(), "starting");

  ASSERT_EQ(::kill(daemon.pid(), SIGTERM), 0);
  EXPECT_EQ(daemon.Wait(5s), 0) << ReadFile(err);
}

TEST(CoordinatorMainTest, BadConfigExitsTwoWithTheReason) {
  const std::string config = TempPath("bad.yaml");
  const std::string err = TempPath("bad_stderr.txt");
  std::ofstream(config) << "cluster: {name: x}\nendpoints: {control: 'tcp://127.0.0.1:*'}\nmodel: {path: m}\n"
                           "scheduler: {policy: fast}\n";
  Daemon daemon({"--config", config}, err);
  EXPECT_EQ(daemon.Wait(5s), 2);
  EXPECT_NE(ReadFile(err).find("scheduler.policy"), std::string::npos) << ReadFile(err);

  Daemon missing({"--config", TempPath("does_not_exist.yaml")}, err);
  EXPECT_EQ(missing.Wait(5s), 2);
  EXPECT_NE(ReadFile(err).find("not found"), std::string::npos) << ReadFile(err);
}

// The start-up rule: plain text only on loopback, unless the config says otherwise.
TEST(CoordinatorMainTest, NonLoopbackEndpointWithoutSecurityExitsTwoNamingTheFix) {
  const std::string config = TempPath("exposed.yaml");
  const std::string err = TempPath("exposed_stderr.txt");
  std::ofstream(config)
      << "endpoints: {client: 'tcp://*:*', control: 'tcp://127.0.0.1:*'}\nmodel: {path: 'dummy:test'}\n";
  Daemon daemon({"--config", config}, err);
  EXPECT_EQ(daemon.Wait(30s), 2);
  EXPECT_NE(ReadFile(err).find("endpoints.client: 'tcp://*:*' binds a non-loopback address and the config has no "
                               "security section: add a security section (docs/security.md) or bind 127.0.0.1"),
            std::string::npos)
      << ReadFile(err);
}

// SIGHUP reloads keys (docs/security.md) and the cluster file (docs/deploy.md): it never
// stops the daemon, whatever the mode.
TEST(CoordinatorMainTest, SighupDoesNotStopIt) {
  const std::string config = TempPath("hup.yaml");
  const std::string endpoints_file = TempPath("hup_endpoints.json");
  const std::string err = TempPath("hup_stderr.txt");
  std::filesystem::remove(endpoints_file);
  std::ofstream(config) << "endpoints: {control: 'tcp://127.0.0.1:*'}\nmodel: {path: 'dummy:test'}\n";
  Daemon daemon({"--config", config, "--endpoints-file", endpoints_file}, err);
  ASSERT_GT(daemon.pid(), 0);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!std::filesystem::exists(endpoints_file) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(std::filesystem::exists(endpoints_file)) << ReadFile(err);
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  for (auto until = std::chrono::steady_clock::now() + 30s; ReadFile(err).find("reload:") == std::string::npos;) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "no reload logged: " << ReadFile(err);
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(ReadFile(err).find("no keys to read again"), std::string::npos) << ReadFile(err);
  // The cluster file, read again unchanged, is the next generation.
  for (auto until = std::chrono::steady_clock::now() + 30s;
       ReadFile(err).find("config generation 2") == std::string::npos;) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "no config reload logged: " << ReadFile(err);
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(ReadFile(err).find("no change"), std::string::npos) << ReadFile(err);
  ASSERT_EQ(::kill(daemon.pid(), SIGTERM), 0);
  EXPECT_EQ(daemon.Wait(30s), 0) << ReadFile(err);
}

TEST(EndpointsFileTest, RoundTripsAndLeavesNoTemporaryFile) {
  const std::string path = TempPath("roundtrip.json");
  EndpointsConfig e;
  e.client = "tcp://127.0.0.1:1";
  e.control = "tcp://127.0.0.1:2";
  e.plans = "inproc://plans";
  ASSERT_TRUE(WriteEndpointsFile(path, e).ok());
  Result<EndpointsConfig> read = ReadEndpointsFile(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(*read == e);
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
    EXPECT_EQ(entry.path().string().find(path + ".tmp"), std::string::npos) << entry.path();
  EXPECT_FALSE(WriteEndpointsFile("/nonexistent-dir/x.json", e).ok());
  std::ofstream(path) << "{\"client\": 1}";
  EXPECT_EQ(ReadEndpointsFile(path).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace flover
