#include "tests/coordinator/coordinator_test_config.h"

#include "common/check.h"
#include "common/cluster_config_reader.h"

namespace flover::coordinator_testing {

ClusterConfig TestConfig(const Options& o) {
  std::string yaml =
      "cluster: {name: coordinator-test}\n"
      "endpoints: {client: 'tcp://127.0.0.1:*', control: 'tcp://127.0.0.1:*', plans: 'tcp://127.0.0.1:*'}\n"
      "model: {path: 'dummy:test'" +
      (o.tokenizer.empty() ? std::string() : ", tokenizer: '" + o.tokenizer + "'") +
      "}\n"
      "parallel: {replicas: " +
      std::to_string(o.replicas) + ", tensor: " + std::to_string(o.tensor) +
      "}\n"
      "kv_cache: {block_size: 4}\n"
      "scheduler: {policy: " +
      o.policy + ", batch_window_ms: " + std::to_string(o.batch_window_ms) +
      ", max_step_tokens: " + std::to_string(o.max_step_tokens) +
      ", max_running: 8, max_queued: " + std::to_string(o.max_queued) +
      ", pipeline_depth: " + std::to_string(o.pipeline_depth) +
      ", failover_wait_ms: " + std::to_string(o.failover_wait_ms) +
      "}\n"
      "heartbeat: {interval_ms: " +
      std::to_string(o.interval_ms) + ", timeout_ms: " + std::to_string(o.timeout_ms) +
      ", step_timeout_ms: " + std::to_string(o.step_timeout_ms) + "}\n";
  std::string limits;
  for (const LimitField& field : kLimitFields)
    limits += (limits.empty() ? "" : ", ") + std::string(field.key) + ": " + std::to_string(o.limits.*field.value);
  yaml += "limits: {" + limits + "}\n";
  Result<ClusterConfig> config = ParseClusterConfig(yaml, "test.yaml", "");
  FLOVER_CHECK(config.ok()) << config.status().ToString();
  config->security = o.security;
  FLOVER_CHECK(config->Validate().ok()) << config->Validate().ToString();
  return std::move(config).value();
}

proto::ModelInfo TestModel(int vocab) {
  proto::ModelInfo m;
  m.set_dim(64);
  m.set_hidden_dim(172);
  m.set_n_layers(2);
  m.set_n_heads(8);
  m.set_n_kv_heads(4);
  m.set_vocab_size(vocab);
  m.set_max_seq_len(64);
  m.set_bos_id(1);
  m.set_eos_id(2);
  m.set_description("fake");
  return m;
}

proto::WorkerMessage RegisterMessage(int replica, int rank, int pid) {
  proto::WorkerMessage m;
  proto::RegisterWorker* r = m.mutable_register_();
  r->set_replica(replica);
  r->set_rank(rank);
  r->set_host("127.0.0.1");
  r->set_pid(pid);
  r->set_device("cpu");
  return m;
}

proto::WorkerMessage HeartbeatMessage(int replica, int rank) {
  proto::WorkerMessage m;
  m.mutable_heartbeat()->set_replica(replica);
  m.mutable_heartbeat()->set_rank(rank);
  return m;
}

proto::WorkerMessage ReadyMessage(int replica, int rank, const proto::ModelInfo& model, int kv_blocks) {
  proto::WorkerMessage m;
  m.mutable_ready()->set_replica(replica);
  m.mutable_ready()->set_rank(rank);
  *m.mutable_ready()->mutable_model() = model;
  m.mutable_ready()->set_kv_blocks(kv_blocks);
  return m;
}

proto::StepResult ResultOf(const proto::StepPlan& plan, const Outputs& outs) {
  proto::StepResult r;
  r.set_seq(plan.seq());
  r.set_step_seconds(0.001);
  for (const auto& [id, token, finish] : outs) {
    proto::TokenOutput* o = r.add_outputs();
    o->set_request_id(id);
    o->set_token(token);
    o->set_finish(finish);
  }
  return r;
}

proto::ClientMessage SubmitMessage(const std::string& id, const std::vector<int>& prompt, int max_tokens,
                                   bool stream) {
  proto::ClientMessage m;
  proto::SubmitRequest* s = m.mutable_submit();
  s->set_client_request_id(id);
  s->mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  s->mutable_stop()->set_max_tokens(max_tokens);
  s->set_stream(stream);
  return m;
}

proto::ClientMessage CancelMessage(const std::string& id) {
  proto::ClientMessage m;
  m.mutable_cancel()->set_client_request_id(id);
  return m;
}

}  // namespace flover::coordinator_testing
