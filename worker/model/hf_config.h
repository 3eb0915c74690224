// HfConfig: the ModelSpec of a Hugging Face model folder, read from its JSON files:
//   config.json             the architecture and its shape (required)
//   generation_config.json  bos_token_id, eos_token_id (an id or a list: the first is
//                           spec.eos_id, the rest spec.extra_eos_ids); config.json's
//                           ids when the file or a field is absent
//   chat_template.jinja, else tokenizer_config.json's "chat_template"
//                           spec.chat_template (optional; the vocabulary itself is the
//                           tokenizer's business, not read here)
//
// Architectures ("architectures"[0], else "model_type"):
//   LlamaForCausalLM    Llama 2, TinyLlama, Llama 3/3.1 (rope_scaling of type llama3)
//   MistralForCausalLM  + sliding_window: max_seq_len is capped at the window
//   Qwen2ForCausalLM    + q/k/v biases; with use_sliding_window, capped as Mistral
//   GPTJForCausalLM     LayerNorm, parallel residual, partial rotary, GELU MLP, LM head bias
// Anything else, a field outside what the decoder computes (another rope_scaling type,
// attention/MLP biases on Llama, an activation other than the architecture's, head_dim
// != hidden_size / num_attention_heads) or a missing/mistyped required field is an error
// naming the file and the field. Optional fields take transformers' defaults.
// torch_dtype is not read: the loader goes by each tensor's own dtype (hf_loader.h).
//
// Thread-safety: free functions without shared state.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"

namespace flover {

// How the checkpoint names its tensors.
enum class HfLayout : uint8_t {
  kLlama,  // model.embed_tokens, model.layers.N.{self_attn,mlp,...}, model.norm, lm_head
  kGptj,   // transformer.wte, transformer.h.N.{ln_1,attn,mlp}, transformer.ln_f, lm_head
};

struct HfConfig {
  ModelSpec spec;
  std::string architecture;  // "LlamaForCausalLM", ...
  HfLayout layout = HfLayout::kLlama;
  // The checkpoint rotates halves (i, i + head_dim/2) of each head; Flover rotates
  // adjacent pairs, so the rows of q_proj/k_proj (and their biases) are permuted at load.
  bool rotates_halves = false;
  // What a loader should log (the context capped at the sliding window, ...).
  std::vector<std::string> notes;
};

// Parses the JSON texts; `generation_config`, `tokenizer_config` and `chat_template`
// may be empty (absent files). Errors name the file ("config.json: ...").
Result<HfConfig> ParseHfConfig(std::string_view config, std::string_view generation_config = {},
                               std::string_view tokenizer_config = {}, std::string_view chat_template = {});

// Reads the files of folder `dir` and parses them. NotFound when config.json is missing;
// files larger than kMaxHfJsonBytes are refused. Errors name the folder.
inline constexpr uint64_t kMaxHfJsonBytes = uint64_t{64} << 20;
Result<HfConfig> ReadHfConfig(const std::string& dir);

// A small file's bytes (at most `limit`), NotFound when absent. Used for the folder's
// JSON files.
Result<std::string> ReadSmallFile(const std::string& path, uint64_t limit = kMaxHfJsonBytes);

// The supported architectures, for messages: "LlamaForCausalLM, MistralForCausalLM, ...".
std::string SupportedHfArchitectures();

}  // namespace flover
