#include "tests/fuzz/core_fuzz_cluster.h"

#include <algorithm>
#include <cstdlib>

#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include "common/check.h"
#include "common/protocol.h"
#include "common/request_params.h"
#include "common/tokenizer.h"
#include "tests/fuzz/fuzz_vocabulary.h"

namespace flover::fuzzing {

using namespace std::chrono_literals;

namespace {

template <typename M>
void CheckParsesBack(const M& message, const std::string& receiver) {
  Result<M> back = Parse<M>(Serialize(message), /*reject_unknown_fields=*/true);
  FLOVER_CHECK(back.ok()) << receiver << " cannot read what the coordinator sent: " << back.status().ToString() << "\n"
                          << message.DebugString();
}

void CheckParsesBack(const proto::StepPlan& plan, const std::string& receiver) {
  proto::CoordinatorMessage m;
  *m.mutable_plan() = plan;
  CheckParsesBack(m, receiver);
}

}  // namespace

int TokenSource::Next() {
  ++n_;
  if (bytes_.size() < 2) return static_cast<int>((n_ * 7 + 40) % static_cast<uint64_t>(modulus_));
  if (pos_ + 2 > bytes_.size()) pos_ = 0;
  const unsigned value =
      static_cast<uint8_t>(bytes_[pos_]) | (static_cast<unsigned>(static_cast<uint8_t>(bytes_[pos_ + 1])) << 8);
  pos_ += 2;
  return static_cast<int>(value % static_cast<unsigned>(modulus_));
}

FuzzCluster::FuzzCluster(const Shape& shape) : shape_(shape) {
  // What peers trigger is logged; a fuzzer runs millions of inputs. To see what one
  // input does: FLOVER_FUZZ_LOG=debug (or info, warn, ...).
  const char* level = std::getenv("FLOVER_FUZZ_LOG");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::off);
  if (!level) google::protobuf::SetLogHandler(nullptr);  // "invalid UTF-8" for every such string field
  static const int vocab_size = [] {
    Result<Tokenizer> vocabulary = Tokenizer::ParseLlama2c(FuzzVocabularyFile(), "fuzz vocabulary");
    FLOVER_CHECK(vocabulary.ok()) << vocabulary.status().ToString();
    return vocabulary->vocab_size();
  }();
  vocab_size_ = vocab_size;

  coordinator_testing::Options o;
  o.replicas = shape.replicas;
  o.tensor = shape.tensor;
  o.failover_wait_ms = 200;  // requests of a failed replica wait for another one
  o.step_timeout_ms = 2000;
  o.drain = 300ms;  // a stop drains what is in flight
  o.tokenizer = FuzzVocabularyPath();
  sim_ = std::make_unique<SimCoordinator>(o);
  // Clients 0 and 1 hold admin keys, 2 and 3 client keys (what the status shows them differs).
  for (int i = 0; i < kClients; ++i) clients_.push_back(&sim_->AddClient(i < 2 ? ClientRole::kAdmin : ClientRole::kClient));
  for (int r = 0; r < shape.replicas; ++r)
    for (int k = 0; k < shape.tensor; ++k) workers_.push_back(&sim_->AddWorker(r, k));
  for (SimWorker* w : workers_) StartWorker(*w);
  const proto::ClusterStatus status = sim_->core().BuildStatus(sim_->now(), ClientRole::kAdmin);
  for (const proto::ReplicaStatus& r : status.replicas())
    FLOVER_CHECK(r.state() == "ready") << "replica " << r.replica() << " is " << r.state() << ": " << r.error();
}

void FuzzCluster::StartWorker(SimWorker& w) {
  known_.erase(w.replica());
  const proto::RegisterReply reply = w.Register();
  if (!reply.accepted()) return;
  w.Subscribe(reply);
  // A real worker reports ready once a probe of its plan topic reached it.
  for (int i = 0; i < 100 && w.probes_received() == 0; ++i) sim_->Advance(1ms);
  w.Ready(coordinator_testing::TestModel(vocab_size_), shape_.kv_blocks);
}

