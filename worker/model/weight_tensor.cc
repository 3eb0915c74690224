#include "worker/model/weight_tensor.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "common/check.h"

namespace flover {

bool FitsBlocks(cpu::WeightFormat format, int64_t cols) {
  return cols > 0 && cols % cpu::WeightBlockValues(format) == 0;
}

std::string ByteString(int64_t bytes) {
  char buf[32];
  if (bytes >= 1000000000) {
    std::snprintf(buf, sizeof buf, "%.2f GB", static_cast<double>(bytes) / 1e9);
  } else if (bytes >= 1000000) {
    std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  } else if (bytes >= 1000) {
    std::snprintf(buf, sizeof buf, "%.1f kB", static_cast<double>(bytes) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  }
  return buf;
}

WeightTensor WeightTensor::FromBytes(cpu::WeightFormat format, Bytes bytes) {
  FLOVER_CHECK(bytes.size() % static_cast<size_t>(cpu::WeightBlockBytes(format)) == 0)
      << bytes.size() << " bytes are not whole " << cpu::WeightFormatName(format) << " blocks";
  WeightTensor t;
  t.format_ = format;
  if (format == cpu::WeightFormat::kF32) {
    t.f32_.resize(bytes.size() / sizeof(float));
    if (!bytes.empty()) std::memcpy(t.f32_.data(), bytes.data(), bytes.size());
  } else {
    t.packed_ = std::move(bytes);
  }
  return t;
}

WeightTensor WeightTensor::Zeros(cpu::WeightFormat format, int64_t n_bytes) {
  FLOVER_CHECK(n_bytes >= 0 && n_bytes % cpu::WeightBlockBytes(format) == 0)
      << n_bytes << " bytes are not whole " << cpu::WeightFormatName(format) << " blocks";
  WeightTensor t;
  t.format_ = format;
  if (format == cpu::WeightFormat::kF32) {
    t.f32_.assign(static_cast<size_t>(n_bytes) / sizeof(float), 0.0f);
  } else {
    t.packed_.assign(static_cast<size_t>(n_bytes), 0);
  }
  return t;
}

Result<WeightTensor> WeightTensor::FromF32Rows(cpu::WeightFormat format, int64_t rows, int64_t cols,
                                               const RowReader& read) {
  FLOVER_CHECK(rows >= 0 && FitsBlocks(format, cols))
      << "[" << rows << ", " << cols << "] in " << cpu::WeightFormatName(format);
  WeightTensor out = Zeros(format, rows * cpu::WeightRowBytes(format, cols));
  if (rows == 0) return out;
  if (format == cpu::WeightFormat::kF32) {
    FLOVER_RETURN_IF_ERROR(read(0, rows, out.f32_.data()));
    return out;
  }
  const int64_t chunk_rows = std::clamp<int64_t>(kChunkValues / cols, 1, rows);
  const int64_t row_bytes = cpu::WeightRowBytes(format, cols);
  std::vector<float> chunk(static_cast<size_t>(chunk_rows * cols));
  for (int64_t done = 0; done < rows; done += chunk_rows) {
    const int64_t n = std::min(chunk_rows, rows - done);
    FLOVER_RETURN_IF_ERROR(read(done, n, chunk.data()));
    cpu::QuantizeWeightRows(format, chunk.data(), n, cols, out.packed_.data() + done * row_bytes);
  }
  return out;
}

WeightTensor::F32Values& WeightTensor::f32() {
  FLOVER_CHECK(is_f32() && layout_ == cpu::WeightLayout::kRows)
      << "a " << cpu::WeightFormatName(format_) << " tensor" << (is_f32() ? " (interleaved)" : "") << " read as fp32";
  return f32_;
}

const WeightTensor::F32Values& WeightTensor::f32() const {
  FLOVER_CHECK(is_f32() && layout_ == cpu::WeightLayout::kRows)
      << "a " << cpu::WeightFormatName(format_) << " tensor" << (is_f32() ? " (interleaved)" : "") << " read as fp32";
  return f32_;
}

std::span<const uint8_t> WeightTensor::bytes() const {
  if (is_f32()) return {reinterpret_cast<const uint8_t*>(f32_.data()), f32_.size() * sizeof(float)};
  return packed_;
}

std::span<uint8_t> WeightTensor::mutable_bytes() {
  if (is_f32()) return {reinterpret_cast<uint8_t*>(f32_.data()), f32_.size() * sizeof(float)};
  return packed_;
}

bool WeightTensor::Holds(int64_t rows, int64_t cols) const {
  if (rows < 0 || cols < 0) return false;
  if (rows == 0 || cols == 0) return empty();
  if (!FitsBlocks(format_, cols)) return false;
  if (layout_ == cpu::WeightLayout::kInterleaved) return n_bytes() == cpu::InterleavedWeightBytes(format_, rows, cols);
  return n_bytes() == rows * cpu::WeightRowBytes(format_, cols);
}

cpu::WeightView WeightTensor::view(int64_t rows, int64_t cols) const {
  FLOVER_CHECK(Holds(rows, cols) && rows <= INT_MAX && cols <= INT_MAX)
      << cpu::WeightFormatName(format_) << " tensor of " << n_bytes() << " bytes viewed as [" << rows << ", " << cols
      << "]";
  return cpu::WeightView{format_, bytes().data(), static_cast<int>(rows), static_cast<int>(cols), layout_};
}

void WeightTensor::Interleave(int64_t rows, int64_t cols) {
  FLOVER_CHECK(Holds(rows, cols)) << cpu::WeightFormatName(format_) << " tensor of " << n_bytes()
                                  << " bytes interleaved as [" << rows << ", " << cols << "]";
  if (cpu::PreferredWeightLayout(format_) != cpu::WeightLayout::kInterleaved || empty() ||
      layout_ == cpu::WeightLayout::kInterleaved)
    return;
  const int64_t n_out = cpu::InterleavedWeightBytes(format_, rows, cols);
  if (is_f32()) {
    F32Values out(static_cast<size_t>(n_out) / sizeof(float));
    cpu::InterleaveWeightRows(view(rows, cols), out.data());
    f32_ = std::move(out);
  } else {
    Bytes out(static_cast<size_t>(n_out));
    cpu::InterleaveWeightRows(view(rows, cols), out.data());
    packed_ = std::move(out);
  }
  layout_ = cpu::WeightLayout::kInterleaved;
}

WeightTensor WeightTensor::ConvertTo(cpu::WeightFormat format, int64_t rows, int64_t cols) const {
  FLOVER_CHECK(FitsBlocks(format, cols)) << cols << " columns in " << cpu::WeightFormatName(format);
  if (format == format_) {
    FLOVER_CHECK(Holds(rows, cols)) << cpu::WeightFormatName(format_) << " tensor of " << n_bytes()
                                    << " bytes converted as [" << rows << ", " << cols << "]";
    return *this;
  }
  const cpu::WeightView source = view(rows, cols);
  Result<WeightTensor> out = FromF32Rows(format, rows, cols, [&](int64_t row_begin, int64_t n_rows, float* dst) {
    cpu::DequantizeWeightRows(source, static_cast<int>(row_begin), static_cast<int>(n_rows), dst);
    return Status::Ok();
  });
  FLOVER_CHECK(out.ok()) << out.status().ToString();
  return std::move(out).value();
}

void WeightTensor::ZeroRowsFrom(int64_t first_row, int64_t cols) {
  FLOVER_CHECK(first_row >= 0 && FitsBlocks(format_, cols) && layout_ == cpu::WeightLayout::kRows)
      << first_row << ", " << cols;
  const std::span<uint8_t> b = mutable_bytes();
  const size_t begin = static_cast<size_t>(first_row * cpu::WeightRowBytes(format_, cols));
  if (begin < b.size()) std::fill(b.begin() + static_cast<std::ptrdiff_t>(begin), b.end(), 0);
}

void WeightTensor::Clear() {
  F32Values().swap(f32_);
  Bytes().swap(packed_);
  format_ = cpu::WeightFormat::kF32;
  layout_ = cpu::WeightLayout::kRows;
}

bool WeightTensor::operator==(const WeightTensor& other) const {
  if (format_ != other.format_ || layout_ != other.layout_) return false;
  const std::span<const uint8_t> a = bytes(), b = other.bytes();
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace flover
