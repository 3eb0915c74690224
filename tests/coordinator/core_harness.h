// The harness of the coordinator's decision tests: a CoordinatorCore driven by hand,
// with simulated time and no sockets or threads. Scripted workers and clients speak
// flover.proto to it as the ZeroMQ shell would deliver it: each message they send is
// one event (followed, as in the shell's loop, by a flush of the outbox, a Tick and
// another flush); what the core sends lands in their inboxes at once; a peer that
// disconnected is reported unreachable to the core when something is sent to it, and a
// client that stopped reading has at most limits.max_undelivered_per_client messages
// waiting, as the client ROUTER's SNDHWM holds them: the next is reported to the core
// (OnClientNotReading) instead of delivered.
// Time moves only in Advance(), which ticks the core at every wake-up it asks for and
// lets the live workers heartbeat, so every test is deterministic under any load.
//
// The tests are in core_client_api_test.cc (the client API), core_health_test.cc
// (workers, health), core_failover_test.cc, core_stop_test.cc (stopping; clients that
// leave) and core_results_test.cc (who may send step results, what they must say, who
// may take a live rank's place).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/protocol.h"
#include "coordinator/coordinator_core.h"
#include "tests/coordinator/coordinator_test_config.h"
#include "tests/test_paths.h"

namespace flover::coordinator_testing {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

constexpr milliseconds kBeatEvery = 40ms;  // the scripted workers' heartbeat period
constexpr milliseconds kQuiet = 250ms;     // how long "nothing happens" is watched (simulated)

class SimCoordinator;

// A scripted worker: its control connection (which carries its step results too) and its
// plan subscription. A SimWorker that never registers plays a stranger on the control
// socket.
class SimWorker {
 public:
  SimWorker(SimCoordinator& sim, std::string identity, int replica, int rank)
      : sim_(sim), identity_(std::move(identity)), replica_(replica), rank_(rank) {}

  int replica() const { return replica_; }
  int rank() const { return rank_; }
  int pid() const { return 1000 + 10 * replica_ + rank_; }
  const std::string& identity() const { return identity_; }
  bool gone() const { return gone_; }
  int heartbeats_received() const { return heartbeats_received_; }
  int probes_received() const { return probes_received_; }  // on its plan topic

  void Send(proto::WorkerMessage m);
  void SendRaw(const std::string& bytes);
  void SendFrames(const std::vector<std::string>& frames);
  // Closes every connection, as the death of the process would: the core hears of a
  // closed control connection, and of this worker when it next sends to it.
  void Disconnect();
  // The process is gone, but the core has not heard of the closed connection yet (its
  // socket monitor's event comes after the messages read in the same turn): it finds
  // out when it next sends to this worker.
  void Vanish() { gone_ = true; }

  void SendRegister(int replica, int rank);
  // A heartbeat, once registered (as a real worker's).
  void Beat();
  // The next message other than a heartbeat (those are counted).
  std::optional<proto::CoordinatorMessage> RecvControl();
  proto::RegisterReply Register();
  // Register, subscribe to the plans, report ready (once a probe of the topic came, as
  // a real worker does).
  void Start(const proto::ModelInfo& model = TestModel(), int kv_blocks = 16);
  void Subscribe(const proto::RegisterReply& reply);
  void Ready(const proto::ModelInfo& model, int kv_blocks);

  std::optional<proto::StepPlan> TryPlan();
  // Sends a step result on the control connection (its replica: this worker's, unless
  // `as_replica` says otherwise).
  void Push(proto::StepResult result, std::optional<int> as_replica = std::nullopt);
  // Sends the result of `plan` with the given (request id, token, finish) outputs.
  void Answer(const proto::StepPlan& plan, const Outputs& outs);

 private:
  friend class SimCoordinator;
  SimCoordinator& sim_;
  const std::string identity_;
  const int replica_;
  const int rank_;
  std::deque<proto::CoordinatorMessage> control_;
  std::deque<proto::StepPlan> plans_;
  std::optional<std::string> topic_;  // subscribed
  int heartbeats_received_ = 0;
  int probes_received_ = 0;
  bool registered_ = false;
  bool beating_ = true;
  bool gone_ = false;
};

class SimClient {
 public:
  SimClient(SimCoordinator& sim, std::string identity, ClientRole role)
      : sim_(sim), identity_(std::move(identity)), role_(role) {}

  const std::string& identity() const { return identity_; }
  void Send(proto::ClientMessage m) { SendRaw(Serialize(std::move(m))); }
  void SendRaw(const std::string& bytes) { SendFrames({bytes}); }
  void SendFrames(const std::vector<std::string>& frames);
  void Submit(const std::string& id, std::vector<int> prompt, int max_tokens, bool stream = true);
  void Cancel(const std::string& id);
  // The next message other than a Keepalive (those are counted); nullopt when none is
  // waiting.
  std::optional<proto::ServerMessage> TryRecv();
  int keepalives_received() const { return keepalives_received_; }
  // Closes the connection, as the death of the client's process would.
  void Disconnect();
  // The client no longer reads: what is sent to it waits (TryRecv still reads it).
  void StopReading() { reading_ = false; }
  int n_waiting() const { return static_cast<int>(inbox_.size()); }