SimWorker& FuzzCluster::stranger(int i) {
  SimWorker*& s = strangers_[i];
  if (s == nullptr) s = &sim_->AddWorker(0, 0);
  return *s;
}

void FuzzCluster::KillOrRestart(int i) {
  SimWorker* w = workers_[i];
  if (!w->gone()) {
    w->Disconnect();
    return;
  }
  // Bounded: each restart adds a scripted worker to the simulation.
  if (++n_restarts_ > 8) return;
  workers_[i] = &sim_->AddWorker(w->replica(), w->rank());
  StartWorker(*workers_[i]);
}

void FuzzCluster::Answer(SimWorker& w, const proto::StepPlan& plan, TokenSource& tokens) {
  const proto::ModelInfo model = coordinator_testing::TestModel(vocab_size_);
  std::map<uint64_t, Known>& known = known_[w.replica()];
  for (uint64_t id : plan.leaves()) known.erase(id);
  for (const proto::JoinRequest& join : plan.joins()) {
    Known k;
    k.n_prompt = join.prompt_size();
    k.n_generated = join.generated_size();
    k.max_tokens = join.stop().max_tokens();
    k.ignore_eos = join.stop().ignore_eos();
    k.stop_ids.assign(join.stop().stop_token_ids().begin(), join.stop().stop_token_ids().end());
    known[join.request_id()] = std::move(k);
  }
  coordinator_testing::Outputs outs;
  for (const proto::PlanEntry& e : plan.entries()) {
    auto it = known.find(e.request_id());
    if (it == known.end()) continue;  // stale: it finished in an earlier step
    Known& k = it->second;
    if (e.start_pos() + e.n_tokens() != k.n_prompt + k.n_generated) continue;  // a prefill chunk
    const int token = tokens.Next();
    const bool stop = (!k.ignore_eos && token == model.eos_id()) ||
                      std::find(k.stop_ids.begin(), k.stop_ids.end(), token) != k.stop_ids.end();
    if (stop) {
      outs.emplace_back(e.request_id(), -1, proto::FINISH_STOP);
      known.erase(it);
      continue;
    }
    ++k.n_generated;
    if (k.n_prompt >= 1 && k.max_tokens >= 1 &&
        StopsByLength(k.n_prompt, k.n_generated, k.max_tokens, model.max_seq_len())) {
      outs.emplace_back(e.request_id(), token, proto::FINISH_LENGTH);
      known.erase(it);
    } else {
      outs.emplace_back(e.request_id(), token, proto::FINISH_NONE);
    }
  }
  w.Answer(plan, outs);
}

int FuzzCluster::AnswerPlans(TokenSource& tokens, int rounds) {
  int answered = 0;
  for (int round = 0; round < rounds; ++round) {
    bool any = false;
    for (SimWorker* w : workers_) {
      if (w->gone()) continue;
      if (w->rank() != 0) {  // the other ranks compute along and report nothing
        while (std::optional<proto::StepPlan> plan = w->TryPlan()) CheckParsesBack(*plan, w->identity());
        continue;
      }
      if (std::optional<proto::StepPlan> plan = w->TryPlan()) {
        CheckParsesBack(*plan, w->identity());
        Answer(*w, *plan, tokens);
        any = true;
        ++answered;
      }
    }
    if (!any) break;
  }
  return answered;
}

void FuzzCluster::Drain(TokenSource& tokens, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    if (AnswerPlans(tokens, 16) == 0) {
      if (sim_->core().n_requests() == 0) return;
      sim_->Advance(50ms);
    }
  }
}

void FuzzCluster::DisconnectClient(int i) {
  clients_[i]->Disconnect();
  client_gone_[i] = true;
}

