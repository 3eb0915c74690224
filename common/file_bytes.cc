#include "common/file_bytes.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace flover {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

Result<std::string> ReadFileBytes(const std::string& path, size_t max_bytes, const std::string& what) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    const int err = errno;
    if (err == ENOENT) return NotFound(what + " " + path + " does not exist");
    return IoError("cannot open " + what + " " + path + ": " + std::strerror(err));
  }
  std::string data;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    if (data.size() + n > max_bytes)
      return InvalidArgument(what + " " + path + " is larger than " + std::to_string(max_bytes) +
                             " bytes; is it the right file?");
    data.append(buffer, n);
  }
  if (std::ferror(file.get())) return IoError("cannot read " + what + " " + path + ": " + std::strerror(errno));
  return data;
}

}  // namespace flover
