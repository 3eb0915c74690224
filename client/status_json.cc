#include "client/status_json.h"

#include <nlohmann/json.hpp>

namespace flover {
namespace {

nlohmann::json PercentilesJson(const proto::LatencyPercentiles& p) {
  return {{"mean", p.mean()}, {"p50", p.p50()}, {"p90", p.p90()}, {"p99", p.p99()}};
}

nlohmann::json ModelJson(const proto::ModelInfo& m) {
  return {{"description", m.description()}, {"dim", m.dim()},
          {"hidden_dim", m.hidden_dim()},   {"n_layers", m.n_layers()},
          {"n_heads", m.n_heads()},         {"n_kv_heads", m.n_kv_heads()},
          {"vocab_size", m.vocab_size()},   {"max_seq_len", m.max_seq_len()},
          {"bos_id", m.bos_id()},           {"eos_id", m.eos_id()}};
}

nlohmann::json ReplicaJson(const proto::ReplicaStatus& r) {
  nlohmann::json workers = nlohmann::json::array();
  for (const proto::WorkerStatus& w : r.workers())
    workers.push_back({{"rank", w.rank()},
                       {"state", w.state()},
                       {"device", w.device()},
                       {"last_heartbeat_age_s", w.last_heartbeat_age_s()},
                       {"host", w.host()},
                       {"pid", w.pid()}});
  return {{"replica", r.replica()},
          {"state", r.state()},
          {"error", r.error()},
          {"running", r.running()},
          {"waiting", r.waiting()},
          {"kv_blocks_used", r.kv_blocks_used()},
          {"kv_blocks_total", r.kv_blocks_total()},
          {"steps_per_s", r.steps_per_second()},
          {"tokens_per_s", r.tokens_per_second()},
          {"steps", r.steps()},
          {"tokens_generated", r.tokens_generated()},
          {"step_compute_s", r.step_compute_seconds()},
          {"step_wait_s", r.step_wait_seconds()},
          {"workers", std::move(workers)}};
}

}  // namespace

std::string StatusJson(const proto::ClusterStatus& s) {
  nlohmann::json j;
  j["name"] = s.name();
  j["uptime_s"] = s.uptime_seconds();
  j["model"] = s.has_model() ? ModelJson(s.model()) : nlohmann::json();
  int ready = 0;
  nlohmann::json replicas = nlohmann::json::array();
  for (const proto::ReplicaStatus& r : s.replicas()) {
    ready += r.state() == "ready";
    replicas.push_back(ReplicaJson(r));
  }
  j["replicas_ready"] = ready;
  j["queued"] = s.queued();
  j["completed"] = s.completed();
  j["moved"] = s.moved();
  j["abandoned"] = s.abandoned();
  j["rejected_messages"] = s.rejected_messages();
  j["clients_cut_off"] = s.clients_cut_off();
  j["config_generation"] = s.config_generation();
  const proto::LatencySummary& l = s.latency();
  j["latency"] = {{"window_s", l.window_seconds()},           {"requests", l.requests()},
                  {"queue_s", PercentilesJson(l.queue())},    {"ttft_s", PercentilesJson(l.first_token())},
                  {"tpot_s", PercentilesJson(l.per_token())}, {"e2e_s", PercentilesJson(l.total())}};
  j["replicas"] = std::move(replicas);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace flover
