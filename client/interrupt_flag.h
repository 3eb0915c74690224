// InterruptFlag: while one lives, the given signals (Ctrl-C's SIGINT and SIGTERM by
// default) set a flag instead of ending the process; the handlers it replaced come back
// when it is destroyed. Commands poll raised() (RequestSession and LocalCluster take
// predicate() as their `interrupted`); count() tells a second signal from the first
// (`flover up` drains on the first and stops at once on the second). A wait that the
// signal interrupts returns early
// (Client::Receive then gives no message), so the flag is seen at once; other system
// calls restart as with std::signal (SA_RESTART).
//
// At most one lives at a time (CHECKed): the flag is process-wide, as signals are.
// Thread-safety: raised() and predicate()'s function from any thread; construct and
// destroy on one.
#pragma once

#include <csignal>
#include <functional>
#include <initializer_list>
#include <utility>
#include <vector>

namespace flover {

class InterruptFlag {
 public:
  explicit InterruptFlag(std::initializer_list<int> signals = {SIGINT, SIGTERM});
  ~InterruptFlag();
  InterruptFlag(const InterruptFlag&) = delete;
  InterruptFlag& operator=(const InterruptFlag&) = delete;

  // True once one of the signals came.
  bool raised() const;
  // How many of the signals came while this flag lived.
  int count() const;
  // raised() as a function, for the options that take an `interrupted` predicate.
  std::function<bool()> predicate() const;

 private:
  std::vector<std::pair<int, struct sigaction>> saved_;  // signal, its previous action
};

}  // namespace flover
