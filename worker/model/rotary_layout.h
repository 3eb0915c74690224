// The order of the rotary dimensions in the rows of a query/key projection. Flover
// rotates adjacent pairs (2i, 2i+1) of each head (model_spec.h). Checkpoints that rotate
// halves (i, i + head_dim/2) instead — Hugging Face Llama, Mistral and Qwen2 folders, and
// GGUF files of architectures llama.cpp rotates as NEOX (qwen2) — are converted once at
// load by HalvesToPairs, applied to the rows of Wq/Wk and to the q/k biases.
//
// Thread-safety: a free function without shared state.
#pragma once

#include <cstdint>
#include <vector>

namespace flover {

// Within each head of `head_dim` rows of `cols` values, row i goes to 2i and row
// i + head_dim/2 to 2i + 1: rotating halves becomes rotating adjacent pairs. A bias is
// `cols` 1. REQUIRES: head_dim is even and t holds whole heads (t.size() is a multiple
// of head_dim * cols), as a rank's shard does.
void HalvesToPairs(std::vector<float>& t, int head_dim, int64_t cols);

}  // namespace flover
