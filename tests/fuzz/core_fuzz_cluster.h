// FuzzCluster: the cluster the harnesses of the client and worker messages fuzz. A
// CoordinatorCore in simulated time (tests/coordinator/core_harness.h: SimCoordinator,
// scripted workers and clients, no sockets), with the fuzz vocabulary as the cluster's
// tokenizer and every replica brought to ready by scripted workers, so that what the
// fuzzer sends reaches admission, scheduling and the step results.
//
// The scripted rank 0 of each replica answers its plans as a real worker would: it
// follows the joins, leaves and entries, samples one token for each entry that reaches
// the end of its request's tokens (from a TokenSource), and reports the finish (length
// at max_tokens or at the context's end; stop, without a token, on EOS or a stop id).
// Everything is deterministic: the same input takes the same path. The core logs
// nothing unless FLOVER_FUZZ_LOG names a level (debug, info, warn, ...).
//
// Thread-safety: none; one per fuzz input.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/coordinator/core_harness.h"

namespace flover::fuzzing {

using coordinator_testing::SimClient;
using coordinator_testing::SimCoordinator;
using coordinator_testing::SimWorker;

// Tokens for the scripted workers: little-endian u16 values from `bytes`, taken modulo
// `modulus` (a value past the vocabulary tests its check), cycled; a fixed walk through
// the vocabulary when `bytes` has fewer than two bytes.
class TokenSource {
 public:
  TokenSource(std::string_view bytes, int modulus) : bytes_(bytes), modulus_(modulus) {}
  int Next();

 private:
  std::string_view bytes_;
  int modulus_;
  size_t pos_ = 0;
  uint64_t n_ = 0;
};

class FuzzCluster {
 public:
  struct Shape {
    int replicas = 1;
    int tensor = 1;
    int kv_blocks = 64;  // each worker reports this many blocks of 4 tokens
  };
  static constexpr int kClients = 4;

  explicit FuzzCluster(const Shape& shape);

  SimCoordinator& sim() { return *sim_; }
  int vocab_size() const { return vocab_size_; }
  SimClient& client(int i) { return *clients_[i]; }
  // Client `i` closes its connection (and expects nothing more).
  void DisconnectClient(int i);
  // The scripted workers, replica-major (replica r rank k is index r * tensor + k); a
  // restarted one replaces its predecessor.
  int n_workers() const { return static_cast<int>(workers_.size()); }
  SimWorker& worker(int i) { return *workers_[i]; }
  // Connection `i` (0-3) of a peer that never registered (unless it does so itself).
  static constexpr int kStrangers = 4;
  SimWorker& stranger(int i);

  // Every rank 0 answers the plans it holds, one plan each per round, for at most
  // `rounds` rounds (an answer may bring the next plan at once). Returns the plans
  // answered.
  int AnswerPlans(TokenSource& tokens, int rounds);
  // Answers until no plan is waiting or `rounds` rounds passed, advancing time between
  // rounds so that the cluster's timers run too.
  void Drain(TokenSource& tokens, int rounds);

  // The end of an input: the requests left run to their end (at most `rounds` rounds),
  // client 0 asks for the status, the coordinator drains and shuts down, and what was
  // received is checked.
  void Finish(TokenSource& tokens, int rounds);

  // Takes every message the clients and the scripted workers received and checks it,
  // aborting (a finding) on what breaks the protocol (common/proto/flover.proto):
  //  * every message survives the wire: its bytes parse back (protobuf string fields
  //    must be UTF-8, or a receiver refuses the whole message);
  //  * a client hears of its accepted requests only while they are in flight: TokenEvent
  //    and Done only between Accepted and the request's end (Done or Error), never a
  //    second Accepted for an id in flight;
  //  * a streamed request's Done has the tokens and the text of its events, joined;
  //  * a request of MaxTokens never gets more tokens than its max_tokens, whatever the
  //    workers (or forged results) say.
  // At the end of the input (`at_end`), after Shutdown, every request a client that is
  // still connected had accepted must have ended.
  void CheckReceived(bool at_end = false);

  // Client `client`'s request `id` (submitted by the harness) asks for at most
  // `max_tokens` tokens: CheckReceived holds the coordinator to it.
  void MaxTokens(int client, const std::string& id, int max_tokens) { max_tokens_[client][id] = max_tokens; }

  // Logs (at info) what the input did: requests completed, moved, abandoned, queued,
  // and each replica's state and steps. Seen with FLOVER_FUZZ_LOG=info.
  void LogSummary();

  // Worker `i` (of a live replica) closes its connection, or, when it is gone, a new
  // process of its rank registers with a new identity and reports ready (which succeeds
  // once the coordinator knows the old one is gone).
  void KillOrRestart(int i);

 private:
  // What rank 0 of a replica knows of a request (from its JoinRequest).
  struct Known {
    int n_prompt = 0;
    int n_generated = 0;
    int max_tokens = 0;
    bool ignore_eos = false;
    std::vector<int> stop_ids;
  };
  // What a client was told of one accepted request so far.
  struct Open {
    bool streamed = false;  // some TokenEvent came
    std::vector<int> tokens;
    std::string text;
  };
  void CheckClientMessage(int client, const proto::ServerMessage& m);
  void CheckMaxTokens(int client, const std::string& id, size_t n_tokens) const;
  void StartWorker(SimWorker& w);
  void Answer(SimWorker& w, const proto::StepPlan& plan, TokenSource& tokens);

  Shape shape_;
  int vocab_size_ = 0;
  std::unique_ptr<SimCoordinator> sim_;
  std::vector<SimClient*> clients_;
  std::vector<SimWorker*> workers_;
  SimWorker* strangers_[kStrangers] = {};       // created at first use
  std::map<std::string, Open> open_[kClients];  // client request id -> what was told
  std::map<std::string, int> max_tokens_[kClients];  // client request id -> its max_tokens
  bool client_gone_[kClients] = {};
  std::map<int, std::map<uint64_t, Known>> known_;  // replica -> request id -> state
  int n_restarts_ = 0;
};

}  // namespace flover::fuzzing
