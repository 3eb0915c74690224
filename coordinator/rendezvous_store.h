// RendezvousStore: the key-value relay that workers of one replica use to find each
// other (Gloo's store keys now, the NCCL unique id later): StoreSet{key, value} and
// StoreGet{key, timeout_ms} -> StoreValue{key, found, value}.
//
// Keys are namespaced per replica. A get for a key that does not exist yet waits: it is
// answered by the Set that creates the key, or with found = false once its deadline
// passes (Expire). The store never sends anything itself: each call returns the replies
// to send, addressed by the requester's control-socket identity. Time comes in as a
// parameter, so the store is pure.
//
// Thread-safety: none; owned by the coordinator's event loop.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flover.pb.h"

namespace flover {

class RendezvousStore {
 public:
  using Clock = std::chrono::steady_clock;

  struct Reply {
    std::string identity;  // the worker that asked
    proto::StoreValue value;
  };

  // Stores `value` under (replica, key), replacing any earlier value, and answers the
  // gets waiting for it.
  std::vector<Reply> Set(int replica, const std::string& key, std::string value);

  // The value when the key exists; otherwise the get waits until `deadline` and nullopt
  // is returned (a deadline not after `now` answers found = false at once).
  std::optional<proto::StoreValue> Get(int replica, const std::string& identity, const std::string& key,
                                       Clock::time_point now, Clock::time_point deadline);

  // Answers (found = false) every waiting get whose deadline is <= now.
  std::vector<Reply> Expire(Clock::time_point now);

  // Forgets the keys and waiting gets of a replica (it failed; a restarted one must not
  // see the old incarnation's keys).
  void Clear(int replica);

  // The earliest deadline of a waiting get, for the poll timeout.
  std::optional<Clock::time_point> next_deadline() const;

  int n_keys(int replica) const;
  int n_waiting() const { return static_cast<int>(waiting_.size()); }

 private:
  struct WaitingGet {
    int replica;
    std::string identity;
    std::string key;
    Clock::time_point deadline;
  };

  std::map<std::pair<int, std::string>, std::string> values_;
  std::vector<WaitingGet> waiting_;  // in arrival order
};

}  // namespace flover
