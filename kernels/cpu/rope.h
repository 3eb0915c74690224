// Rotary position embedding, interleaved layout (run.c / GGUF "llama"): each adjacent
// pair (v[2i], v[2i+1]) of every head is rotated by pos * theta^(-2i/head_dim).
//
// RopeTable precomputes cos/sin with exactly run.c's float arithmetic (powf, cosf, sinf
// in single precision) so positions rotate bit-for-bit like the reference.
// Thread-safety: RopeTable is immutable after construction.
#pragma once

#include <cstddef>
#include <vector>

namespace flover::cpu {

class RopeTable {
 public:
  RopeTable(int head_dim, int max_positions, float theta);
  int head_dim() const { return head_dim_; }
  int max_positions() const { return max_positions_; }
  // [head_dim / 2] values for position `pos`. REQUIRES: 0 <= pos < max_positions().
  const float* cos(int pos) const { return cos_.data() + static_cast<size_t>(pos) * (head_dim_ / 2); }
  const float* sin(int pos) const { return sin_.data() + static_cast<size_t>(pos) * (head_dim_ / 2); }

 private:
  int head_dim_;
  int max_positions_;
  std::vector<float> cos_;  // [max_positions, head_dim / 2]
  std::vector<float> sin_;  // [max_positions, head_dim / 2]
};

// Rotates n_heads heads of head_dim values in each of n_tokens rows of x (row stride
// `row_stride` floats; the heads are contiguous from the row start), token t at
// positions[t]. REQUIRES: table.head_dim() == head_dim; positions within the table.
void ApplyRope(float* x, int n_tokens, int row_stride, int n_heads, int head_dim,
               const int* positions, const RopeTable& table);

}  // namespace flover::cpu
