// FileKvStore: a KvStore over a folder, for rendezvous between processes of one host in
// tests and benchmarks. Set writes `<dir>/<key>` atomically (temporary file + rename);
// Get polls for the file until the timeout.
#pragma once

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "worker/comm/kv_store.h"

namespace flover::testing {

class FileKvStore final : public KvStore {
 public:
  explicit FileKvStore(std::string dir) : dir_(std::move(dir)) {}

  Status Set(const std::string& key, const std::vector<char>& value) override {
    const std::string path = Path(key);
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(value.data(), static_cast<std::streamsize>(value.size()));
      if (!out) return IoError("cannot write " + tmp);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) return IoError("cannot rename " + tmp + ": " + ec.message());
    return Status::Ok();
  }

  Result<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) override {
    const std::string path = Path(key);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!std::filesystem::exists(path)) {
      if (std::chrono::steady_clock::now() >= deadline)
        return Unavailable("key '" + key + "' was not set within " + std::to_string(timeout.count()) + " ms");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  std::string Path(std::string key) const {
    for (char& c : key)
      if (c == '/') c = '_';
    return dir_ + "/" + key;
  }

  const std::string dir_;
};

// A fresh empty folder under the system's temporary directory, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "flover-comm-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace flover::testing
