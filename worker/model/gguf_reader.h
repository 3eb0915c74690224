// GgufReader: the container layer of GGUF (v2 and v3, little-endian), independent of any
// model architecture. Open() parses the header, every metadata key/value and every
// tensor info, and checks that each tensor's data lies inside the file; tensor data is
// read later, one tensor (or a range of its rows) at a time, as stored or as fp32.
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
// bad_alloc, a crash or a huge allocation). Every tensor of a type ggml defines gets its
// byte layout from its type and shape (gguf_quant.h; overflow-checked, ne[0] a multiple
// of the block size) and must lie inside the file; a tensor of an unknown type id keeps
// no layout, its bytes are not bounds-checked and it cannot be read (the model loader
// rejects it).
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
#include "worker/model/gguf_quant.h"

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
  std::optional<GgmlTensorLayout> layout;  // absent for type ids ggml does not define
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

  static constexpr size_t kDefaultChunkBytes = size_t{4} << 20;

  // Reads the tensor's bytes as stored into `dst`, which must hold info.layout->n_bytes
  // bytes. The error messages name the tensor but not the file (the caller adds that).
  // REQUIRES: info comes from tensors() and info.layout has a value.
  Status ReadTensorData(const GgufTensorInfo& info, void* dst);
  // The same for rows [row_begin, row_begin + n_rows) (n_rows * row_bytes bytes).
  // REQUIRES: as ReadTensorData, and the rows exist.
  Status ReadTensorRows(const GgufTensorInfo& info, uint64_t row_begin, uint64_t n_rows, void* dst);
  // Rows [row_begin, row_begin + n_rows) as fp32 into dst[0, n_rows * n_cols), read and
  // dequantized about `chunk_bytes` of the file at a time (at least one row), so no more
  // than that is held besides `dst`. REQUIRES: as ReadTensorRows, and the type is
  // loadable (CheckLoadableGgmlType).
  Status ReadRowsAsFloat(const GgufTensorInfo& info, uint64_t row_begin, uint64_t n_rows, float* dst,
                         size_t chunk_bytes = kDefaultChunkBytes);

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

}  // namespace flover
