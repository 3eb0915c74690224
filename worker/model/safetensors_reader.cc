#include "worker/model/safetensors_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "worker/model/gguf_quant.h"  // ConvertHalfToFloatSerial

namespace flover {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors is little-endian, as is every supported host");

// A header nests {name: {"shape": [...]}}: 3 levels. Deeper JSON is not a safetensors
// header; refusing it early bounds the parser's work on hostile input.
constexpr int kMaxJsonDepth = 8;
constexpr size_t kMaxShapeDims = 8;
constexpr size_t kMaxArrayElements = 1024;

struct DtypeEntry {
  const char* name;
  SafetensorsDtype dtype;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {"F32", SafetensorsDtype::kF32, 4},        {"F16", SafetensorsDtype::kF16, 2},
    {"BF16", SafetensorsDtype::kBF16, 2},      {"F64", SafetensorsDtype::kF64, 8},
    {"I64", SafetensorsDtype::kI64, 8},        {"I32", SafetensorsDtype::kI32, 4},
    {"I16", SafetensorsDtype::kI16, 2},        {"I8", SafetensorsDtype::kI8, 1},
    {"U64", SafetensorsDtype::kU64, 8},        {"U32", SafetensorsDtype::kU32, 4},
    {"U16", SafetensorsDtype::kU16, 2},        {"U8", SafetensorsDtype::kU8, 1},
    {"BOOL", SafetensorsDtype::kBool, 1},      {"F8_E4M3", SafetensorsDtype::kF8E4M3, 1},
    {"F8_E5M2", SafetensorsDtype::kF8E5M2, 1},
};

const DtypeEntry* FindDtype(std::string_view name) {
  for (const DtypeEntry& e : kDtypes)
    if (name == e.name) return &e;
  return nullptr;
}

const DtypeEntry& Entry(SafetensorsDtype dtype) {
  for (const DtypeEntry& e : kDtypes)
    if (e.dtype == dtype) return e;
  FLOVER_CHECK(false) << "dtype " << static_cast<int>(dtype) << " has no table entry";
  return kDtypes[0];
}

// Thrown by the parser callback to stop at a structural violation (caught in Parse).
struct HeaderViolation {
  std::string message;
};

// A non-negative JSON integer as uint64, or nullopt (negative, fractional, not a number).
std::optional<uint64_t> AsUnsigned(const nlohmann::json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

}  // namespace

const char* SafetensorsDtypeName(SafetensorsDtype dtype) { return Entry(dtype).name; }
size_t SafetensorsDtypeSize(SafetensorsDtype dtype) { return Entry(dtype).size; }

int64_t SafetensorsTensor::rows() const { return shape.empty() ? 1 : shape[0]; }
int64_t SafetensorsTensor::cols() const {
  int64_t c = 1;
  for (size_t i = 1; i < shape.size(); ++i) c *= shape[i];  // bounded by n_elements (checked at parse)
  return c;
}

std::string ShapeString(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Result<std::unique_ptr<SafetensorsReader>> SafetensorsReader::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound(path + ": no such file");
    return IoError(path + ": cannot open: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return IoError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(path + ": is not a regular file");
  }
  std::unique_ptr<SafetensorsReader> r(new SafetensorsReader());
  r->path_ = path;
  r->size_ = static_cast<uint64_t>(st.st_size);
  if (r->size_ > 0) {
    void* p = ::mmap(nullptr, r->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return IoError(path + ": cannot map " + std::to_string(r->size_) + " bytes: " + std::strerror(err));
    }
    r->bytes_ = static_cast<const uint8_t*>(p);
    r->mapped_ = true;
  }
  ::close(fd);  // the mapping keeps the file
  if (Status s = r->Parse(); !s.ok()) return s.WithContext(path);
  return r;
}

Result<std::unique_ptr<SafetensorsReader>> SafetensorsReader::FromBytes(std::span<const uint8_t> bytes,
                                                                        std::string name) {
  std::unique_ptr<SafetensorsReader> r(new SafetensorsReader());
  r->path_ = std::move(name);
  r->bytes_ = bytes.data();
  r->size_ = bytes.size();
  if (Status s = r->Parse(); !s.ok()) return s.WithContext(r->path_);
  return r;
}

SafetensorsReader::~SafetensorsReader() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(bytes_), size_);
}

