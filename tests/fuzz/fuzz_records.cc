#include "tests/fuzz/fuzz_records.h"

#include <algorithm>

#include "common/check.h"

namespace flover::fuzzing {

bool RecordReader::Next(Record* record) {
  if (rest_.size() < 3) return false;
  record->op = static_cast<uint8_t>(rest_[0]);
  const size_t length = static_cast<uint8_t>(rest_[1]) | (static_cast<size_t>(static_cast<uint8_t>(rest_[2])) << 8);
  rest_.remove_prefix(3);
  record->payload = rest_.substr(0, std::min(length, rest_.size()));
  rest_.remove_prefix(record->payload.size());
  return true;
}

std::string EncodeRecord(uint8_t op, std::string_view payload) {
  FLOVER_CHECK_LE(payload.size(), 65535u);
  std::string out;
  out.push_back(static_cast<char>(op));
  out.push_back(static_cast<char>(payload.size() & 0xFF));
  out.push_back(static_cast<char>(payload.size() >> 8));
  out.append(payload);
  return out;
}

}  // namespace flover::fuzzing
