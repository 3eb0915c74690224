// RequestTable: the client side of every request in flight: who asked (connection and
// client_request_id), where it runs, what it produced so far and when. The scheduler
// holds the KV side of the same requests under the same cluster-wide id.
//
// A request is in the table from Accepted (or from submission, while it waits for a
// ready replica) until its Done or Error is sent. (client, client_request_id) is unique
// among the requests in the table.
//
// Thread-safety: none; owned by the coordinator's event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/request_params.h"
#include "coordinator/client_role.h"
#include "common/token_stream_decoder.h"
#include "coordinator/stop_strings.h"

namespace flover {

struct TrackedRequest {
  using Clock = std::chrono::steady_clock;

  uint64_t id = 0;                // cluster-wide
  std::string client;             // ROUTER identity of the client connection
  std::string client_request_id;  // chosen by the client
  ClientRole role = ClientRole::kAdmin;  // of the client's key: what its errors may say
  bool stream = false;
  int priority = 0;
  int replica = -1;  // -1: queued until a replica is ready
  int failovers = 0;  // times it moved on after its replica failed
  bool accepted = false;  // its client got Accepted (the first assignment)
  // While queued after a failover: the tokens it generated before.
  std::vector<int> generated_before;
  // While queued because a replica failed (moved from it, or submitted while every
  // replica was down): why; the error when queue_deadline passes.
  std::string failure;
  // While queued: what the scheduler will run, and whether the model checks are done.
  RequestParams params;
  bool model_checked = false;
  Clock::time_point queue_deadline{};

  int prompt_tokens = 0;
  int last_prompt_token = -1;  // decodes the first generated token
  std::vector<int> tokens;     // generated so far
  // With sampling.logprobs (want_logprobs): one per token of `tokens`, kept across
  // failovers like the tokens.
  bool want_logprobs = false;
  std::vector<TokenLogprobs> logprobs;
  std::string text;            // their decoded text (valid UTF-8)
  TokenStreamDecoder decoder;  // the text of `tokens`; holds a character split over tokens
  std::optional<StopStrings> stop_strings;  // holds text that may begin a stop string
  Clock::time_point submitted{};
  std::optional<Clock::time_point> deadline;  // SubmitRequest.timeout_ms after submitted
  std::optional<Clock::time_point> first_step;
  std::optional<Clock::time_point> first_token;
};

class RequestTable {
 public:
  // REQUIRES: r.id and (r.client, r.client_request_id) not in the table.
  TrackedRequest& Add(TrackedRequest r);
  // nullptr when absent.
  TrackedRequest* Find(uint64_t id);
  TrackedRequest* FindByClient(const std::string& client, const std::string& client_request_id);
  // REQUIRES: id in the table.
  void Remove(uint64_t id);

  int size() const { return static_cast<int>(by_id_.size()); }
  // Requests of one client connection in the table (limits.max_requests_per_client).
  int CountOf(const std::string& client) const;
  // Ids in ascending order (= submission order): all, or one client connection's.
  std::vector<uint64_t> ids() const;
  std::vector<uint64_t> IdsOf(const std::string& client) const;

 private:
  using ByClient = std::map<std::pair<std::string, std::string>, uint64_t>;
  // The first entry of `client` in by_client_ (its entries are adjacent).
  ByClient::const_iterator FirstOf(const std::string& client) const { return by_client_.lower_bound({client, ""}); }

  std::map<uint64_t, TrackedRequest> by_id_;
  ByClient by_client_;
};

}  // namespace flover
