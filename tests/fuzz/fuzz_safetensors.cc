// Fuzzes the safetensors reader (worker/model/safetensors_reader.h) on bytes in memory:
// the header length, the JSON header (nesting, long arrays, repeated names, every field
// of every tensor entry), the offsets' bounds and overlaps. Every tensor the reader
// accepts must lie inside the input and not overlap another; each of a convertible
// dtype is converted whole and as a slice (its last row, the last half of its columns).
//
// Input: the .safetensors file. Seeds: small files from the seed writer (F32, F16,
// BF16, I64, metadata, empty and scalar tensors). Dictionary: safetensors.dict.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "worker/model/safetensors_reader.h"

using namespace flover;

namespace {

[[noreturn]] void Fail(const char* what, const SafetensorsTensor& t) {
  std::fprintf(stderr, "%s: tensor %s\n", what, t.name.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::FromBytes({data, size}, "fuzz.safetensors");
  if (!reader.ok()) return 0;
  const SafetensorsReader& r = **reader;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const SafetensorsTensor& t : r.tensors()) {
    const std::span<const uint8_t> bytes = r.Data(t);
    if (bytes.data() < data || bytes.data() + bytes.size() > data + size) Fail("data outside the input", t);
    if (bytes.size() != static_cast<size_t>(t.n_elements) * SafetensorsDtypeSize(t.dtype)) Fail("wrong size", t);
    if (!bytes.empty()) ranges.emplace_back(bytes.data() - data, bytes.data() - data + bytes.size());
    if (r.Find(t.name) != &t) Fail("Find does not return the tensor", t);

    Result<std::vector<float>> all = r.ReadFloat(t);
    const bool convertible = t.dtype == SafetensorsDtype::kF32 || t.dtype == SafetensorsDtype::kF16 ||
                             t.dtype == SafetensorsDtype::kBF16;
    if (all.ok() != convertible) Fail("ReadFloat disagrees with the dtype", t);
    if (!convertible || t.rows() == 0 || t.cols() == 0) continue;
    const int64_t half = t.cols() / 2;
    std::vector<float> slice(static_cast<size_t>(t.cols() - half));
    if (!r.ReadFloat(t, t.rows() - 1, 1, half, t.cols() - half, slice.data()).ok()) Fail("slice failed", t);
    // A float and its own bits: compare as bytes (NaNs included).
    if (!std::equal(slice.begin(), slice.end(), all->end() - static_cast<ptrdiff_t>(slice.size()),
                    [](float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }))
      Fail("slice differs from the whole", t);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) {
      std::fprintf(stderr, "accepted overlapping tensors\n");
      std::abort();
    }
  return 0;
}
