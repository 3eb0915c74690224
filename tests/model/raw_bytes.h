// Appending values' bytes as they are in memory (little-endian here), for the test
// writers of binary model files.
#pragma once

#include <cstring>
#include <string>

namespace flover::testing {

template <typename T>
void Put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

}  // namespace flover::testing
