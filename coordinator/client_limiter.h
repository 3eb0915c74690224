// ClientLimiter: what the coordinator remembers of each client connection to hold it to
// the config's limits (docs/limits.md): how many status requests it sent in the current
// second (at most limits.status_per_client_per_second are answered), and whether it was
// cut off for not reading its replies (so that a connection that goes on not reading is
// counted once, not at every reply that finds its queue full).
//
// Memory: one small entry per connection that asked for status within the last second
// or was cut off within kRememberCutOff; Prune() drops the others, so the table is
// bounded by the connections active lately, never by the messages they send.
//
// Time comes from the caller (simulated in tests). Thread-safety: none; the
// coordinator's loop owns it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace flover {

// The peer id of the coordinator's own HTTP server: this prefix and the routing id of
// its in-process DEALER (TCP clients' ids cannot start with a 0 byte, so they never
// collide). The HTTP server holds its connections to limits of its own (http.*), so such
// a peer is exempt from the per-connection ones (max_requests_per_client, the status
// rate, max_undelivered_per_client); the global ones (max_queued) still apply.
inline constexpr std::string_view kHttpPeerPrefix{"\0http:", 6};
inline bool IsHttpPeer(std::string_view identity) { return identity.substr(0, kHttpPeerPrefix.size()) == kHttpPeerPrefix; }

class ClientLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kStatusWindow = std::chrono::seconds(1);
  static constexpr auto kRememberCutOff = std::chrono::seconds(60);

  // REQUIRES: status_per_second >= 1.
  explicit ClientLimiter(int status_per_second) : status_per_second_(status_per_second) {}

  // A status request of `client` at `now`: true when it may be answered (it is counted),
  // false when the client already had status_per_second of them in the current window.
  bool AllowStatus(const std::string& client, Clock::time_point now);

  // `client` does not read its replies: true the first time (it was not cut off within
  // kRememberCutOff), false when it already was.
  bool CutOff(const std::string& client, Clock::time_point now);

  // Drops what no longer matters at `now`: finished status windows, old cut-offs.
  void Prune(Clock::time_point now);

  size_t size() const { return clients_.size(); }

 private:
  struct Entry {
    Clock::time_point status_window{};  // start of the current window
    int n_status = 0;                   // status requests in it
    std::optional<Clock::time_point> cut_off;
  };

  const int status_per_second_;
  std::unordered_map<std::string, Entry> clients_;
};

}  // namespace flover
