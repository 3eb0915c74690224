// LogLimiter: at most `lines` log lines per `period` for one kind of event, so that a
// peer that sends bad messages in a loop cannot fill the disk or slow the daemon with
// its log. The lines it holds back are counted and reported by the next line it lets
// through ("... (1234 more like this suppressed)").
//
//   static LogLimiter bad_frames(10, std::chrono::seconds(1));
//   if (auto more = bad_frames.Allow(now)) spdlog::warn("bad frame{}", SuppressedSuffix(*more));
//
// Time comes from the caller, so the coordinator core (simulated time in tests) and the
// sockets' shells use it alike.
//
// Thread-safety: none; one thread uses a limiter.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace flover {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  LogLimiter(int lines, Clock::duration period) : lines_(lines), period_(period) {}

  // A line may be logged now: returns how many were suppressed since the last line that
  // was let through. nullopt: suppress this one (it is counted).
  std::optional<uint64_t> Allow(Clock::time_point now);

  // Lines suppressed since the last one let through.
  uint64_t suppressed() const { return suppressed_; }

 private:
  const int lines_;
  const Clock::duration period_;
  Clock::time_point window_start_{};
  int in_window_ = 0;
  uint64_t suppressed_ = 0;
};

// "" for 0, else " (n more like this suppressed)".
std::string SuppressedSuffix(uint64_t suppressed);

}  // namespace flover
