// GgufReader: the container layer of GGUF (v2 and v3, little-endian), independent of any
// model architecture. Open() parses the header, every metadata key/value and every
// tensor info, and checks that each tensor's data lies inside the file; tensor data is
// read later, one tensor at a time, with ReadTensorData().
//
// Layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
//   "GGUF" u32 version u64 n_tensors u64 n_kv
//   n_kv x { string key, u32 type, value }         string = u64 length + bytes
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to `general.alignment` (default 32), then the data section; each tensor's
//   offset is relative to the data section and a multiple of the alignment.
//
// Hostile input: every count and length read from the file is checked against the bytes
// left before anything is allocated for it, so a malformed file yields Corruption (never
// bad_alloc, a crash or a huge allocation). Tensor types other than F32/F16 are parsed
// (their byte size is known for the common ggml types) but the bytes of a tensor whose
// type has no known size are not bounds-checked here; the model loader rejects them.
//
// Thread-safety: a GgufReader owns an open FILE*; use it from one thread at a time.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace flover {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* GgufValueTypeName(GgufValueType type);
// A tensor's dimensions as "[a, b]", for messages.
std::string GgufShapeString(const std::vector<uint64_t>& ne);

// ggml tensor types this project can load, plus a name table for messages.
inline constexpr uint32_t kGgmlTypeF32 = 0;
inline constexpr uint32_t kGgmlTypeF16 = 1;
// "F32 (0)", "Q4_0 (2)", ...; "unknown (99)" for ids ggml does not define.
std::string GgmlTypeName(uint32_t ggml_type);

// One metadata value. Scalars are widened into `i` (signed and bool), `u` (unsigned) or
// `f` (floating); strings live in `str`. Arrays keep their element type: string arrays in
// `strings`, numeric/bool arrays as raw little-endian bytes in `data` (use the
// typed accessors of GgufReader). Nested arrays are rejected by the reader.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  std::string str;
  // type == kArray:
  GgufValueType array_type = GgufValueType::kUint8;
  uint64_t array_size = 0;
  std::vector<std::string> strings;  // array_type == kString
  std::vector<uint8_t> data;         // other array types: array_size * element size bytes

  bool is_integer() const;  // any of the 8 integer types (not bool)
  bool is_float() const { return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64; }
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // ggml order: ne[0] is the contiguous (column) dimension
  uint32_t ggml_type = 0;
  uint64_t offset = 0;       // relative to the data section
  uint64_t n_elements = 0;
  std::optional<uint64_t> n_bytes;  // unknown for ggml types without a size entry
};

class GgufReader {
 public:
  // Parses `path`. Errors: NotFound (missing), IoError (cannot open/read), InvalidArgument
  // (not GGUF, unsupported version or big-endian), Corruption (anything malformed). The
  // messages name `path`.
  static Result<std::unique_ptr<GgufReader>> Open(const std::string& path);
  // Parses the stream `file` (positioned anywhere; its size is found by seeking to its
  // end): a file, or bytes in memory through fmemopen(). Takes ownership of `file`, also
  // on error. `name` stands for the path in messages and in path(). Errors as Open's,
  // but never NotFound. REQUIRES: file is not null.
  static Result<std::unique_ptr<GgufReader>> FromStream(std::FILE* file, std::string name);

  ~GgufReader();
  GgufReader(const GgufReader&) = delete;
  GgufReader& operator=(const GgufReader&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute start of the data section

  // nullptr when absent.
  const GgufValue* Find(const std::string& key) const;
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }

  // Typed reads of a numeric array value. Fail (InvalidArgument naming the key) when the
  // value is not an array of a compatible element type.
  Result<std::vector<float>> FloatArray(const std::string& key, const GgufValue& value) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;  // nullptr when absent

  // Reads the tensor's bytes into `dst`, which must hold *info.n_bytes bytes. The error
  // messages name the tensor but not the file (the caller adds that).
  // REQUIRES: info comes from tensors() and info.n_bytes has a value.
  Status ReadTensorData(const GgufTensorInfo& info, void* dst);

 private:
  GgufReader() = default;
  Status Parse();

  // Constant after Open() / FromStream():
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t file_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;  // name -> index into tensors_
};

// IEEE-754 binary16 -> binary32, exact for every input (subnormals, ±0, ±inf; NaNs stay
// NaN with their payload).
float HalfToFloat(uint16_t h);
// Converts n halves; uses F16C when the CPU has it and the result is identical.
void ConvertHalfToFloat(const uint16_t* src, float* dst, size_t n);

}  // namespace flover
