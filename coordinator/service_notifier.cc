#include "coordinator/service_notifier.h"

#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <spdlog/spdlog.h>

namespace flover {

ServiceNotifier::ServiceNotifier(const Metrics& metrics) : metrics_(metrics) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
}

void ServiceNotifier::Update() {
  if (!enabled_) return;
  const uint64_t version = metrics_.health_version();
  if (!first_ && version == seen_version_) return;
  first_ = false;
  seen_version_ = version;
  auto [ready, line] = metrics_.Health();
  // A STATUS= value is one line.
  for (char& c : line)
    if (c == '\n') c = ' ';
  std::string message = "STATUS=" + line;
  if (ready && !ready_sent_) message = "READY=1\n" + message;
  const int sent = sd_notify(0, message.c_str());
  if (sent > 0) {
    ready_sent_ = ready_sent_ || ready;
  } else if (!error_logged_) {
    error_logged_ = true;
    spdlog::warn("systemd notification to NOTIFY_SOCKET failed: {}", sent < 0 ? std::strerror(-sent) : "not sent");
  }
}

}  // namespace flover
