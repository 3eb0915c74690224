#include "client/bench/bench_report.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "client/child_process.h"

namespace flover {
namespace {

namespace fs = std::filesystem;

std::string Fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

const BenchRun* FindOk(const std::vector<BenchRun>& runs, const std::string& policy) {
  for (const BenchRun& r : runs)
    if (r.policy == policy && r.error.empty()) return &r;
  return nullptr;
}

nlohmann::json StatsJson(const LatencyStats& s) {
  return {{"n", s.n}, {"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}};
}

nlohmann::json OptionalJson(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

nlohmann::json TimelineJson(const RequestTimeline& r) {
  nlohmann::json j;
  j["index"] = r.index;
  j["arrival_s"] = r.arrival_s;
  j["submit_s"] = r.submit_s;
  j["accepted_s"] = OptionalJson(r.accepted_s);
  j["queue_s"] = OptionalJson(r.server_queue_s);
  j["first_token_s"] = OptionalJson(r.first_token_s());
  j["done_s"] = OptionalJson(r.done_s);
  j["prompt_tokens"] = r.prompt_tokens;
  j["output_tokens"] = r.output_tokens;
  j["finish_reason"] = r.finish_reason;
  if (!r.error.empty()) j["error"] = r.error;
  nlohmann::json times = nlohmann::json::array();
  for (const TokenArrival& t : r.tokens)
    for (int k = 0; k < std::max(1, t.n_tokens); ++k) times.push_back(t.t_s);
  j["token_times_s"] = std::move(times);
  return j;
}

// A gnuplot single-quoted string.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// The phases of a request for the plot: submit, end of queueing, first token, done.
struct Phases {
  double submit, queued_until, first_token, done;
};

Phases PhasesOf(const RequestTimeline& r) {
  Phases p;
  p.submit = r.submit_s;
  p.done = r.done_s.value_or(r.submit_s);
  p.first_token = std::clamp(r.first_token_s().value_or(p.done), p.submit, p.done);
  // The coordinator's queue time (submit -> first step) is the best estimate of when the
  // request started to run; Accepted is sent at admission, before that.
  const double queued = r.server_queue_s ? p.submit + *r.server_queue_s : r.accepted_s.value_or(p.submit);
  p.queued_until = std::clamp(queued, p.submit, p.first_token);
  return p;
}

Status RunGnuplot(const std::string& gnuplot, const fs::path& dir, const fs::path& script) {
  const fs::path log = dir / "gnuplot.log";
  FLOVER_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::Spawn({gnuplot, script.string()}, "gnuplot", log.string()));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::optional<std::string> exit;
  while (!(exit = child.PollExit())) {
    if (std::chrono::steady_clock::now() > deadline) return Unavailable("gnuplot did not finish in 120 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (*exit != "exit 0") {
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    return Internal("gnuplot failed (" + *exit + "): " + text.str());
  }
  return Status::Ok();
}

}  // namespace

std::string FormatResultsTable(const std::vector<BenchRun>& runs) {
  const BenchRun* fused = FindOk(runs, "fused");
  const bool speedups = fused != nullptr && runs.size() >= 2 && fused->metrics.overall_latency_s > 0;
  std::vector<std::string> header = {"policy",     "done",      "failed",     "overall s", "single s",
                                     "avg s",      "avg/single", "req/s",     "tok/s",     "TTFT p50 ms",
                                     "TTFT p99 ms", "TPOT ms",   "ITL p99 ms", "e2e p99 s", "req/step",
                                     "step ms",     "wait ms"};
  bool goodput = false;
  for (const BenchRun& r : runs) goodput = goodput || r.slo.any();
  if (goodput) header.insert(header.end(), {"goodput %", "good req/s"});
  if (speedups) header.insert(header.end(), {"fused speed-up", "fused avg speed-up"});
  std::vector<std::vector<std::string>> rows;
  for (const BenchRun& r : runs) {
    std::vector<std::string> row = {r.policy};
    if (!r.error.empty()) {
      row.push_back("FAILED");
      row.resize(header.size(), "-");
      rows.push_back(row);
      continue;
    }
    const BenchMetrics& m = r.metrics;
    row.insert(row.end(), {std::to_string(m.n_completed), std::to_string(m.n_failed), Fixed(m.overall_latency_s, 3),
                           Fixed(m.single_latency_s, 3), Fixed(m.avg_latency_s, 3), Fixed(m.avg_over_single, 2),
                           Fixed(m.request_throughput, 2), Fixed(m.output_tokens_per_s, 1),
                           Fixed(m.ttft.p50 * 1e3, 1), Fixed(m.ttft.p99 * 1e3, 1), Fixed(m.tpot.mean * 1e3, 2),
                           Fixed(m.itl.p99 * 1e3, 2), Fixed(m.e2e.p99, 3),
                           r.has_step_counters ? Fixed(m.avg_requests_per_step, 2) : "-",
                           r.has_step_counters ? Fixed(m.avg_step_compute_s * 1e3, 2) : "-",
                           r.has_step_counters ? Fixed(m.avg_step_wait_s * 1e3, 2) : "-"});
    if (goodput) {
      row.push_back(m.goodput ? Fixed(m.goodput->share * 100, 1) : "-");
      row.push_back(m.goodput ? Fixed(m.goodput->rate, 2) : "-");
    }
    if (speedups) {
      const BenchMetrics& f = fused->metrics;
      const bool comparable = m.n_completed > 0;
      row.push_back(comparable ? Fixed(m.overall_latency_s / f.overall_latency_s, 2) + "x" : "-");
      row.push_back(comparable && f.avg_latency_s > 0 ? Fixed(m.avg_latency_s / f.avg_latency_s, 2) + "x" : "-");
    }
    rows.push_back(row);
  }
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  auto add_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += c == 0 ? row[c] + pad : "  " + pad + row[c];  // policy left, numbers right
    }
    out += line + "\n";
  };
  add_row(header);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  add_row(rule);
  for (const auto& row : rows) add_row(row);
  for (const BenchRun& r : runs)
    if (!r.error.empty()) out += r.policy + ": " + r.error + "\n";
  if (speedups)
    out += "fused speed-up: this policy's overall latency (first arrival -> last completion) / fused's; "
           "avg: mean end-to-end latency / fused's\n";
  out += "step ms: the workers' own compute per step; wait ms: their wait for the next plan of a running request "
         "per step (coordination: plans, results, queueing; TPOT ~ step + wait)\n";
  for (const BenchRun& r : runs) {
    if (!r.slo.any()) continue;
    out += "goodput: requests with TTFT <= " + (r.slo.ttft_s ? Fixed(*r.slo.ttft_s * 1e3, 1) + " ms" : "any") +
           " and TPOT <= " + (r.slo.tpot_s ? Fixed(*r.slo.tpot_s * 1e3, 1) + " ms" : "any") +
           ", as a share of all requests and per second of the run\n";
    break;
  }
  return out;
}

nlohmann::json RunToJson(const BenchRun& run) {
  const WorkloadSpec& w = run.workload;
  const BenchMetrics& m = run.metrics;
  nlohmann::json j;
  j["policy"] = run.policy;
  j["api"] = run.api;
  if (!run.error.empty()) j["error"] = run.error;
  j["model"] = run.model;
  nlohmann::json workload = {{"requests", w.n_requests},
                             {"arrival", w.arrival == ArrivalProcess::kPoisson ? "poisson" : "fixed"},
                             {"interval_ms", w.interval_ms},
                             {"seed", w.seed},
                             {"output_len_min", w.output_min},
                             {"output_len_max", w.output_max},
                             {"ignore_eos", run.ignore_eos},
                             {"max_concurrency", run.max_concurrency}};
  if (w.arrival == ArrivalProcess::kPoisson && w.interval_ms > 0) workload["rate"] = 1000.0 / w.interval_ms;
  if (w.prompt_text.empty()) {
    if (w.prompt_min == w.prompt_max) workload["prompt_len"] = w.prompt_min;
    workload["prompt_len_min"] = w.prompt_min;
    workload["prompt_len_max"] = w.prompt_max;
    workload["vocab_size"] = w.vocab_size;
  } else {
    workload["prompt"] = w.prompt_text;
  }
  j["workload"] = std::move(workload);
  j["requests_total"] = m.n_requests;
  j["completed"] = m.n_completed;
  j["failed"] = m.n_failed;
  j["overall_latency_s"] = m.overall_latency_s;
  j["single_latency_s"] = m.single_latency_s;
  j["avg_latency_s"] = m.avg_latency_s;
  j["avg_over_single"] = m.avg_over_single;
  j["request_throughput"] = m.request_throughput;
  j["output_tokens"] = m.output_tokens;
  j["output_tokens_per_s"] = m.output_tokens_per_s;
  j["ttft_s"] = StatsJson(m.ttft);
  j["tpot_s"] = StatsJson(m.tpot);
  j["itl_s"] = StatsJson(m.itl);
  j["e2e_s"] = StatsJson(m.e2e);
  if (m.goodput) {
    j["goodput"] = {{"slo_ttft_s", OptionalJson(run.slo.ttft_s)},
                    {"slo_tpot_s", OptionalJson(run.slo.tpot_s)},
                    {"good_requests", m.goodput->n_good},
                    {"share", m.goodput->share},
                    {"request_rate", m.goodput->rate}};
  }
  if (run.has_step_counters) {  // the native API's cluster status; an HTTP server has none
    j["avg_requests_per_step"] = m.avg_requests_per_step;
    j["avg_step_compute_s"] = m.avg_step_compute_s;
    j["avg_step_wait_s"] = m.avg_step_wait_s;
    j["steps"] = run.steps_after.steps - std::min(run.steps_after.steps, run.steps_before.steps);
    j["tokens_generated"] = run.steps_after.tokens_generated -
                            std::min(run.steps_after.tokens_generated, run.steps_before.tokens_generated);
  }
  j["single"] = run.single.done_s ? TimelineJson(run.single) : nlohmann::json();
  nlohmann::json requests = nlohmann::json::array();
  for (const RequestTimeline& r : run.requests) requests.push_back(TimelineJson(r));
  j["requests"] = std::move(requests);
  return j;
}

Result<std::string> FindGnuplot() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / "gnuplot";
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return NotFound("--plot needs gnuplot, which is not installed (Debian: apt-get install gnuplot-nox)");
}

Status WritePlot(const std::vector<BenchRun>& runs, const std::string& png_path) {
  FLOVER_ASSIGN_OR_RETURN(std::string gnuplot, FindGnuplot());
  std::vector<const BenchRun*> ok;
  for (const BenchRun& r : runs)
    if (r.error.empty() && !r.requests.empty()) ok.push_back(&r);
  if (ok.empty()) return InvalidArgument("--plot: no run completed, nothing to draw");

  char dir_template[] = "/tmp/flover-plot-XXXXXX";
  if (!mkdtemp(dir_template)) return IoError("cannot create a temporary folder in /tmp");
  const fs::path dir(dir_template);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};

