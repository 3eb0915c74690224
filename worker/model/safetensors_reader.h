// SafetensorsReader: one .safetensors file (Hugging Face's tensor container), memory-
// mapped read-only. Open() parses and checks the header; tensor bytes are read later,
// straight from the mapping, only for the parts a caller asks for (a tensor-parallel
// rank converts only its slice, so a model is never held whole in memory).
//
// Layout (https://huggingface.co/docs/safetensors):
//   u64 N (little-endian), N bytes of JSON, then the byte buffer.
//   JSON: {"__metadata__": {...}, "NAME": {"dtype": "F16", "shape": [r, c],
//          "data_offsets": [begin, end]}, ...}; offsets are relative to the buffer.
//
// Hostile input: N is bounded (kMaxHeaderBytes) and must lie inside the file; the JSON
// must be an object nested at most a few levels deep, with short arrays and no tensor
// named twice; every tensor needs a known dtype
// string, non-negative integer dims whose product (times the element size, without
// overflow) equals end - begin, and begin <= end <= buffer size; no two tensors' bytes
// overlap. Any violation is Corruption naming the file and the tensor. `__metadata__` is
// not interpreted. Every dtype of the format is accepted in the header (its size is
// known, so its bounds are checked), but only F32, F16 and BF16 convert to fp32:
// ReadFloat on another dtype is InvalidArgument naming the tensor and the dtype.
//
// A file truncated by another process while mapped makes reads fault (SIGBUS); model
// folders are expected not to change while loading.
//
// Thread-safety: immutable after Open(); const methods may run concurrently.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace flover {

enum class SafetensorsDtype : uint8_t {
  kF32, kF16, kBF16,  // convertible to fp32
  kF64, kI64, kI32, kI16, kI8, kU64, kU32, kU16, kU8, kBool, kF8E4M3, kF8E5M2,
};
const char* SafetensorsDtypeName(SafetensorsDtype dtype);  // "F16", as in the header
size_t SafetensorsDtypeSize(SafetensorsDtype dtype);       // bytes per element

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first; [] for a scalar
  int64_t n_elements = 0;
  uint64_t begin = 0;          // byte offsets in the buffer, end - begin = n_elements * size
  uint64_t end = 0;

  // A 2-D view for slicing: rows = shape[0] (1 for a scalar), cols = the product of the
  // other dims (1 for a vector).
  int64_t rows() const;
  int64_t cols() const;
};

// "[4096, 11008]", for messages.
std::string ShapeString(std::span<const int64_t> shape);

class SafetensorsReader {
 public:
  static constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

  // Maps `path` and parses its header. Errors name the path: NotFound, IoError (cannot
  // open/map), Corruption (malformed header or offsets).
  static Result<std::unique_ptr<SafetensorsReader>> Open(const std::string& path);
  // The same over bytes in memory that the caller keeps alive and unchanged for the
  // reader's lifetime (tests, fuzzing); `name` stands for the path in messages.
  static Result<std::unique_ptr<SafetensorsReader>> FromBytes(std::span<const uint8_t> bytes, std::string name);

  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }  // in name order
  const SafetensorsTensor* Find(const std::string& name) const;  // nullptr when absent

  // The tensor's bytes in the mapping (no copy). REQUIRES: t comes from tensors().
  std::span<const uint8_t> Data(const SafetensorsTensor& t) const;

  // Converts rows [row_begin, row_begin + n_rows) x columns [col_begin, col_begin +
  // n_cols) of t's 2-D view (rows()/cols()) to fp32 into dst [n_rows, n_cols], reading
  // only those bytes. F16 and BF16 convert exactly. InvalidArgument (naming the tensor
  // and dtype) for a dtype other than F32/F16/BF16.
  // REQUIRES: t comes from tensors(); the ranges lie inside the view.
  Status ReadFloat(const SafetensorsTensor& t, int64_t row_begin, int64_t n_rows, int64_t col_begin,
                   int64_t n_cols, float* dst) const;
  // The whole tensor as fp32.
  Result<std::vector<float>> ReadFloat(const SafetensorsTensor& t) const;

 private:
  SafetensorsReader() = default;
  Status Parse();

  // Constant after Open() / FromBytes():
  std::string path_;
  const uint8_t* bytes_ = nullptr;  // the whole file
  uint64_t size_ = 0;
  bool mapped_ = false;             // bytes_ is our mmap (unmapped on destruction)
  uint64_t buffer_offset_ = 0;      // 8 + header length
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t> index_;  // name -> index into tensors_
};

// BF16 -> fp32: the 16 bits are the upper half of the fp32 (exact).
inline float BFloat16ToFloat(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

}  // namespace flover
