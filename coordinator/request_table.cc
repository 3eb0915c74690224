#include "coordinator/request_table.h"

#include <algorithm>

#include "common/check.h"

namespace flover {

TrackedRequest& RequestTable::Add(TrackedRequest r) {
  const uint64_t id = r.id;
  auto [client_it, client_inserted] = by_client_.emplace(std::make_pair(r.client, r.client_request_id), id);
  FLOVER_CHECK(client_inserted) << "client_request_id '" << r.client_request_id << "' already in the table";
  auto [it, inserted] = by_id_.emplace(id, std::move(r));
  FLOVER_CHECK(inserted) << "request " << id << " already in the table";
  return it->second;
}

TrackedRequest* RequestTable::Find(uint64_t id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

TrackedRequest* RequestTable::FindByClient(const std::string& client, const std::string& client_request_id) {
  auto it = by_client_.find({client, client_request_id});
  return it == by_client_.end() ? nullptr : Find(it->second);
}

void RequestTable::Remove(uint64_t id) {
  auto it = by_id_.find(id);
  FLOVER_CHECK(it != by_id_.end()) << "request " << id << " not in the table";
  by_client_.erase({it->second.client, it->second.client_request_id});
  by_id_.erase(it);
}

int RequestTable::CountOf(const std::string& client) const {
  int n = 0;
  for (auto it = FirstOf(client); it != by_client_.end() && it->first.first == client; ++it) ++n;
  return n;
}

std::vector<uint64_t> RequestTable::IdsOf(const std::string& client) const {
  std::vector<uint64_t> out;
  for (auto it = FirstOf(client); it != by_client_.end() && it->first.first == client; ++it) out.push_back(it->second);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint64_t> RequestTable::ids() const {
  std::vector<uint64_t> out;
  out.reserve(by_id_.size());
  for (const auto& [id, r] : by_id_) out.push_back(id);
  return out;
}

}  // namespace flover
