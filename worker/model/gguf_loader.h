// GGUF v3 files with `general.architecture = llama` and F32 or F16 tensors.
// Reads metadata (llama.embedding_length, feed_forward_length, block_count,
// attention.head_count[_kv], context_length, attention.layer_norm_rms_epsilon,
// rope.freq_base, vocab size), the tensors token_embd, blk.N.{attn_norm, attn_q, attn_k,
// attn_v, attn_output, ffn_norm, ffn_gate, ffn_down, ffn_up}, output_norm, [output],
// converting F16 to fp32, and the embedded vocabulary (tokenizer.ggml.tokens/scores,
// bos/eos ids) when present. An `output` tensor equal in bytes to token_embd is loaded as
// a shared classifier.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"
#include "common/tokenizer.h"
#include "worker/model/model_weights.h"

namespace flover {

struct GgufModel {
  ModelWeights weights;
  std::optional<Tokenizer> tokenizer;
};

Result<GgufModel> LoadGgufModel(const std::string& path);

}  // namespace flover
