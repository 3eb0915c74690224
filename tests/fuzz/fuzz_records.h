// How the harnesses of the coordinator core read a fuzz input: a script of records,
// each one event. A record is [u8 op][u16 length, little-endian][length bytes]; a
// length past the end of the input takes what is left, and a last record of fewer than
// three bytes ends the script. The seed writer builds inputs with EncodeRecord.
//
// Thread-safety: a RecordReader is a cursor over bytes it does not own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace flover::fuzzing {

struct Record {
  uint8_t op = 0;
  std::string_view payload;
};

class RecordReader {
 public:
  RecordReader(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  // The next record; false at the end of the input.
  bool Next(Record* record);

 private:
  std::string_view rest_;
};

// The bytes of one record. REQUIRES: payload.size() <= 65535.
std::string EncodeRecord(uint8_t op, std::string_view payload);

}  // namespace flover::fuzzing
