#include "worker/model/gguf_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>
#include <type_traits>

namespace flover {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;             // GGML_MAX_DIMS

// Smallest encoding of one kv pair (empty key, 1-byte value) and of one tensor info
// (empty name, 0 dims): bounds for the header counts before reserving anything.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;

// Bytes per element of fixed-size scalar value types; 0 for string/array.
uint64_t ScalarSize(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64: return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray: return 0;
  }
  return 0;
}

bool ValidValueType(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kFloat64); }

// Sequential, bounds-checked reads of the header region. Every read either succeeds or
// returns a Status; `remaining()` is what a length may claim at most.
class Cursor {
 public:
  Cursor(std::FILE* f, uint64_t file_size) : f_(f), size_(file_size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  Status Bytes(void* dst, uint64_t n, const char* what) {
    if (n > remaining())
      return Corruption("file ends inside the header while reading " + std::string(what) + " at byte " +
                        std::to_string(pos_) + " (needs " + std::to_string(n) + " bytes, " +
                        std::to_string(remaining()) + " left)");
    if (n > 0 && std::fread(dst, 1, n, f_) != n)
      return IoError("read failed at byte " + std::to_string(pos_) + ": " + std::strerror(errno));
    pos_ += n;
    return Status::Ok();
  }

  template <typename T>
  Status Pod(T* v, const char* what) {
    unsigned char buf[sizeof(T)];
    FLOVER_RETURN_IF_ERROR(Bytes(buf, sizeof(T), what));
    std::memcpy(v, buf, sizeof(T));  // the file is little-endian, as is every supported host
    return Status::Ok();
  }

  Status String(std::string* s, const char* what) {
    uint64_t n = 0;
    FLOVER_RETURN_IF_ERROR(Pod(&n, what));
    if (n > remaining())
      return Corruption(std::string(what) + " at byte " + std::to_string(pos_ - 8) + " claims a length of " +
                        std::to_string(n) + " bytes, but only " + std::to_string(remaining()) +
                        " bytes are left in the file");
    s->resize(n);
    return Bytes(s->data(), n, what);
  }

 private:
  std::FILE* f_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

template <typename T>
Status ReadInt(Cursor& c, GgufValue* v) {
  T x = 0;
  FLOVER_RETURN_IF_ERROR(c.Pod(&x, "a metadata value"));
  if constexpr (std::is_signed_v<T>) {
    v->i = x;
  } else {
    v->u = x;
    v->i = static_cast<int64_t>(x);  // wraps for uint64 values above INT64_MAX; use `u`
  }
  return Status::Ok();
}

template <typename T>
Status ReadFloat(Cursor& c, GgufValue* v) {
  T x = 0;
  FLOVER_RETURN_IF_ERROR(c.Pod(&x, "a metadata value"));
  v->f = x;
  return Status::Ok();
}

Status ReadScalar(Cursor& c, GgufValueType t, GgufValue* v) {
  switch (t) {
    case GgufValueType::kUint8: return ReadInt<uint8_t>(c, v);
    case GgufValueType::kInt8: return ReadInt<int8_t>(c, v);
    case GgufValueType::kUint16: return ReadInt<uint16_t>(c, v);
    case GgufValueType::kInt16: return ReadInt<int16_t>(c, v);
    case GgufValueType::kUint32: return ReadInt<uint32_t>(c, v);
    case GgufValueType::kInt32: return ReadInt<int32_t>(c, v);
    case GgufValueType::kUint64: return ReadInt<uint64_t>(c, v);
    case GgufValueType::kInt64: return ReadInt<int64_t>(c, v);
    case GgufValueType::kFloat32: return ReadFloat<float>(c, v);
    case GgufValueType::kFloat64: return ReadFloat<double>(c, v);
    case GgufValueType::kBool: {
      FLOVER_RETURN_IF_ERROR(ReadInt<uint8_t>(c, v));
      if (v->u > 1) return Corruption("a bool with byte value " + std::to_string(v->u));
      return Status::Ok();
    }
    case GgufValueType::kString: return c.String(&v->str, "a metadata string");
    case GgufValueType::kArray: break;
  }
  return Internal("ReadScalar called for an array");
}

Status ReadValue(Cursor& c, GgufValueType t, GgufValue* v, const std::string& key) {
  v->type = t;
  if (t != GgufValueType::kArray) return ReadScalar(c, t, v).WithContext("metadata " + key);

  uint32_t at = 0;
  FLOVER_RETURN_IF_ERROR(c.Pod(&at, "an array element type"));
  if (!ValidValueType(at))
    return Corruption("metadata " + key + " is an array of unknown value type " + std::to_string(at));
  v->array_type = static_cast<GgufValueType>(at);
  if (v->array_type == GgufValueType::kArray)
    return InvalidArgument("metadata " + key + " is an array of arrays, which is not supported");
  FLOVER_RETURN_IF_ERROR(c.Pod(&v->array_size, "an array length"));
  const uint64_t n = v->array_size;
  // Each element takes at least its scalar size, or 8 bytes (the length) for a string.
  const uint64_t min_elem = v->array_type == GgufValueType::kString ? 8 : ScalarSize(v->array_type);
  if (n > c.remaining() / min_elem)
    return Corruption("metadata " + key + " claims " + std::to_string(n) + " " + GgufValueTypeName(v->array_type) +
                      " elements (at least " + std::to_string(min_elem) + " bytes each), but only " +
                      std::to_string(c.remaining()) + " bytes are left in the file");
  if (v->array_type == GgufValueType::kString) {
    v->strings.resize(n);
    for (uint64_t i = 0; i < n; ++i) {
      Status s = c.String(&v->strings[i], "an array string");
      if (!s.ok()) return s.WithContext("metadata " + key + "[" + std::to_string(i) + "]");
    }
    return Status::Ok();
  }
  v->data.resize(n * min_elem);
  return c.Bytes(v->data.data(), v->data.size(), "an array").WithContext("metadata " + key);
}

}  // namespace

std::string GgufShapeString(const std::vector<uint64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

const char* GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64: return true;
    default: return false;
  }
}

