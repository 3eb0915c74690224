#include "coordinator/config_reload.h"

#include <algorithm>
#include <functional>
#include <vector>

#include <fmt/format.h>

#include "common/scheduler_policy.h"

namespace flover {
namespace {

// A key whose value must stay, with its values as text for the message.
struct Fixed {
  const char* key;
  std::function<bool(const ClusterConfig&, const ClusterConfig&)> same;
  std::function<std::string(const ClusterConfig&)> show;  // empty: the message shows no values
};

std::string Quoted(const std::string& s) { return "'" + s + "'"; }

const std::vector<Fixed>& FixedKeys() {
  static const std::vector<Fixed> keys = {
      {"cluster.name", [](auto& a, auto& b) { return a.name == b.name; }, [](auto& c) { return Quoted(c.name); }},
      {"endpoints", [](auto& a, auto& b) { return a.endpoints == b.endpoints; }, {}},
      {"model.path", [](auto& a, auto& b) { return a.model.path == b.model.path; },
       [](auto& c) { return Quoted(c.model.path); }},
      {"model", [](auto& a, auto& b) { return a.model == b.model; }, {}},
      {"parallel.tensor", [](auto& a, auto& b) { return a.tensor_parallel == b.tensor_parallel; },
       [](auto& c) { return std::to_string(c.tensor_parallel); }},
      {"parallel.cpu_transport", [](auto& a, auto& b) { return a.cpu_transport == b.cpu_transport; }, {}},
      {"kv_cache", [](auto& a, auto& b) { return a.kv_cache == b.kv_cache; }, {}},
      {"heartbeat", [](auto& a, auto& b) { return a.heartbeat == b.heartbeat; }, {}},
      {"limits", [](auto& a, auto& b) { return a.limits == b.limits; }, {}},
      {"http", [](auto& a, auto& b) { return a.http == b.http; }, {}},
      {"security", [](auto& a, auto& b) { return a.security == b.security; }, {}},
  };
  return keys;
}

std::string WorkerText(const WorkerConfig& w) {
  return fmt::format("host {}, device {}, threads {}", w.host, w.device, w.threads);
}

}  // namespace

Status CheckLiveChange(const ClusterConfig& current, const ClusterConfig& next) {
  auto refuse = [&](const std::string& key, const std::string& what) {
    return ConfigError(next.source, key,
                       "cannot change while the cluster runs" + (what.empty() ? "" : " (" + what + ")") +
                           "; restart the cluster to change it, or put it back: nothing was changed");
  };
  for (const Fixed& f : FixedKeys()) {
    if (f.same(current, next)) continue;
    return refuse(f.key, f.show ? "was " + f.show(current) + ", now " + f.show(next) : "");
  }
  // The replicas that stay keep their workers.
  const int kept = std::min(current.replicas, next.replicas);
  for (const WorkerConfig& w : next.workers) {
    if (w.replica >= kept) continue;
    const WorkerConfig* old = current.FindWorker(w.replica, w.rank);
    if (old != nullptr && *old == w) continue;
    return refuse(fmt::format("workers (replica {} rank {})", w.replica, w.rank),
                  old == nullptr ? "" : "was " + WorkerText(*old) + ", now " + WorkerText(w));
  }
  return Status::Ok();
}

std::string DescribeLiveChange(const ClusterConfig& current, const ClusterConfig& next) {
  std::vector<std::string> parts;
  if (next.replicas != current.replicas) {
    const int d = next.replicas - current.replicas;
    parts.push_back(fmt::format("replicas {} -> {} ({} {})", current.replicas, next.replicas,
                                d > 0 ? "added" : "removed", d > 0 ? d : -d));
  }
  const SchedulerSettings &a = current.scheduler, &b = next.scheduler;
  auto field = [&](const char* key, auto before, auto after) {
    if (before != after) parts.push_back(fmt::format("scheduler.{} {} -> {}", key, before, after));
  };
  if (a.policy != b.policy)
    parts.push_back(fmt::format("scheduler.policy {} -> {}", SchedulerPolicyName(a.policy), SchedulerPolicyName(b.policy)));
  field("max_step_tokens", a.max_step_tokens, b.max_step_tokens);
  field("max_running", a.max_running, b.max_running);
  field("max_queued", a.max_queued, b.max_queued);
  field("pipeline_depth", a.pipeline_depth, b.pipeline_depth);
  field("batch_window_ms", a.batch_window_ms, b.batch_window_ms);
  field("max_batch", a.max_batch, b.max_batch);
  field("failover_wait_ms", a.failover_wait_ms, b.failover_wait_ms);
  if (parts.empty()) return "no change";
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

}  // namespace flover
