#include "coordinator/rendezvous_store.h"

#include <algorithm>

namespace flover {
namespace {

proto::StoreValue Found(const std::string& key, const std::string& value) {
  proto::StoreValue v;
  v.set_key(key);
  v.set_found(true);
  v.set_value(value);
  return v;
}

proto::StoreValue Missing(const std::string& key) {
  proto::StoreValue v;
  v.set_key(key);
  v.set_found(false);
  return v;
}

}  // namespace

std::vector<RendezvousStore::Reply> RendezvousStore::Set(int replica, const std::string& key, std::string value) {
  std::string& stored = values_[{replica, key}];
  stored = std::move(value);
  std::vector<Reply> replies;
  auto answered = [&](const WaitingGet& get) {
    if (get.replica != replica || get.key != key) return false;
    replies.push_back({get.identity, Found(key, stored)});
    return true;
  };
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), answered), waiting_.end());
  return replies;
}

std::optional<proto::StoreValue> RendezvousStore::Get(int replica, const std::string& identity,
                                                      const std::string& key, Clock::time_point now,
                                                      Clock::time_point deadline) {
  auto it = values_.find({replica, key});
  if (it != values_.end()) return Found(key, it->second);
  if (deadline <= now) return Missing(key);
  waiting_.push_back({replica, identity, key, deadline});
  return std::nullopt;
}

std::vector<RendezvousStore::Reply> RendezvousStore::Expire(Clock::time_point now) {
  std::vector<Reply> replies;
  auto expired = [&](const WaitingGet& get) {
    if (get.deadline > now) return false;
    replies.push_back({get.identity, Missing(get.key)});
    return true;
  };
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), expired), waiting_.end());
  return replies;
}

void RendezvousStore::Clear(int replica) {
  std::erase_if(values_, [replica](const auto& kv) { return kv.first.first == replica; });
  std::erase_if(waiting_, [replica](const WaitingGet& get) { return get.replica == replica; });
}

std::optional<RendezvousStore::Clock::time_point> RendezvousStore::next_deadline() const {
  std::optional<Clock::time_point> next;
  for (const WaitingGet& get : waiting_)
    if (!next || get.deadline < *next) next = get.deadline;
  return next;
}

int RendezvousStore::n_keys(int replica) const {
  return static_cast<int>(
      std::count_if(values_.begin(), values_.end(), [replica](const auto& kv) { return kv.first.first == replica; }));
}

}  // namespace flover
