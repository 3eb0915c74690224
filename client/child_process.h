// ChildProcess: a program started by LocalCluster (fork + exec), tied to its parent: it
// gets SIGTERM if the parent dies (PR_SET_PDEATHSIG), and the destructor terminates
// and reaps it, so no orphan survives `flover up` or `flover bench` however they end.
// Thread-safety: none.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace flover {

class ChildProcess {
 public:
  // argv[0] is the program path. The child inherits stdout/stderr, or, when
  // `output_file` is set, writes both to that file (created, appended to). With
  // `own_process_group` it leads a process group of its own, so a terminal's Ctrl-C
  // (SIGINT to the foreground group) reaches only the parent, which decides what its
  // children get.
  static Result<ChildProcess> Spawn(const std::vector<std::string>& argv, const std::string& name,
                                    const std::string& output_file = "", bool own_process_group = false);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  bool running() const { return pid_ > 0 && !exit_status_; }

  // Reaps the child if it exited; returns its exit status then ("exit 3", "signal 9").
  std::optional<std::string> PollExit();
  // SIGTERM, wait up to `grace`, then SIGKILL; reaps. Safe to call twice.
  void Stop(std::chrono::milliseconds grace);
  void Signal(int signo);

 private:
  ChildProcess(pid_t pid, std::string name) : pid_(pid), name_(std::move(name)) {}

  pid_t pid_ = -1;
  std::string name_;
  std::optional<std::string> exit_status_;
};

}  // namespace flover