Status SafetensorsReader::Parse() {
  if (size_ < 8)
    return Corruption("file has " + std::to_string(size_) + " bytes, too few for the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes_, 8);
  if (n > kMaxHeaderBytes)
    return Corruption("header length " + std::to_string(n) + " exceeds the limit of " +
                      std::to_string(kMaxHeaderBytes) + " bytes (not a safetensors file?)");
  if (n > size_ - 8)
    return Corruption("header length " + std::to_string(n) + " runs past the end of the file (" +
                      std::to_string(size_) + " bytes)");
  buffer_offset_ = 8 + n;
  const uint64_t buffer_size = size_ - buffer_offset_;
  const char* text = reinterpret_cast<const char*>(bytes_ + 8);

  nlohmann::json header;
  std::set<std::string> seen;
  // Per open container: whether it is an array, and its element count so far.
  std::vector<std::pair<bool, size_t>> containers;
  // Refuses deep nesting, long arrays (a header's arrays are shapes and offset pairs)
  // and repeated tensor names (which the DOM would silently merge), so that hostile
  // bytes cannot make the parser build a huge tree.
  using Event = nlohmann::json::parse_event_t;
  auto check = [&](int depth, Event event, nlohmann::json& parsed) {
    const bool starts = event == Event::object_start || event == Event::array_start;
    if (starts || event == Event::value) {
      if (!containers.empty() && containers.back().first && ++containers.back().second > kMaxArrayElements)
        throw HeaderViolation{"header has an array of more than " + std::to_string(kMaxArrayElements) + " elements"};
    }
    if (starts) {
      if (depth >= kMaxJsonDepth)
        throw HeaderViolation{"header JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels"};
      containers.emplace_back(event == Event::array_start, 0);
    } else if ((event == Event::object_end || event == Event::array_end) && !containers.empty()) {
      containers.pop_back();
    } else if (event == Event::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second) {
      throw HeaderViolation{"header names tensor \"" + parsed.get<std::string>() + "\" twice"};
    }
    return true;
  };
  try {
    header = nlohmann::json::parse(text, text + n, check);
  } catch (const HeaderViolation& v) {
    return Corruption(v.message);
  } catch (const nlohmann::json::exception& e) {
    return Corruption(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) return Corruption("header is not a JSON object");

  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const nlohmann::json& entry = item.value();
    if (name == "__metadata__") continue;
    auto bad = [&name](const std::string& what) { return Corruption("tensor " + name + ": " + what); };
    if (!entry.is_object()) return bad("header entry is not an object");
    SafetensorsTensor t;
    t.name = name;

    const auto dtype = entry.find("dtype");
    if (dtype == entry.end() || !dtype->is_string()) return bad("dtype is missing or not a string");
    const DtypeEntry* d = FindDtype(dtype->get_ref<const std::string&>());
    if (d == nullptr) return bad("unknown dtype \"" + dtype->get<std::string>() + "\"");
    t.dtype = d->dtype;

    const auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array()) return bad("shape is missing or not an array");
    if (shape->size() > kMaxShapeDims) return bad("shape has " + std::to_string(shape->size()) + " dimensions");
    // Elements of all dims and of all but the first (the 2-D view's columns), each
    // without overflow (a zero first dim must not hide a huge product after it).
    uint64_t n_elements = 1, n_cols = 1;
    for (size_t i = 0; i < shape->size(); ++i) {
      const std::optional<uint64_t> v = AsUnsigned((*shape)[i]);
      if (!v || *v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return bad("shape " + shape->dump() + " has a dimension that is not a non-negative integer");
      constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
      if (__builtin_mul_overflow(n_elements, *v, &n_elements) || n_elements > kMax ||
          (i > 0 && (__builtin_mul_overflow(n_cols, *v, &n_cols) || n_cols > kMax)))
        return bad("shape " + shape->dump() + " has more than 2^63 elements");
      t.shape.push_back(static_cast<int64_t>(*v));
    }
    t.n_elements = static_cast<int64_t>(n_elements);

    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2)
      return bad("data_offsets is missing or not a pair [begin, end]");
    const std::optional<uint64_t> begin = AsUnsigned((*offsets)[0]), end = AsUnsigned((*offsets)[1]);
    if (!begin || !end) return bad("data_offsets " + offsets->dump() + " are not non-negative integers");
    if (*begin > *end) return bad("data_offsets " + offsets->dump() + " end before they begin");
    if (*end > buffer_size)
      return bad("data_offsets " + offsets->dump() + " run past the end of the file (the data buffer has " +
                 std::to_string(buffer_size) + " bytes)");
    uint64_t n_bytes = 0;
    if (__builtin_mul_overflow(n_elements, static_cast<uint64_t>(d->size), &n_bytes))
      return bad("shape " + ShapeString(t.shape) + " of " + d->name + " needs more than 2^64 bytes");
    if (n_bytes != *end - *begin)
      return bad("shape " + ShapeString(t.shape) + " of " + d->name + " needs " + std::to_string(n_bytes) +
                 " bytes, but data_offsets " + offsets->dump() + " hold " + std::to_string(*end - *begin));
    t.begin = *begin;
    t.end = *end;
    index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // No two tensors may share bytes (empty tensors own none).
  std::vector<const SafetensorsTensor*> by_offset;
  for (const SafetensorsTensor& t : tensors_)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      return Corruption("tensors " + by_offset[i - 1]->name + " (bytes " + std::to_string(by_offset[i - 1]->begin) +
                        ".." + std::to_string(by_offset[i - 1]->end) + ") and " + by_offset[i]->name + " (bytes " +
                        std::to_string(by_offset[i]->begin) + ".." + std::to_string(by_offset[i]->end) +
                        ") overlap");
  return Status::Ok();
}

const SafetensorsTensor* SafetensorsReader::Find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> SafetensorsReader::Data(const SafetensorsTensor& t) const {
  return {bytes_ + buffer_offset_ + t.begin, static_cast<size_t>(t.end - t.begin)};
}

Status SafetensorsReader::ReadFloat(const SafetensorsTensor& t, int64_t row_begin, int64_t n_rows,
                                    int64_t col_begin, int64_t n_cols, float* dst) const {
  const int64_t rows = t.rows(), cols = t.cols();
  FLOVER_CHECK(row_begin >= 0 && n_rows >= 0 && row_begin + n_rows <= rows && col_begin >= 0 && n_cols >= 0 &&
               col_begin + n_cols <= cols)
      << t.name << " " << ShapeString(t.shape) << " rows " << row_begin << "+" << n_rows << " cols " << col_begin
      << "+" << n_cols;
  if (t.dtype != SafetensorsDtype::kF32 && t.dtype != SafetensorsDtype::kF16 && t.dtype != SafetensorsDtype::kBF16)
    return InvalidArgument("tensor " + t.name + " has dtype " + SafetensorsDtypeName(t.dtype) +
                           "; only F32, F16 and BF16 tensors can be loaded");
  const size_t elem = SafetensorsDtypeSize(t.dtype);
  const uint8_t* base = Data(t).data();
  std::vector<uint16_t> half(t.dtype == SafetensorsDtype::kF32 ? 0 : static_cast<size_t>(n_cols));
  for (int64_t r = 0; r < n_rows; ++r) {
    const uint8_t* src = base + static_cast<size_t>((row_begin + r) * cols + col_begin) * elem;
    float* out = dst + static_cast<size_t>(r * n_cols);
    if (t.dtype == SafetensorsDtype::kF32) {
      std::memcpy(out, src, static_cast<size_t>(n_cols) * sizeof(float));
      continue;
    }
    std::memcpy(half.data(), src, half.size() * sizeof(uint16_t));  // the mapping may be unaligned
    if (t.dtype == SafetensorsDtype::kF16) {
      ConvertHalfToFloatSerial(half.data(), out, half.size());
    } else {
      for (size_t i = 0; i < half.size(); ++i) out[i] = BFloat16ToFloat(half[i]);
    }
  }
  return Status::Ok();
}

Result<std::vector<float>> SafetensorsReader::ReadFloat(const SafetensorsTensor& t) const {
  std::vector<float> out;
  if (t.dtype != SafetensorsDtype::kF32 && t.dtype != SafetensorsDtype::kF16 && t.dtype != SafetensorsDtype::kBF16)
    return InvalidArgument("tensor " + t.name + " has dtype " + SafetensorsDtypeName(t.dtype) +
                           "; only F32, F16 and BF16 tensors can be loaded");
  out.resize(static_cast<size_t>(t.n_elements));
  FLOVER_RETURN_IF_ERROR(ReadFloat(t, 0, t.rows(), 0, t.cols(), out.data()));
  return out;
}

}  // namespace flover
