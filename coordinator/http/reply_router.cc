#include "coordinator/http/reply_router.h"

#include <fmt/format.h>

namespace flover::http {

std::optional<std::string> ReplyId(const proto::ServerMessage& reply) {
  switch (reply.body_case()) {
    case proto::ServerMessage::kAccepted: return reply.accepted().client_request_id();
    case proto::ServerMessage::kToken: return reply.token().client_request_id();
    case proto::ServerMessage::kDone: return reply.done().client_request_id();
    case proto::ServerMessage::kError:
      if (reply.error().client_request_id().empty()) return std::nullopt;
      return reply.error().client_request_id();
    default: return std::nullopt;
  }
}

std::vector<std::string> ReplyRouter::Assign(std::weak_ptr<ReplySink> sink, size_t n) {
  const uint64_t exchange = next_exchange_++;
  std::vector<std::string> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    ids.push_back(fmt::format("http-{}-{}", exchange, i));
    entries_[ids.back()] = Entry{sink, i};
  }
  return ids;
}

bool ReplyRouter::Route(const proto::ServerMessage& reply) {
  const std::optional<std::string> id = ReplyId(reply);
  if (!id) return false;
  const auto it = entries_.find(*id);
  if (it == entries_.end()) return false;
  const bool final = reply.has_done() || reply.has_error();
  const std::shared_ptr<ReplySink> sink = it->second.sink.lock();
  const size_t index = it->second.index;
  if (final || !sink) entries_.erase(it);
  if (!sink) return false;
  sink->OnReply(index, reply, final);
  return true;
}

std::vector<std::string> ReplyRouter::Forget(const std::vector<std::string>& ids) {
  std::vector<std::string> running;
  for (const std::string& id : ids)
    if (entries_.erase(id) > 0) running.push_back(id);
  return running;
}

}  // namespace flover::http
