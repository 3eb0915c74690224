#include "coordinator/latency_window.h"

#include <vector>

namespace flover {

void LatencyWindow::Add(const Sample& sample) {
  samples_.push_back(sample);
  while (samples_.size() > max_samples_) samples_.pop_front();
}

LatencyWindow::Summary LatencyWindow::Summarize(Clock::time_point now) const {
  std::vector<double> queue, first_token, per_token, total;
  for (auto it = samples_.rbegin(); it != samples_.rend() && now - it->done <= window_; ++it) {
    queue.push_back(it->queue_s);
    first_token.push_back(it->first_token_s);
    if (it->per_token_s) per_token.push_back(*it->per_token_s);
    total.push_back(it->total_s);
  }
  Summary s;
  s.requests = total.size();
  s.queue = flover::Summarize(queue);
  s.first_token = flover::Summarize(first_token);
  s.per_token = flover::Summarize(per_token);
  s.total = flover::Summarize(total);
  return s;
}

}  // namespace flover
