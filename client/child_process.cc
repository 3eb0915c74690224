#include "client/child_process.h"

#include <fcntl.h>

#include <csignal>
#include <cstring>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace flover {
namespace {

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

Result<ChildProcess> ChildProcess::Spawn(const std::vector<std::string>& argv, const std::string& name,
                                         const std::string& output_file, bool own_process_group) {
  if (argv.empty()) return InvalidArgument("no program to start for " + name);
  if (access(argv[0].c_str(), X_OK) != 0) return NotFound(name + ": cannot execute " + argv[0]);
  int output_fd = -1;  // opened here: only async-signal-safe calls between fork and exec
  if (!output_file.empty()) {
    output_fd = open(output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (output_fd < 0) return IoError(name + ": cannot open " + output_file + ": " + std::strerror(errno));
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  const int fork_errno = errno;
  if (pid != 0 && output_fd >= 0) close(output_fd);  // the child has its copy
  if (pid < 0) return IoError(name + ": fork failed: " + std::strerror(fork_errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    if (own_process_group && setpgid(0, 0) != 0) _exit(127);
    if (output_fd >= 0 && (dup2(output_fd, STDOUT_FILENO) < 0 || dup2(output_fd, STDERR_FILENO) < 0)) _exit(127);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv(args[0], args.data());
    std::fprintf(stderr, "%s: exec %s failed: %s\n", name.c_str(), args[0], std::strerror(errno));
    _exit(127);
  }
  return ChildProcess(pid, name);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_), name_(std::move(other.name_)), exit_status_(std::move(other.exit_status_)) {
  other.pid_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    Stop(std::chrono::milliseconds(2000));
    pid_ = other.pid_;
    name_ = std::move(other.name_);
    exit_status_ = std::move(other.exit_status_);
    other.pid_ = -1;
  }
  return *this;
}

ChildProcess::~ChildProcess() { Stop(std::chrono::milliseconds(2000)); }

std::optional<std::string> ChildProcess::PollExit() {
  if (pid_ <= 0 || exit_status_) return exit_status_;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) exit_status_ = DescribeWaitStatus(status);
  return exit_status_;
}

void ChildProcess::Signal(int signo) {
  if (running()) kill(pid_, signo);
}

void ChildProcess::Stop(std::chrono::milliseconds grace) {
  if (!running()) return;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (PollExit()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) exit_status_ = DescribeWaitStatus(status);
}

}  // namespace flover
