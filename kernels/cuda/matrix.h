// MatrixView: a row-major 2-D tensor on the device, as the kernel launchers take it.
// Launchers check every view (dtype, shape, row stride, non-null) with CheckMatrix
// before launching, so a mismatch is an InvalidArgument naming the operand, never a
// kernel reading out of bounds.
#pragma once

#include <cstdint>
#include <string>

#include "common/dtype.h"
#include "common/status.h"

namespace flover::cuda {

struct MatrixView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int rows = 0;
  int cols = 0;
  int64_t stride = 0;  // elements between row starts; >= cols

  template <typename T>
  T* as() const { return static_cast<T*>(data); }
};

inline MatrixView Matrix(void* data, DType dtype, int rows, int cols, int64_t stride = -1) {
  return MatrixView{data, dtype, rows, cols, stride < 0 ? cols : stride};
}

// OK when `m` has dtype `dtype`, `rows` x `cols` (a negative expectation is not checked),
// stride >= cols, and data != nullptr unless it is empty. `op` and `name` go into the
// message: "RmsNorm: out is fp16 [3, 288], expected fp32 [3, 288]".
inline Status CheckMatrix(const MatrixView& m, DType dtype, int rows, int cols, const char* op, const char* name) {
  auto shape = [](DType t, int r, int c) {
    return std::string(DTypeName(t)) + " [" + std::to_string(r) + ", " + std::to_string(c) + "]";
  };
  const bool shape_ok = m.dtype == dtype && (rows < 0 || m.rows == rows) && (cols < 0 || m.cols == cols);
  if (!shape_ok)
    return InvalidArgument(std::string(op) + ": " + name + " is " + shape(m.dtype, m.rows, m.cols) + ", expected " +
                           shape(dtype, rows < 0 ? m.rows : rows, cols < 0 ? m.cols : cols));
  if (m.rows < 0 || m.cols < 0 || m.stride < m.cols)
    return InvalidArgument(std::string(op) + ": " + name + " has stride " + std::to_string(m.stride) + " < " +
                           std::to_string(m.cols) + " columns");
  if (m.data == nullptr && m.rows > 0 && m.cols > 0)
    return InvalidArgument(std::string(op) + ": " + name + " is null");
  return Status::Ok();
}

}  // namespace flover::cuda