Result<std::unique_ptr<GgufReader>> GgufReader::Open(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) return NotFound(path + ": no such file");
  if (std::filesystem::is_directory(status)) return InvalidArgument(path + ": is a directory, not a GGUF file");
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return IoError(path + ": cannot open: " + std::strerror(errno));
  return FromStream(file, path);
}

Result<std::unique_ptr<GgufReader>> GgufReader::FromStream(std::FILE* file, std::string name) {
  std::unique_ptr<GgufReader> r(new GgufReader());
  r->path_ = std::move(name);
  r->file_ = file;
  if (fseeko(file, 0, SEEK_END) != 0) return IoError(r->path_ + ": cannot seek to the end: " + std::strerror(errno));
  const off_t size = ftello(file);
  if (size < 0 || fseeko(file, 0, SEEK_SET) != 0)
    return IoError(r->path_ + ": cannot get the file size: " + std::strerror(errno));
  r->file_size_ = static_cast<uint64_t>(size);
  Status s = r->Parse();
  if (!s.ok()) return s.WithContext(r->path_);
  return r;
}

GgufReader::~GgufReader() {
  if (file_ != nullptr) std::fclose(file_);
}

Status GgufReader::Parse() {
  Cursor c(file_, file_size_);
  if (file_size_ < 4)
    return InvalidArgument("not a GGUF file: it has " + std::to_string(file_size_) + " bytes, too few for the magic");
  uint32_t magic = 0;
  FLOVER_RETURN_IF_ERROR(c.Pod(&magic, "the magic"));
  if (magic != kGgufMagic) {
    unsigned char m[4];
    std::memcpy(m, &magic, 4);
    std::string shown;
    for (unsigned char ch : m) {
      if (ch >= 32 && ch < 127) {
        shown += static_cast<char>(ch);
      } else {
        static const char kHex[] = "0123456789abcdef";
        shown += std::string("\\x") + kHex[ch >> 4] + kHex[ch & 15];
      }
    }
    return InvalidArgument("not a GGUF file: the first 4 bytes are \"" + shown + "\", expected \"GGUF\"");
  }
  FLOVER_RETURN_IF_ERROR(c.Pod(&version_, "the version"));
  if (version_ != 2 && version_ != 3) {
    if ((version_ & 0xFFFF) == 0 && version_ != 0)
      return InvalidArgument("GGUF version field is " + std::to_string(version_) +
                             ": this looks like a big-endian GGUF file, which is not supported");
    return InvalidArgument("unsupported GGUF version " + std::to_string(version_) + " (supported: 2 and 3)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  FLOVER_RETURN_IF_ERROR(c.Pod(&n_tensors, "the tensor count"));
  FLOVER_RETURN_IF_ERROR(c.Pod(&n_kv, "the metadata count"));
  if (n_kv > c.remaining() / kMinKvBytes)
    return Corruption("header claims " + std::to_string(n_kv) + " metadata entries, more than the " +
                      std::to_string(c.remaining()) + " bytes left in the file can hold");
  if (n_tensors > c.remaining() / kMinTensorInfoBytes)
    return Corruption("header claims " + std::to_string(n_tensors) + " tensors, more than the " +
                      std::to_string(c.remaining()) + " bytes left in the file can hold");

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    FLOVER_RETURN_IF_ERROR(c.String(&key, "a metadata key"));
    uint32_t type = 0;
    FLOVER_RETURN_IF_ERROR(c.Pod(&type, "a metadata type"));
    if (!ValidValueType(type))
      return Corruption("metadata " + key + " has unknown value type " + std::to_string(type));
    GgufValue value;
    FLOVER_RETURN_IF_ERROR(ReadValue(c, static_cast<GgufValueType>(type), &value, key));
    if (!metadata_.emplace(key, std::move(value)).second)
      return Corruption("metadata key " + key + " appears twice");
  }

  if (const GgufValue* a = Find("general.alignment")) {
    if (!a->is_integer() || a->i <= 0 || (a->u & (a->u - 1)) != 0 || a->u > (uint64_t{1} << 30))
      return Corruption("general.alignment must be a positive power-of-two integer, got type " +
                        std::string(GgufValueTypeName(a->type)) + " value " + std::to_string(a->i));
    alignment_ = a->u;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensorInfo info;
    FLOVER_RETURN_IF_ERROR(c.String(&info.name, "a tensor name"));
    uint32_t n_dims = 0;
    FLOVER_RETURN_IF_ERROR(c.Pod(&n_dims, "a tensor's dimension count"));
    if (n_dims > kMaxDims)
      return Corruption("tensor " + info.name + " has " + std::to_string(n_dims) + " dimensions (at most " +
                        std::to_string(kMaxDims) + ")");
    info.ne.resize(n_dims);
    info.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      FLOVER_RETURN_IF_ERROR(c.Pod(&info.ne[d], "a tensor dimension"));
      if (info.ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (info.ne[d] != 0 && info.n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / info.ne[d]))
        return Corruption("tensor " + info.name + " has absurd dimensions " + GgufShapeString(info.ne));
      info.n_elements *= info.ne[d];
    }
    FLOVER_RETURN_IF_ERROR(c.Pod(&info.ggml_type, "a tensor type"));
    FLOVER_RETURN_IF_ERROR(c.Pod(&info.offset, "a tensor offset"));
    if (info.offset % alignment_ != 0)
      return Corruption("tensor " + info.name + " has offset " + std::to_string(info.offset) +
                        ", not a multiple of the alignment " + std::to_string(alignment_));
    if (FindGgmlType(info.ggml_type) != nullptr) {
      Result<GgmlTensorLayout> layout = GgmlLayout(info.ggml_type, info.ne);
      if (!layout.ok())
        return layout.status().WithContext("tensor " + info.name + " " + GgufShapeString(info.ne) + " " +
                                           GgmlTypeName(info.ggml_type));
      info.layout = *layout;
    }
    if (!tensor_index_.emplace(info.name, tensors_.size()).second)
      return Corruption("tensor " + info.name + " appears twice");
    tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment (it may be empty when
  // there are no tensors, so allow it to coincide with the end of the file).
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_offset_ > file_size_)
    return Corruption("file ends (" + std::to_string(file_size_) + " bytes) before the data section at byte " +
                      std::to_string(data_offset_));
  for (const GgufTensorInfo& info : tensors_) {
    if (!info.layout) continue;
    const uint64_t n_bytes = info.layout->n_bytes;
    const uint64_t room = file_size_ - std::min(file_size_, data_offset_);
    if (info.offset > room || n_bytes > room - info.offset)
      return Corruption("tensor " + info.name + " " + GgufShapeString(info.ne) + " " + GgmlTypeName(info.ggml_type) +
                        " needs bytes " + std::to_string(data_offset_ + info.offset) + ".." +
                        std::to_string(data_offset_ + info.offset + n_bytes) +
                        " but the file has only " + std::to_string(file_size_) + " bytes (truncated?)");
  }
  return Status::Ok();
}

const GgufValue* GgufReader::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufReader::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<std::vector<float>> GgufReader::FloatArray(const std::string& key, const GgufValue& value) const {
  if (value.type != GgufValueType::kArray ||
      (value.array_type != GgufValueType::kFloat32 && value.array_type != GgufValueType::kFloat64))
    return InvalidArgument("metadata " + key + " must be an array of floats, got " +
                           (value.type == GgufValueType::kArray
                                ? std::string("an array of ") + GgufValueTypeName(value.array_type)
                                : std::string(GgufValueTypeName(value.type))));
  std::vector<float> out(value.array_size);
  for (uint64_t i = 0; i < value.array_size; ++i) {
    if (value.array_type == GgufValueType::kFloat32) {
      std::memcpy(&out[i], value.data.data() + 4 * i, 4);
    } else {
      double d;
      std::memcpy(&d, value.data.data() + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  }
  return out;
}

Status GgufReader::ReadTensorRows(const GgufTensorInfo& info, uint64_t row_begin, uint64_t n_rows, void* dst) {
  FLOVER_CHECK(info.layout.has_value()) << "tensor " << info.name;
  const GgmlTensorLayout& l = *info.layout;
  FLOVER_CHECK(row_begin <= l.n_rows && n_rows <= l.n_rows - row_begin)
      << "tensor " << info.name << ": rows " << row_begin << " + " << n_rows << " of " << l.n_rows;
  // Inside the file (checked by Parse), so none of this overflows.
  const uint64_t pos = data_offset_ + info.offset + row_begin * l.row_bytes;
  if (pos > static_cast<uint64_t>(std::numeric_limits<off_t>::max()) || fseeko(file_, static_cast<off_t>(pos), SEEK_SET) != 0)
    return IoError("cannot seek to tensor " + info.name + " at byte " + std::to_string(pos) + ": " +
                   std::strerror(errno));
  const size_t n = n_rows * l.row_bytes;
  if (n > 0 && std::fread(dst, 1, n, file_) != n) {
    if (std::feof(file_))
      return Corruption("file ended while reading tensor " + info.name + " (did it shrink?)");
    return IoError("cannot read tensor " + info.name + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Status GgufReader::ReadTensorData(const GgufTensorInfo& info, void* dst) {
  FLOVER_CHECK(info.layout.has_value()) << "tensor " << info.name;
  return ReadTensorRows(info, 0, info.layout->n_rows, dst);
}

Status GgufReader::ReadRowsAsFloat(const GgufTensorInfo& info, uint64_t row_begin, uint64_t n_rows, float* dst,
                                   size_t chunk_bytes) {
  FLOVER_CHECK(info.layout.has_value()) << "tensor " << info.name;
  FLOVER_CHECK(FindGgmlType(info.ggml_type)->loadable) << "tensor " << info.name << " " << GgmlTypeName(info.ggml_type);
  const GgmlTensorLayout& l = *info.layout;
  if (info.ggml_type == kGgmlTypeF32) return ReadTensorRows(info, row_begin, n_rows, dst);
  if (l.row_bytes == 0 || n_rows == 0) return Status::Ok();
  const uint64_t rows_per_chunk = std::clamp<uint64_t>(chunk_bytes / l.row_bytes, 1, n_rows);
  std::vector<uint8_t> raw(rows_per_chunk * l.row_bytes);
  for (uint64_t done = 0; done < n_rows; done += rows_per_chunk) {
    const uint64_t rows = std::min(rows_per_chunk, n_rows - done);
    FLOVER_RETURN_IF_ERROR(ReadTensorRows(info, row_begin + done, rows, raw.data()));
    DequantizeGgml(info.ggml_type, raw.data(), dst + done * l.n_cols, rows * l.n_cols);
  }
  return Status::Ok();
}

}  // namespace flover
