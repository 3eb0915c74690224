// ReplyRouter: which exchange (and which of its submits) each client_request_id of the
// HTTP server belongs to. The server gives every submit an id of its own
// ("http-<exchange>-<index>"), sends it over the in-process client socket, and routes
// each ServerMessage that comes back by its id; a message whose id is not (or no longer)
// here, such as a late reply after a cancel, a Keepalive or a status, is dropped.
//
// An id leaves the table with the final reply of its submit (Done or Error), or when its
// exchange is forgotten (Forget: the caller cancels what was still running).
//
// Thread-safety: none; the HTTP thread owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "flover.pb.h"

namespace flover::http {

// Where the replies of an exchange go (its connection).
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // A reply for submit `index`; `final`: Done or Error, the submit's last.
  virtual void OnReply(size_t index, const proto::ServerMessage& reply, bool final) = 0;
};

// The client_request_id a reply carries; nullopt for Keepalive, status, and an Error
// without an id.
std::optional<std::string> ReplyId(const proto::ServerMessage& reply);

class ReplyRouter {
 public:
  // Ids for `n` submits of a new exchange of `sink`, in index order, registered.
  std::vector<std::string> Assign(std::weak_ptr<ReplySink> sink, size_t n);

  // Hands `reply` to its sink; false (dropped) when its id is unknown or its sink gone.
  bool Route(const proto::ServerMessage& reply);

  // Forgets `ids`; returns those that were still registered (running: to cancel).
  std::vector<std::string> Forget(const std::vector<std::string>& ids);

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::weak_ptr<ReplySink> sink;
    size_t index = 0;
  };
  uint64_t next_exchange_ = 1;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace flover::http
