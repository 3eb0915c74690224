// KvStore: the small key-value store through which the ranks of a tensor-parallel group
// find each other (rendezvous). Each rank publishes its transport address under a key
// and waits for the keys of its peers.
//
// Keys are written once and never change; Get blocks until the key exists or the
// timeout passes. Implementations: InMemoryKvStore (one process, tests and in-process
// tensor parallelism, below) and a coordinator-backed store for multi-process workers.
//
// Thread-safety: implementations must be safe to call from several threads at once
// (every rank of an in-process group shares one store).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace flover {

class KvStore {
 public:
  virtual ~KvStore() = default;

  // Stores `value` under `key`, replacing any earlier value.
  virtual Status Set(const std::string& key, const std::vector<char>& value) = 0;

  // The value of `key`, waiting up to `timeout` for it to be set. Unavailable when the
  // timeout passes first (the message names the key).
  virtual Result<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) = 0;
};

// A map guarded by a mutex; Get waits on a condition variable.
class InMemoryKvStore final : public KvStore {
 public:
  Status Set(const std::string& key, const std::vector<char>& value) override;
  Result<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<char>> values_;  // guarded by mu_
};

}  // namespace flover
