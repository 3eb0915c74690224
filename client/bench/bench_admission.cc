#include "client/bench/bench_admission.h"

#include "common/check.h"

namespace flover {

ArrivalQueue::ArrivalQueue(std::vector<double> arrivals_s, int max_concurrency)
    : arrivals_(std::move(arrivals_s)), limit_(static_cast<size_t>(max_concurrency)) {
  FLOVER_CHECK(max_concurrency >= 0) << max_concurrency;
  for (size_t i = 1; i < arrivals_.size(); ++i) FLOVER_CHECK(arrivals_[i - 1] <= arrivals_[i]) << i;
}

std::vector<size_t> ArrivalQueue::TakeDue(double now_s, size_t in_flight) {
  std::vector<size_t> due;
  while (next_ < arrivals_.size() && arrivals_[next_] <= now_s && (limit_ == 0 || in_flight < limit_)) {
    due.push_back(next_++);
    ++in_flight;
  }
  return due;
}

std::vector<size_t> ArrivalQueue::TakeRest() {
  std::vector<size_t> rest;
  while (next_ < arrivals_.size()) rest.push_back(next_++);
  return rest;
}

std::optional<double> ArrivalQueue::NextArrivalIn(double now_s) const {
  for (size_t i = next_; i < arrivals_.size(); ++i)
    if (arrivals_[i] > now_s) return arrivals_[i] - now_s;
  return std::nullopt;
}

size_t ArrivalQueue::waiting(double now_s) const {
  size_t n = 0;
  for (size_t i = next_; i < arrivals_.size() && arrivals_[i] <= now_s; ++i) ++n;
  return n;
}

}  // namespace flover
