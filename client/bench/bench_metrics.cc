#include "client/bench/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/check.h"

namespace flover {

double TimeToFirstToken(const RequestTimeline& r) { return r.first_token_s().value_or(*r.done_s) - r.submit_s; }

std::optional<double> TimePerOutputToken(const RequestTimeline& r) {
  if (r.output_tokens < 2) return std::nullopt;
  return (*r.done_s - r.submit_s - TimeToFirstToken(r)) / (r.output_tokens - 1);
}

Goodput ComputeGoodput(const std::vector<RequestTimeline>& requests, const Slo& slo, double overall_latency_s) {
  Goodput g;
  for (const RequestTimeline& r : requests) {
    if (!r.completed()) continue;
    if (slo.ttft_s && TimeToFirstToken(r) > *slo.ttft_s) continue;
    const std::optional<double> tpot = TimePerOutputToken(r);
    if (slo.tpot_s && tpot && *tpot > *slo.tpot_s) continue;
    ++g.n_good;
  }
  if (!requests.empty()) g.share = static_cast<double>(g.n_good) / static_cast<double>(requests.size());
  if (overall_latency_s > 0) g.rate = g.n_good / overall_latency_s;
  return g;
}

BenchMetrics ComputeMetrics(const std::vector<RequestTimeline>& requests, double single_latency_s,
                            const StepCounters& before, const StepCounters& after, const Slo& slo) {
  BenchMetrics m;
  m.n_requests = static_cast<int>(requests.size());
  m.single_latency_s = single_latency_s;
  std::vector<double> ttft, tpot, itl, e2e;
  std::optional<double> first_submit, last_done;
  for (const RequestTimeline& r : requests) {
    first_submit = std::min(first_submit.value_or(r.submit_s), r.submit_s);
    if (!r.completed()) {
      ++m.n_failed;
      continue;
    }
    ++m.n_completed;
    m.output_tokens += r.output_tokens;
    last_done = std::max(last_done.value_or(*r.done_s), *r.done_s);
    const double latency = *r.done_s - r.submit_s;
    e2e.push_back(latency);
    ttft.push_back(TimeToFirstToken(r));
    if (std::optional<double> t = TimePerOutputToken(r)) tpot.push_back(*t);
    for (size_t i = 1; i < r.tokens.size(); ++i) {
      const int k = std::max(1, r.tokens[i].n_tokens);
      const double gap = (r.tokens[i].t_s - r.tokens[i - 1].t_s) / k;
      for (int j = 0; j < k; ++j) itl.push_back(gap);
    }
  }
  if (first_submit && last_done) m.overall_latency_s = *last_done - *first_submit;
  m.ttft = Summarize(ttft);
  m.tpot = Summarize(tpot);
  m.itl = Summarize(itl);
  m.e2e = Summarize(e2e);
  m.avg_latency_s = m.e2e.mean;
  if (single_latency_s > 0 && m.n_completed > 0) m.avg_over_single = m.avg_latency_s / single_latency_s;
  if (m.overall_latency_s > 0) {
    m.request_throughput = m.n_completed / m.overall_latency_s;
    m.output_tokens_per_s = static_cast<double>(m.output_tokens) / m.overall_latency_s;
  }
  if (after.steps > before.steps && after.tokens_generated >= before.tokens_generated)
    m.avg_requests_per_step = static_cast<double>(after.tokens_generated - before.tokens_generated) /
                              static_cast<double>(after.steps - before.steps);
  if (after.steps > before.steps && after.step_compute_seconds >= before.step_compute_seconds)
    m.avg_step_compute_s = (after.step_compute_seconds - before.step_compute_seconds) /
                           static_cast<double>(after.steps - before.steps);
  if (after.steps > before.steps && after.step_wait_seconds >= before.step_wait_seconds)
    m.avg_step_wait_s = (after.step_wait_seconds - before.step_wait_seconds) /
                        static_cast<double>(after.steps - before.steps);
  if (slo.any()) m.goodput = ComputeGoodput(requests, slo, m.overall_latency_s);
  return m;
}

std::vector<std::pair<double, double>> ThroughputOverTime(const std::vector<RequestTimeline>& requests,
                                                          double bin_s) {
  FLOVER_CHECK(bin_s > 0) << bin_s;
  double last = 0;
  for (const RequestTimeline& r : requests)
    for (const TokenArrival& t : r.tokens) last = std::max(last, t.t_s);
  const size_t n_bins = static_cast<size_t>(std::floor(last / bin_s)) + 1;
  std::vector<double> counts(n_bins, 0.0);
  for (const RequestTimeline& r : requests)
    for (const TokenArrival& t : r.tokens)
      counts[std::min(n_bins - 1, static_cast<size_t>(std::max(0.0, t.t_s) / bin_s))] += t.n_tokens;
  std::vector<std::pair<double, double>> series;
  for (size_t i = 0; i < n_bins; ++i) series.emplace_back(static_cast<double>(i) * bin_s, counts[i] / bin_s);
  return series;
}

}  // namespace flover
