#include "client/bench/bench_command.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "client/bench/bench_report.h"
#include "client/bench/bench_runner.h"
#include "client/bench/native_backend.h"
#include "client/bench/openai_backend.h"
#include "client/interrupt_flag.h"
#include "client/local_cluster.h"
#include "common/cluster_config.h"
#include "common/cluster_config_reader.h"
#include "common/cluster_config_writer.h"

namespace flover {
namespace {

namespace fs = std::filesystem;

constexpr char kDefaultEndpoint[] = "tcp://127.0.0.1:5555";

int Usage(const std::string& message) {
  std::fprintf(stderr, "flover bench: %s\n", message.c_str());
  return 2;
}

// The workload flags as a spec (vocab_size is left to the cluster).
Status BuildWorkload(const BenchOptions& o, WorkloadSpec* w) {
  w->n_requests = o.requests;
  w->seed = o.seed;
  w->prompt_text = o.prompt;
  w->vocab_size = o.vocab_size;
  FLOVER_RETURN_IF_ERROR(ParseLengthRange("--prompt-len", o.prompt_len, &w->prompt_min, &w->prompt_max));
  FLOVER_RETURN_IF_ERROR(ParseOutputLen(o.output_len, &w->output_min, &w->output_max));
  if (int(o.interval_ms.has_value()) + int(o.rate.has_value()) + int(o.mean_interval_ms.has_value()) > 1)
    return InvalidArgument("give one of --interval-ms, --rate and --mean-interval-ms");
  if (o.rate) {
    if (!(*o.rate > 0)) return InvalidArgument("--rate: " + std::to_string(*o.rate) + " requests/s must be > 0");
    w->arrival = ArrivalProcess::kPoisson;
    w->interval_ms = 1000.0 / *o.rate;
  } else if (o.mean_interval_ms) {
    if (!(*o.mean_interval_ms > 0))
      return InvalidArgument("--mean-interval-ms: " + std::to_string(*o.mean_interval_ms) + " must be > 0");
    w->arrival = ArrivalProcess::kPoisson;
    w->interval_ms = *o.mean_interval_ms;
  } else {
    w->arrival = ArrivalProcess::kFixedInterval;
    w->interval_ms = o.interval_ms.value_or(0);
  }
  return ValidateWorkload(*w);  // vocab_size 0: checked once the cluster says
}

Status CheckRunFlags(const BenchOptions& o) {
  if (o.max_concurrency < 0)
    return InvalidArgument("--max-concurrency: " + std::to_string(o.max_concurrency) + " must be >= 0 (0 = no limit)");
  if (o.vocab_size < 0) return InvalidArgument("--vocab-size: " + std::to_string(o.vocab_size) + " must be > 0");
  for (const auto& [flag, value] : {std::pair{"--slo-ttft-ms", o.slo_ttft_ms}, std::pair{"--slo-tpot-ms", o.slo_tpot_ms}})
    if (value && !(*value > 0 && std::isfinite(*value)))
      return InvalidArgument(std::string(flag) + ": " + std::to_string(*value) + " ms must be > 0");
  if (o.api != "native" && o.api != "openai") return InvalidArgument("--api " + o.api + ": native or openai");
  if (o.api == "openai") {
    if (!o.config.empty())
      return InvalidArgument("--api openai measures a running server: give --endpoint http://HOST:PORT, not --config");
    if (o.endpoint.empty()) return InvalidArgument("--api openai needs --endpoint http://HOST:PORT");
    if (!o.keys.key.empty() || !o.keys.server_key.empty())
      return InvalidArgument("--key and --server-key are CURVE keys of the native API; an OpenAI server's key "
                             "goes in $OPENAI_API_KEY");
    if (!o.tokenizer.empty()) return InvalidArgument("--tokenizer needs --config");
    if (Result<HttpEndpoint> e = ParseServerUrl(o.endpoint); !e.ok()) return e.status();
  } else if (o.endpoint.rfind("http", 0) == 0) {
    return InvalidArgument("--endpoint " + o.endpoint + " is an HTTP server: add --api openai (the native API is "
                           "the coordinator's tcp:// client endpoint)");
  }
  return Status::Ok();
}

// "tcp://host:5555" -> "tcp://host:*"; other transports unchanged.
std::string AnyPort(const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) != 0) return endpoint;
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon < 6) return endpoint;
  return endpoint.substr(0, colon + 1) + "*";
}

