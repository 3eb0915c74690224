#include "tests/model/safetensors_writer.h"

#include <bit>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "tests/model/gguf_writer.h"
#include "tests/model/raw_bytes.h"
#include "tests/model/test_model_files.h"

namespace flover::testing {

uint16_t FloatToBFloat16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>((x >> 16) | 0x40u);
  const uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

void SafetensorsWriter::AddF32(const std::string& name, const std::vector<int64_t>& shape,
                               const std::vector<float>& data) {
  std::string bytes;
  for (float f : data) Put(bytes, f);
  AddRaw(name, "F32", shape, std::move(bytes));
}

void SafetensorsWriter::AddF16(const std::string& name, const std::vector<int64_t>& shape,
                               const std::vector<float>& data) {
  std::string bytes;
  for (float f : data) Put<uint16_t>(bytes, FloatToHalf(f));
  AddRaw(name, "F16", shape, std::move(bytes));
}

void SafetensorsWriter::AddBF16(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<float>& data) {
  std::string bytes;
  for (float f : data) Put<uint16_t>(bytes, FloatToBFloat16(f));
  AddRaw(name, "BF16", shape, std::move(bytes));
}

void SafetensorsWriter::AddRaw(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                               std::string bytes) {
  tensors_.push_back({name, dtype, shape, std::move(bytes)});
}

void SafetensorsWriter::Remove(const std::string& name) {
  std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
}

std::string SafetensorsWriter::Header() const {
  if (replaced_header_) return *replaced_header_;
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    std::pair<uint64_t, uint64_t> offsets{offset, offset + t.bytes.size()};
    if (auto it = forged_offsets_.find(t.name); it != forged_offsets_.end()) offsets = it->second;
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offsets.first, offsets.second}}};
    offset += t.bytes.size();
  }
  return header.dump();
}

std::string SafetensorsWriter::Serialize() const {
  std::string header = Header();
  if (!replaced_header_) header.append((8 - header.size() % 8) % 8, ' ');
  std::string out;
  Put<uint64_t>(out, forged_header_length_.value_or(header.size()));
  out += header;
  for (const Tensor& t : tensors_) out += t.bytes;
  return out;
}

bool SafetensorsWriter::WriteFile(const std::string& path) const {
  if (WriteBytes(path, Serialize())) return true;
  std::fprintf(stderr, "cannot write %s\n", path.c_str());
  return false;
}

}  // namespace flover::testing
