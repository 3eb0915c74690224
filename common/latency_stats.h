// Summary statistics of latency samples, shared by `flover bench` (client side) and the
// coordinator's status (server side): mean and percentiles that interpolate linearly
// between order statistics, as numpy's default.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <cstddef>
#include <vector>

namespace flover {

struct LatencyStats {
  size_t n = 0;  // samples; all fields 0 when n == 0
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

// The p-th percentile (0 <= p <= 100) of `values` with linear interpolation; 0 if empty.
double Percentile(std::vector<double> values, double p);
LatencyStats Summarize(const std::vector<double>& values);

}  // namespace flover
