// See log_limiter.h.
#include "common/log_limiter.h"

namespace flover {

std::optional<uint64_t> LogLimiter::Allow(Clock::time_point now) {
  if (in_window_ == 0 || now - window_start_ >= period_) {
    window_start_ = now;
    in_window_ = 0;
  }
  if (in_window_ >= lines_) {
    ++suppressed_;
    return std::nullopt;
  }
  ++in_window_;
  const uint64_t held_back = suppressed_;
  suppressed_ = 0;
  return held_back;
}

std::string SuppressedSuffix(uint64_t suppressed) {
  if (suppressed == 0) return "";
  return " (" + std::to_string(suppressed) + " more like this suppressed)";
}

}  // namespace flover