std::string AbsolutePath(const std::string& path) {
  if (path.empty() || path.rfind("dummy:", 0) == 0) return path;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

// The config every policy's cluster starts from.
Result<ClusterConfig> BaseConfig(const BenchOptions& o) {
  FLOVER_ASSIGN_OR_RETURN(ClusterConfig config, LoadClusterConfig(o.config));
  for (const WorkerConfig& w : config.workers)
    if (!IsLocalHost(w.host))
      return InvalidArgument(o.config + ": worker " + std::to_string(w.replica) + "/" + std::to_string(w.rank) +
                             " runs on " + w.host +
                             "; flover bench --config starts clusters on this host only (start a multi-host "
                             "cluster with flover up and use flover bench --endpoint)");
  if (!o.model.empty()) {
    config.model.path = AbsolutePath(o.model);
    config.model.tokenizer = AbsolutePath(o.tokenizer);  // the config's tokenizer belongs to its model
  } else if (!o.tokenizer.empty()) {
    config.model.tokenizer = AbsolutePath(o.tokenizer);
  }
  if (!o.dtype.empty()) {
    Result<std::optional<WeightDType>> dtype = ParseModelDType(o.dtype);
    if (!dtype.ok()) return InvalidArgument("--dtype " + dtype.status().message());
    config.model.dtype = *dtype;
    FLOVER_RETURN_IF_ERROR(config.Validate());
  }
  config.endpoints.client = AnyPort(config.endpoints.client);
  config.endpoints.control = AnyPort(config.endpoints.control);
  config.endpoints.plans = AnyPort(config.endpoints.plans);
  // The native API measures these clusters; an HTTP port of the file (8000 in
  // configs/local.yaml) would collide with a cluster the user runs beside.
  config.endpoints.http.clear();
  return config;
}

BenchRunOptions RunOptions(const BenchOptions& o, const WorkloadSpec& workload, const std::string& label,
                           double ready_timeout_s, const InterruptFlag& interrupt) {
  BenchRunOptions r;
  r.label = label;
  r.api = o.api;
  r.workload = workload;
  r.ignore_eos = o.ignore_eos;
  r.max_concurrency = o.max_concurrency;
  if (o.slo_ttft_ms) r.slo.ttft_s = *o.slo_ttft_ms / 1e3;
  if (o.slo_tpot_ms) r.slo.tpot_s = *o.slo_tpot_ms / 1e3;
  r.ready_timeout_s = ready_timeout_s;
  r.interrupted = interrupt.predicate();
  return r;
}

// Connects the run's backend to `endpoint` and runs the workload through it.
BenchRun RunOn(const BenchOptions& o, const std::string& endpoint, const std::optional<CurveClientKeys>& curve,
               const BenchRunOptions& run_options, const InterruptFlag& interrupt) {
  Result<std::unique_ptr<BenchBackend>> backend = Unavailable("no backend");
  if (o.api == "openai") {
    Result<HttpEndpoint> http = ParseServerUrl(endpoint);
    if (!http.ok()) return FailedRun(run_options, http.status().ToString());
    OpenAiBackendOptions b;
    b.endpoint = *http;
    b.model = o.model;
    if (const char* key = std::getenv("OPENAI_API_KEY")) b.api_key = key;
    b.silence_timeout_s = o.timeout_s;
    backend = CreateOpenAiBackend(b);
  } else {
    NativeBackendOptions b;
    b.endpoint = endpoint;
    b.curve = curve;
    b.silence_timeout_s = o.timeout_s;
    b.interrupted = interrupt.predicate();
    b.label = run_options.label;
    backend = ConnectNativeBackend(b);
  }
  if (!backend.ok()) return FailedRun(run_options, backend.status().ToString());
  return RunBenchmark(**backend, run_options);
}

// Starts a cluster from `config` under `policy`, runs the workload on it, stops it.
BenchRun RunPolicy(const BenchOptions& o, ClusterConfig config, const std::string& policy,
                   const WorkloadSpec& workload, const fs::path& dir, const InterruptFlag& interrupt) {
  const std::string prefix = "flover bench [" + policy + "]: ";
  config.scheduler.policy = *SchedulerPolicyFromName(policy);  // checked by BenchCommand
  const fs::path config_path = dir / (policy + ".yaml");
  BenchRun failed = FailedRun(RunOptions(o, workload, policy, 0, interrupt), "");
  {
    std::ofstream out(config_path);
    out << ToYaml(config);
    if (!out) {
      failed.error = "cannot write " + config_path.string();
      return failed;
    }
  }
  std::fprintf(stderr, "%sstarting a cluster (%s)\n", prefix.c_str(), config.model.path.c_str());
  LocalClusterOptions options;
  options.bin_dir = o.bin_dir;
  options.ready_timeout_s = o.ready_timeout_s.value_or(300);
  options.capture_logs = true;  // keeps the daemons' logs off the table and the progress bar
  options.progress = [&](const std::string& line) { std::fprintf(stderr, "%s%s\n", prefix.c_str(), line.c_str()); };
  options.interrupted = interrupt.predicate();
  Result<std::unique_ptr<LocalCluster>> cluster = LocalCluster::Start(config_path.string(), options);
  if (!cluster.ok()) {
    failed.error = cluster.status().ToString();
    return failed;
  }
  const BenchRunOptions run_options = RunOptions(o, workload, policy, o.ready_timeout_s.value_or(300), interrupt);
  BenchRun run = RunOn(o, (*cluster)->client_endpoint(), (*cluster)->client_keys(), run_options, interrupt);
  if (run.error.empty()) {
    if (std::optional<std::string> exit = (*cluster)->CoordinatorExit()) run.error = "Unavailable: " + *exit;
  }
  (*cluster)->Stop();
  return run;
}

}  // namespace