void FuzzCluster::CheckClientMessage(int client, const proto::ServerMessage& m) {
  CheckParsesBack(m, clients_[client]->identity());
  std::map<std::string, Open>& open = open_[client];
  const std::string who = clients_[client]->identity() + ": ";
  switch (m.body_case()) {
    case proto::ServerMessage::kAccepted: {
      const bool fresh = open.emplace(m.accepted().client_request_id(), Open{}).second;
      FLOVER_CHECK(fresh) << who << "a second Accepted for '" << m.accepted().client_request_id() << "' in flight";
      break;
    }
    case proto::ServerMessage::kToken: {
      auto it = open.find(m.token().client_request_id());
      FLOVER_CHECK(it != open.end()) << who << "a TokenEvent for '" << m.token().client_request_id()
                                     << "', which is not in flight";
      it->second.streamed = true;
      it->second.tokens.insert(it->second.tokens.end(), m.token().tokens().begin(), m.token().tokens().end());
      it->second.text += m.token().text();
      CheckMaxTokens(client, it->first, it->second.tokens.size());
      break;
    }
    case proto::ServerMessage::kDone: {
      auto it = open.find(m.done().client_request_id());
      FLOVER_CHECK(it != open.end()) << who << "a Done for '" << m.done().client_request_id()
                                     << "', which is not in flight";
      if (it->second.streamed) {
        const std::vector<int> done_tokens(m.done().tokens().begin(), m.done().tokens().end());
        FLOVER_CHECK(done_tokens == it->second.tokens)
            << who << "Done of '" << it->first << "' has " << done_tokens.size() << " tokens, its events "
            << it->second.tokens.size();
        FLOVER_CHECK(m.done().text() == it->second.text)
            << who << "Done of '" << it->first << "' has the text '" << m.done().text() << "', its events '"
            << it->second.text << "'";
      }
      CheckMaxTokens(client, it->first, m.done().tokens_size());
      open.erase(it);
      break;
    }
    case proto::ServerMessage::kError:  // also for submissions never accepted
      open.erase(m.error().client_request_id());
      break;
    default: break;
  }
}

void FuzzCluster::CheckMaxTokens(int client, const std::string& id, size_t n_tokens) const {
  const auto it = max_tokens_[client].find(id);
  if (it == max_tokens_[client].end()) return;
  FLOVER_CHECK(n_tokens <= static_cast<size_t>(it->second))
      << clients_[client]->identity() << ": '" << id << "' got " << n_tokens << " tokens, max_tokens " << it->second;
}

void FuzzCluster::CheckReceived(bool at_end) {
  for (int i = 0; i < kClients; ++i) {
    while (std::optional<proto::ServerMessage> m = clients_[i]->TryRecv()) CheckClientMessage(i, *m);
    if (client_gone_[i]) open_[i].clear();
    if (at_end)
      FLOVER_CHECK(open_[i].empty()) << clients_[i]->identity() << ": " << open_[i].size()
                                     << " accepted request(s) never ended, '" << open_[i].begin()->first << "' first";
  }
  for (SimWorker* s : strangers_) {
    if (s == nullptr) continue;
    while (std::optional<proto::CoordinatorMessage> m = s->RecvControl()) CheckParsesBack(*m, s->identity());
  }
  for (SimWorker* w : workers_) {
    while (std::optional<proto::CoordinatorMessage> m = w->RecvControl()) CheckParsesBack(*m, w->identity());
    if (w->rank() != 0)  // rank 0's plans are answered (AnswerPlans)
      while (std::optional<proto::StepPlan> plan = w->TryPlan()) CheckParsesBack(*plan, w->identity());
  }
}

void FuzzCluster::Finish(TokenSource& tokens, int rounds) {
  Drain(tokens, rounds);
  proto::ClientMessage status;
  status.mutable_status();
  client(0).Send(status);
  LogSummary();
  sim_->RequestStop();
  Drain(tokens, 20);
  sim_->Shutdown("the fuzz input ended");
  CheckReceived(/*at_end=*/true);
}

void FuzzCluster::LogSummary() {
  const proto::ClusterStatus status = sim_->core().BuildStatus(sim_->now(), ClientRole::kAdmin);
  spdlog::info("fuzz input done: {} completed, {} moved, {} abandoned, {} queued, {} in flight", status.completed(),
               status.moved(), status.abandoned(), status.queued(), sim_->core().n_requests());
  for (const proto::ReplicaStatus& r : status.replicas())
    spdlog::info("replica {}: {}, {} steps, {} tokens {}", r.replica(), r.state(), r.steps(), r.tokens_generated(),
                 r.error());
}

}  // namespace flover::fuzzing
