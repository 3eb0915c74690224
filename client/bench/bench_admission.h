// ArrivalQueue: when `flover bench` sends each request of a workload. A request is due
// at its arrival time, but at most `max_concurrency` requests are in flight (0 = no
// limit): one that arrives while the limit is reached waits client-side, and the waiting
// ones go out in arrival order as requests in flight end (as vLLM's benchmark does with
// --max-concurrency). Latencies are measured from the send, so a request's client-side
// wait is not counted as the server's.
//
// Thread-safety: a value type; pure logic (times are given, never read).
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

namespace flover {

class ArrivalQueue {
 public:
  // REQUIRES: arrivals_s non-decreasing; max_concurrency >= 0.
  ArrivalQueue(std::vector<double> arrivals_s, int max_concurrency);

  // The indices to send now, in order, given the time since the start of the workload
  // and the requests in flight; they count as sent from here on.
  std::vector<size_t> TakeDue(double now_s, size_t in_flight);
  // Every request not sent yet, due or not (the run gives up on them); they count as sent.
  std::vector<size_t> TakeRest();
  // Seconds from `now_s` to the next arrival still in the future; nullopt when every
  // unsent request has arrived (they wait for a request in flight to end) or all are sent.
  std::optional<double> NextArrivalIn(double now_s) const;

  size_t sent() const { return next_; }
  bool all_sent() const { return next_ == arrivals_.size(); }
  // Arrived and not sent (waiting for the concurrency limit).
  size_t waiting(double now_s) const;

 private:
  std::vector<double> arrivals_;
  size_t limit_;  // 0 = none
  size_t next_ = 0;
};

}  // namespace flover
