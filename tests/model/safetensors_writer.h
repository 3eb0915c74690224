// SafetensorsWriter: builds small .safetensors files for the loader tests (tests only;
// binary files are never committed). It writes exactly what it is given, so tests can
// also build malformed files: forged data_offsets, a forged header length, any dtype
// string, or a header text of their own.
//
// Layout written: u64 header length, the JSON header (tensors in insertion order,
// "__metadata__" first when set), padded with spaces to a multiple of 8, then each
// tensor's bytes back to back in insertion order.
//
// Not thread-safe; a plain value type.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace flover::testing {

// binary32 -> bfloat16, round to nearest even (NaN kept quiet).
uint16_t FloatToBFloat16(float f);

class SafetensorsWriter {
 public:
  void AddF32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& data);
  void AddF16(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& data);
  void AddBF16(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& data);
  // `bytes` stored verbatim under `dtype` ("I64", "F32", "NOPE").
  void AddRaw(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
              std::string bytes);
  void Remove(const std::string& name);
  void SetMetadata(std::map<std::string, std::string> metadata) { metadata_ = std::move(metadata); }

  // Write these instead of the real values.
  void ForgeOffsets(const std::string& name, uint64_t begin, uint64_t end) { forged_offsets_[name] = {begin, end}; }
  void ForgeHeaderLength(uint64_t n) { forged_header_length_ = n; }
  void ReplaceHeader(std::string json) { replaced_header_ = std::move(json); }

  std::string Header() const;  // the JSON text (before padding)
  std::string Serialize() const;
  // False (and a message on stderr) when the file cannot be written.
  bool WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::vector<Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> forged_offsets_;
  std::optional<uint64_t> forged_header_length_;
  std::optional<std::string> replaced_header_;
};

}  // namespace flover::testing
