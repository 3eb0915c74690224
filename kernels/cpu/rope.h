// Rotary position embedding, interleaved layout (run.c / GGUF "llama" / GPT-J): each
// adjacent pair (v[2i], v[2i+1]) of the first rotary_dim values of every head is rotated
// by pos * freq[i]; the rest of the head (partial rotary, GPT-J) is left as it is.
//
// The frequencies come from the model (ModelSpec::RopeFrequencies: theta^(-2i/rotary_dim),
// rescaled for LLaMA 3.1); RopeTable precomputes cos/sin in single precision (cosf, sinf
// of pos * freq, as run.c does) so positions rotate bit-for-bit like that reference.
// Thread-safety: RopeTable is immutable after construction.
#pragma once

#include <cstddef>
#include <vector>

namespace flover::cpu {

class RopeTable {
 public:
  // `freqs` [rotary_dim / 2]: the angle per position of each pair.
  RopeTable(std::vector<float> freqs, int max_positions);
  int rotary_dim() const { return static_cast<int>(freqs_.size()) * 2; }
  int max_positions() const { return max_positions_; }
  // [rotary_dim / 2] values for position `pos`. REQUIRES: 0 <= pos < max_positions().
  const float* cos(int pos) const { return cos_.data() + static_cast<size_t>(pos) * freqs_.size(); }
  const float* sin(int pos) const { return sin_.data() + static_cast<size_t>(pos) * freqs_.size(); }

 private:
  std::vector<float> freqs_;  // [rotary_dim / 2]
  int max_positions_;
  std::vector<float> cos_;  // [max_positions, rotary_dim / 2]
  std::vector<float> sin_;  // [max_positions, rotary_dim / 2]
};

// Rotates the first table.rotary_dim() values of n_heads heads of head_dim values in
// each of n_tokens rows of x (row stride `row_stride` floats; the heads are contiguous
// from the row start), token t at positions[t].
// REQUIRES: table.rotary_dim() <= head_dim; positions within the table.
void ApplyRope(float* x, int n_tokens, int row_stride, int n_heads, int head_dim,
               const int* positions, const RopeTable& table);

}  // namespace flover::cpu