 private:
  friend class SimCoordinator;
  SimCoordinator& sim_;
  const std::string identity_;
  const ClientRole role_;  // what its key may see, as the shell's ZAP user id says
  std::deque<proto::ServerMessage> inbox_;
  int keepalives_received_ = 0;
  bool gone_ = false;
  bool reading_ = true;
};

class SimCoordinator {
 public:
  explicit SimCoordinator(const Options& options);

  CoordinatorCore& core() { return *core_; }
  Clock::time_point now() const { return now_; }

  SimWorker& AddWorker(int replica = 0, int rank = 0);
  // A client connection; an admin's by default (as every local peer is without a
  // security section). `identity`: its peer id ("" = "client-<n>").
  SimClient& AddClient(ClientRole role = ClientRole::kAdmin, std::string identity = "");
  // The worker stops heartbeating (a hung process).
  void Silence(SimWorker& w) { w.beating_ = false; }

  // What the shell does after every batch of events: flush, Tick, flush.
  void AfterEvent();
  // Routes the outbox to the peers; tells the core of the peers that are gone.
  void Flush();
  // Moves time forward by `d`, ticking the core at every wake-up it asks for (at least
  // every millisecond of progress), with the live registered workers heartbeating
  // every kBeatEvery.
  void Advance(Clock::duration d);
  // A stop request (SIGTERM), then a tick.
  void RequestStop();
  // The core's Shutdown, flushed.
  void Shutdown(const std::string& reason);
  bool stopped() const { return core_->stopped(now_); }
  // Plans published so far for replica `replica`.
  int plans_published(int replica) const;
  // A reload of the cluster file as the shell makes it: the config of `options`
  // applied (CoordinatorCore::Reconfigure), then an event.
  CoordinatorCore::Reconfigured Reconfigure(const Options& options);
  // What the shell answers a client's reload with (Outbox::reloads); by default
  // FailedPrecondition, as with no cluster file.
  std::function<Result<CoordinatorCore::Reconfigured>()> on_reload;

 private:
  std::unique_ptr<CoordinatorCore> core_;
  Clock::time_point now_;
  Clock::time_point next_beat_;
  std::vector<std::unique_ptr<SimWorker>> workers_;
  std::vector<std::unique_ptr<SimClient>> clients_;
  std::map<int, int> plans_published_;
};

class CoreTest : public ::testing::Test {
 protected:
  void Start(const Options& options = Options()) { sim_ = std::make_unique<SimCoordinator>(options); }

  SimCoordinator& sim() { return *sim_; }
  SimWorker& AddWorker(int replica = 0, int rank = 0) { return sim_->AddWorker(replica, rank); }
  SimClient& AddClient(ClientRole role = ClientRole::kAdmin, std::string identity = "") {
    return sim_->AddClient(role, std::move(identity));
  }
  void Advance(Clock::duration d) { sim_->Advance(d); }

  // The plan waiting for `w`, if any.
  std::optional<proto::StepPlan> ExpectPlan(SimWorker& w) { return w.TryPlan(); }
  // The reply waiting for `c`; a failure when there is none.
  proto::ServerMessage Reply(SimClient& c);
  // After kQuiet of simulated time: what is waiting (nothing, say the callers).
  std::optional<proto::StepPlan> QuietPlan(SimWorker& w);
  std::optional<proto::ServerMessage> QuietReply(SimClient& c);
  // Advances time a millisecond at a time until the first plan / reply / control
  // message (not a heartbeat) is waiting, for at most `limit`.
  std::optional<proto::StepPlan> PlanWithin(SimWorker& w, Clock::duration limit);
  std::optional<proto::ServerMessage> ReplyWithin(SimClient& c, Clock::duration limit);
  std::optional<proto::CoordinatorMessage> ControlWithin(SimWorker& w, Clock::duration limit);
  // A status reply (it comes within CoordinatorCore::kStatusEvery).
  proto::ClusterStatus GetStatus(SimClient& c);
  std::string ReplicaState(SimClient& c, int i);
  uint64_t ExpectAccepted(SimClient& c, const std::string& id, int replica = 0);

  // One ready worker, and request "r" (prompt {1, 2}, 3 tokens) in its first plan.
  struct OneRequest {
    SimClient& client;
    SimWorker& worker;
    uint64_t id;
    std::optional<proto::StepPlan> plan;
  };
  OneRequest StartWithOneRequest(const Options& o, std::vector<int> prompt = {1, 2}, int max_tokens = 3);

  // Two replicas of one worker each (the other options as given), both ready.
  struct TwoReplicas {
    SimClient& client;
    SimWorker& w0;
    SimWorker& w1;
  };
  TwoReplicas StartTwoReplicas(Options o = Options());

  // A core with stories260K's tokenizer and one ready worker whose model has its
  // vocabulary.
  struct WithTokenizer {
    Tokenizer tokenizer;
    SimWorker& worker;
    SimClient& client;
  };
  std::optional<WithTokenizer> StartWithTokenizer();

  // A submit of a text prompt, streamed; the rest of it is the caller's.
  static proto::ClientMessage TextSubmit(const std::string& id, const std::string& text);
  // The plan drops request `leave` (its KV blocks freed) and admits request `join`.
  static void ExpectLeaveAndJoin(const proto::StepPlan& plan, uint64_t leave, uint64_t join);
  // A WorkerFailure from `w`, naming its own replica and rank.
  static void ReportFailure(SimWorker& w, const std::string& message);

  std::unique_ptr<SimCoordinator> sim_;
};

}  // namespace flover::coordinator_testing
