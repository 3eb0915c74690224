#include "worker/comm/kv_store.h"

namespace flover {

Status InMemoryKvStore::Set(const std::string& key, const std::vector<char>& value) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    values_[key] = value;
  }
  cv_.notify_all();
  return Status::Ok();
}

Result<std::vector<char>> InMemoryKvStore::Get(const std::string& key, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool found = cv_.wait_for(lock, timeout, [&] { return values_.count(key) > 0; });
  if (!found)
    return Unavailable("key '" + key + "' was not set within " + std::to_string(timeout.count()) + " ms");
  return values_.at(key);
}

}  // namespace flover