int BenchCommand(const BenchOptions& o) {
  if (!o.endpoint.empty() && !o.config.empty()) return Usage("give --endpoint or --config, not both");
  if (Status s = CheckRunFlags(o); !s.ok()) return Usage(s.message());
  WorkloadSpec workload;
  if (Status s = BuildWorkload(o, &workload); !s.ok()) return Usage(s.message());
  if (o.config.empty()) {
    if (!o.policies.empty()) return Usage("--policies needs --config (a running cluster has its own policy)");
    if ((!o.model.empty() && o.api != "openai") || !o.tokenizer.empty())
      return Usage("--model and --tokenizer need --config (with --api openai, --model is the model id to request)");
  } else if (!o.keys.key.empty() || !o.keys.server_key.empty()) {
    return Usage("--key and --server-key are for --endpoint; with --config the keys come from its security section");
  }
  std::optional<ClusterConfig> base;
  std::vector<std::string> policies = o.policies;
  if (!o.config.empty()) {
    Result<ClusterConfig> config = BaseConfig(o);
    if (!config.ok()) return Usage(config.status().ToString());
    base.emplace(std::move(config).value());
    if (policies.empty()) policies.push_back(SchedulerPolicyName(base->scheduler.policy));
    for (const std::string& p : policies) {
      if (SchedulerPolicyFromName(p)) continue;
      std::string names;
      for (const std::string& k : SchedulerPolicyNames()) names += (names.empty() ? "" : ", ") + k;
      return Usage("--policies: unknown policy '" + p + "' (known: " + names + ")");
    }
  }
  if (!o.plot.empty()) {
    if (Result<std::string> gnuplot = FindGnuplot(); !gnuplot.ok()) return Usage(gnuplot.status().message());
  }

  const InterruptFlag interrupt;
  std::vector<BenchRun> runs;
  if (base) {
    char dir_template[] = "/tmp/flover-bench-XXXXXX";
    if (!mkdtemp(dir_template)) return Usage("cannot create a temporary folder in /tmp");
    const fs::path dir(dir_template);
    for (const std::string& policy : policies) {
      runs.push_back(RunPolicy(o, *base, policy, workload, dir, interrupt));
      if (!runs.back().error.empty())
        std::fprintf(stderr, "flover bench [%s]: FAILED: %s\n", policy.c_str(), runs.back().error.c_str());
      if (interrupt.raised()) break;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  } else {
    const std::string endpoint = o.endpoint.empty() ? kDefaultEndpoint : o.endpoint;
    Result<std::optional<CurveClientKeys>> keys = LoadClientKeys(o.keys);
    if (!keys.ok()) return Usage(keys.status().ToString());
    const BenchRunOptions run_options = RunOptions(o, workload, o.label, o.ready_timeout_s.value_or(30), interrupt);
    runs.push_back(RunOn(o, endpoint, *keys, run_options, interrupt));
    if (!runs.back().error.empty())
      std::fprintf(stderr, "flover bench [%s]: FAILED: %s\n", o.label.c_str(), runs.back().error.c_str());
  }

  std::cout << FormatResultsTable(runs) << std::flush;
  int exit_code = 0;
  for (const BenchRun& r : runs)
    if (!r.error.empty() || r.metrics.n_completed == 0) exit_code = 1;
  if (!o.json.empty()) {
    nlohmann::json all = nlohmann::json::array();
    for (const BenchRun& r : runs) all.push_back(RunToJson(r));
    std::ofstream out(o.json);
    out << all.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    if (!out) {
      std::fprintf(stderr, "flover bench: cannot write --json %s\n", o.json.c_str());
      exit_code = 1;
    }
  }
  if (!o.plot.empty()) {
    if (Status s = WritePlot(runs, o.plot); !s.ok()) {
      std::fprintf(stderr, "flover bench: --plot %s: %s\n", o.plot.c_str(), s.ToString().c_str());
      exit_code = 1;
    } else {
      std::fprintf(stderr, "flover bench: wrote %s\n", o.plot.c_str());
    }
  }
  return interrupt.raised() ? 130 : exit_code;
}

}  // namespace flover
