// The order of the rotary dimensions in the rows of a query/key projection. Flover
// rotates adjacent pairs (2i, 2i+1) of each head (model_spec.h). Checkpoints that rotate
// halves (i, i + head_dim/2) instead — Hugging Face Llama, Mistral and Qwen2 folders, and
// GGUF files of architectures llama.cpp rotates as NEOX (qwen2) — are converted once at
// load by HalvesToPairs, applied to the rows of Wq/Wk and to the q/k biases. It moves
// whole rows, so it works on rows of any format (fp32 values, or the packed bytes of
// fp16/bf16/Q8_0/Q4_0/Q4_K rows).
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace flover {

// Within each head of `head_dim` rows of `row_bytes` bytes, row i goes to 2i and row
// i + head_dim/2 to 2i + 1: rotating halves becomes rotating adjacent pairs.
// REQUIRES: head_dim is even and `rows` holds whole heads (its size is a multiple of
// head_dim * row_bytes), as a rank's shard does.
void HalvesToPairs(std::span<uint8_t> rows, int head_dim, int64_t row_bytes);

// The same on fp32 values: rows of `cols` values (a bias is `cols` 1).
void HalvesToPairs(std::vector<float>& t, int head_dim, int64_t cols);

}  // namespace flover
