// LatencyWindow: the latencies of the requests that finished (stop or length) during
// the last `window`, for ClusterStatus.latency: what an operator watches (time to the
// first token, time per output token, end to end, and queueing) without a client-side
// benchmark. At most `max_samples` recent requests are kept, so the cost is bounded
// under any load.
//
// Time comes in as parameters (the coordinator owns the clock).
// Thread-safety: none; owned by the coordinator's event loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>

#include "common/latency_stats.h"

namespace flover {

class LatencyWindow {
 public:
  using Clock = std::chrono::steady_clock;

  struct Sample {
    Clock::time_point done;
    double queue_s = 0;                 // submit -> first step
    double first_token_s = 0;           // submit -> first token
    std::optional<double> per_token_s;  // (total - first token) / (tokens - 1); none below 2 tokens
    double total_s = 0;                 // submit -> done
  };

  struct Summary {
    size_t requests = 0;
    LatencyStats queue, first_token, per_token, total;
  };

  explicit LatencyWindow(Clock::duration window = std::chrono::seconds(60), size_t max_samples = 10000)
      : window_(window), max_samples_(max_samples) {}

  void Add(const Sample& sample);
  // The samples of the last `window` before `now`.
  Summary Summarize(Clock::time_point now) const;
  Clock::duration window() const { return window_; }

 private:
  Clock::duration window_;
  size_t max_samples_;
  std::deque<Sample> samples_;  // in order of completion
};

}  // namespace flover
