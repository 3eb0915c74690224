// ModelSpec: the shape of a decoder-only transformer, as data. One forward-pass
// implementation reads everything it needs from here; there are no per-model classes.
// The architectures Flover serves differ only in these fields:
//   LLaMA 2 / TinyLlama / Mistral  RMSNorm, SwiGLU, full rotary, no biases
//   LLaMA 3 / 3.1                   + rope_scaling (llama3), large rope_theta
//   Qwen2                           + qkv_bias, tied embeddings
//   GPT-J                           LayerNorm with bias, parallel_residual (attention
//                                   and MLP from one norm), partial rotary (rotary_dim),
//                                   GELU MLP with biases, LM head bias
// Rotary embeddings always rotate adjacent pairs (2i, 2i+1) of the first rotary_dim
// dims of each head (GPT-J's and GGUF's convention); loaders of checkpoints that rotate
// halves (Hugging Face LLaMA, Mistral, Qwen2) permute the rows of Wq/Wk (and their
// biases) once at load, so both give the same attention.
//
// The coordinator uses it too (context length and vocabulary for admission), so it
// lives in common/ and depends on nothing but Status.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace flover {

// How a block normalises its input.
enum class NormKind : uint8_t {
  kRms,    // x / rms(x) * weight
  kLayer,  // (x - mean) / std * weight + bias
};

// The feed-forward block.
enum class FfnKind : uint8_t {
  kSwiGlu,  // W2 · (silu(W1 h) * W3 h)
  kGelu,    // W2 · gelu_tanh(W1 h + b1) + b2   (GPT-J's "gelu_new")
};

// The rotary frequency schedule. kLlama3 rescales the frequencies whose wavelength is
// longer than original_max_position / low_freq_factor by 1/factor, keeps those shorter
// than original_max_position / high_freq_factor, and interpolates in between (LLaMA 3.1).
struct RopeScaling {
  enum class Kind : uint8_t { kNone, kLlama3 };
  Kind kind = Kind::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
};

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
  // Further ids that end a sequence like eos_id (generation_config.json may list several:
  // LLaMA 3's <|eot_id|> and <|eom_id|>). Not part of the shape: ToString leaves them out.
  std::vector<int> extra_eos_ids{};  // at most kMaxExtraEosIds
  static constexpr int kMaxExtraEosIds = 8;

  // Architecture (defaults: LLaMA). `arch` names it in messages ("llama", "mistral",
  // "qwen2", "gptj"); the forward pass reads only the fields after it.
  std::string arch = "llama";
  NormKind norm = NormKind::kRms;
  FfnKind ffn = FfnKind::kSwiGlu;
  bool parallel_residual = false;  // x += attn(h) + ffn(h), h = norm(x): one norm per layer
  int rotary_dim = 0;              // leading dims of each head that rotate; 0 = head_dim
  RopeScaling rope_scaling{};
  bool qkv_bias = false;           // biases on Wq, Wk, Wv
  bool ffn_bias = false;           // biases on W1 and W2 (GELU MLP)
  bool classifier_bias = false;    // bias on the LM head
  // The checkpoint's attention window (Mistral), 0 for none. Flover attends over the
  // whole context, so loaders cap max_seq_len at the window: no sequence is longer.
  int sliding_window = 0;
  // The chat template of the model file's metadata (GGUF tokenizer.chat_template, a
  // Jinja text), "" when it has none. Not part of the shape: ToString leaves it out.
  std::string chat_template{};  // {}: a positional ModelSpec{...} may leave it out

  int head_dim() const { return dim / n_heads; }
  int q_dim() const { return n_heads * head_dim(); }
  int kv_dim() const { return n_kv_heads * head_dim(); }
  int kv_group() const { return n_heads / n_kv_heads; }  // query heads per kv head
  int rotary_dims() const { return rotary_dim > 0 ? rotary_dim : head_dim(); }

  // The rotation angle per position of each rotated pair [rotary_dims() / 2]:
  // 1 / rope_theta^(2i / rotary_dims()), rescaled by rope_scaling.
  std::vector<float> RopeFrequencies() const;

  // Parameters held in weights (embedding, layers, norms, separate classifier if any).
  int64_t n_params() const;
  // Bytes of K+V for one token over all layers, at `bytes_per_value` per element.
  int64_t kv_bytes_per_token(int bytes_per_value = 4) const;

  // Checks positivity and divisibility (dim % n_heads, n_heads % n_kv_heads, an even
  // rotary_dims() <= head_dim, rope scaling factors). The message names the field.
  Status Validate() const;

  // "dim=64 hidden=172 layers=5 heads=8 kv_heads=4 vocab=512 seq=512 shared_classifier",
  // prefixed with the architecture when it is not "llama" ("gptj dim=...").
  std::string ToString() const;
};

}  // namespace flover
