// ModelSpec: the shape of a LLaMA-family decoder, as data. One forward-pass
// implementation reads everything it needs from here; there are no per-model classes.
//
// The coordinator uses it too (context length and vocabulary for admission), so it
// lives in common/ and depends on nothing but Status.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace flover {

struct ModelSpec {
  int dim = 0;          // residual stream width
  int hidden_dim = 0;   // feed-forward (SwiGLU) width
  int n_layers = 0;
  int n_heads = 0;      // query heads
  int n_kv_heads = 0;   // key/value heads (grouped-query attention when < n_heads)
  int vocab_size = 0;
  int max_seq_len = 0;  // context length, prompt + generated
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool shared_classifier = true;  // LM head == token embedding
  int bos_id = 1;
  int eos_id = 2;
  // The chat template of the model file's metadata (GGUF tokenizer.chat_template, a
  // Jinja text), "" when it has none. Not part of the shape: ToString leaves it out.
  std::string chat_template{};  // {}: a positional ModelSpec{...} may leave it out

  int head_dim() const { return dim / n_heads; }
  int q_dim() const { return n_heads * head_dim(); }
  int kv_dim() const { return n_kv_heads * head_dim(); }
  int kv_group() const { return n_heads / n_kv_heads; }  // query heads per kv head

  // Parameters held in weights (embedding, layers, norms, separate classifier if any).
  int64_t n_params() const;
  // Bytes of K+V for one token over all layers, at `bytes_per_value` per element.
  int64_t kv_bytes_per_token(int bytes_per_value = 4) const;

  // Checks positivity and divisibility (dim % n_heads, n_heads % n_kv_heads, even
  // head_dim for RoPE). The message names the offending field.
  Status Validate() const;

  // "dim=64 hidden=172 layers=5 heads=8 kv_heads=4 vocab=512 seq=512"
  std::string ToString() const;
};

}  // namespace flover
