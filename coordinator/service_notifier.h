// ServiceNotifier: tells systemd how flover-coordinator is doing, for a unit with
// Type=notify (sd_notify(3), libsystemd): STATUS=<Metrics::Health()'s line> whenever it
// changes ("no replica is ready: replica 0 starting (1 of 2 workers registered, 0
// ready)", `systemctl status` shows it), and READY=1 the first time some replica is
// ready to serve, so that units ordered After= the coordinator start once it can serve.
// Without NOTIFY_SOCKET in the environment (not started by systemd) it does nothing.
// A notification is sent only when the health changes (a few per start or failure);
// sd_notify waits while the socket's queue is full, which systemd, reading it at once,
// never lets happen.
//
// Thread-safety: none; one thread (the coordinator's loop) calls Update().
#pragma once

#include <cstdint>

#include "coordinator/metrics.h"

namespace flover {

class ServiceNotifier {
 public:
  // `metrics` must outlive this notifier.
  explicit ServiceNotifier(const Metrics& metrics);

  // Sends what changed since the last call; cheap when nothing did. Send failures are
  // logged once and otherwise ignored (systemd's readiness timeout reports them).
  void Update();

  bool enabled() const { return enabled_; }

 private:
  const Metrics& metrics_;
  bool enabled_ = false;
  bool ready_sent_ = false;
  bool error_logged_ = false;
  bool first_ = true;
  uint64_t seen_version_ = 0;
};

}  // namespace flover