  double x_max = 0;
  size_t max_requests = 0;
  for (const BenchRun* r : ok) {
    max_requests = std::max(max_requests, r->requests.size());
    for (const RequestTimeline& t : r->requests) x_max = std::max(x_max, PhasesOf(t).done);
  }
  x_max = std::max(x_max * 1.02, 1e-3);
  const double bin_s = std::max(x_max / 60, 1e-3);

  std::ostringstream gp;
  const int height = 120 + static_cast<int>(ok.size()) * std::clamp(80 + static_cast<int>(max_requests) * 6, 220, 600) + 260;
  gp << "set terminal pngcairo noenhanced size 1280," << height << " font 'sans,10'\n"
     << "set output " << Quote(png_path) << "\n"
     << "set multiplot layout " << ok.size() + 1 << ",1 title "
     << Quote("flover bench: " + ok.front()->model + ", " + std::to_string(ok.front()->workload.n_requests) +
              " requests") << "\n"
     << "set style fill solid 1.0 noborder\n"
     << "set key outside right top\n"
     << "set grid xtics\n"
     << "set xrange [0:" << x_max << "]\n"
     << "set xlabel 'seconds since the first arrival'\n";
  for (size_t k = 0; k < ok.size(); ++k) {
    const BenchRun& run = *ok[k];
    const fs::path data = dir / ("timeline" + std::to_string(k) + ".dat");
    const fs::path failed = dir / ("failed" + std::to_string(k) + ".dat");
    std::ofstream d(data), f(failed);
    bool any_ok = false, any_failed = false;
    for (const RequestTimeline& t : run.requests) {
      const Phases p = PhasesOf(t);
      if (t.completed()) {
        d << t.index << " " << p.submit << " " << p.queued_until << " " << p.first_token << " " << p.done << "\n";
        any_ok = true;
      } else {
        f << t.index << " " << p.submit << " " << p.done << "\n";
        any_failed = true;
      }
    }
    d.close();
    f.close();
    const BenchMetrics& m = run.metrics;
    gp << "set title " << Quote(run.policy + ": overall " + Fixed(m.overall_latency_s, 3) + " s, avg latency " +
                                Fixed(m.avg_latency_s, 3) + " s (" + Fixed(m.avg_over_single, 2) + "x single), " +
                                Fixed(m.output_tokens_per_s, 1) + " tok/s, " +
                                Fixed(m.avg_requests_per_step, 2) + " requests/step")
       << "\n"
       << "set ylabel 'request'\n"
       << "set ytics " << std::max<size_t>(1, (run.requests.size() + 9) / 10) << "\n"
       << "set yrange [" << run.requests.size() << "-0.5:-0.5]\n";
    std::vector<std::string> plots;
    const std::string box = ":($1-0.4):($1+0.4) with boxxyerror";
    if (any_ok) {
      plots.push_back(Quote(data.string()) + " using (($2+$3)/2):1:2:3" + box + " lc rgb '#b0b0b0' title 'queued'");
      plots.push_back("'' using (($3+$4)/2):1:3:4" + box + " lc rgb '#f0a030' title 'prefill'");
      plots.push_back("'' using (($4+$5)/2):1:4:5" + box + " lc rgb '#3070c0' title 'decode'");
    }
    if (any_failed)
      plots.push_back(Quote(failed.string()) + " using (($2+$3)/2):1:2:3" + box + " lc rgb '#d02020' title 'failed'");
    gp << "plot ";
    for (size_t i = 0; i < plots.size(); ++i) gp << (i ? ", \\\n     " : "") << plots[i];
    gp << "\n";
  }
  gp << "set title 'output tokens/s (bins of " << Fixed(bin_s * 1e3, 1) << " ms)'\n"
     << "set ylabel 'tokens/s'\n"
     << "set yrange [0:*]\n"
     << "set ytics autofreq\n"
     << "plot ";
  for (size_t k = 0; k < ok.size(); ++k) {
    const fs::path data = dir / ("throughput" + std::to_string(k) + ".dat");
    std::ofstream t(data);
    double end = 0;
    for (const auto& [start, rate] : ThroughputOverTime(ok[k]->requests, bin_s)) {
      t << start << " " << rate << "\n";
      end = start + bin_s;
    }
    t << end << " 0\n";  // `steps` holds a value up to the next point: close the last bin
    gp << (k ? ", \\\n     " : "") << Quote(data.string()) << " using 1:2 with steps lw 2 title " << Quote(ok[k]->policy);
  }
  gp << "\nunset multiplot\n";
  const fs::path script = dir / "plot.gp";
  std::ofstream(script) << gp.str();
  FLOVER_RETURN_IF_ERROR(RunGnuplot(gnuplot, dir, script));
  if (!fs::exists(png_path)) return IoError("gnuplot did not write " + png_path);
  return Status::Ok();
}

}  // namespace flover
