// Loading a Hugging Face model folder: config.json (hf_config.h) and the weights in
// safetensors files (safetensors_reader.h), either one model.safetensors or shards
// named by model.safetensors.index.json ("weight_map": tensor -> file in the folder).
// pytorch_model.bin checkpoints are not read.
//
// Tensors F32, F16 or BF16, [out, in] as ModelWeights keeps them; vectors as fp32, each
// matrix in the format target.weights chooses (weight_policy.h: under auto F16/BF16 stay
// 16-bit, their bytes copied from the mapping; another format converts a chunk of rows
// at a time):
//   Llama/Mistral/Qwen2  model.embed_tokens.weight, model.norm.weight, lm_head.weight,
//     model.layers.N.{input_layernorm, post_attention_layernorm}.weight,
//     model.layers.N.self_attn.{q,k,v,o}_proj.weight (+ q/k/v_proj.bias for Qwen2),
//     model.layers.N.mlp.{gate,up,down}_proj.weight  (-> w1, w3, w2)
//   GPT-J  transformer.wte.weight, transformer.ln_f.{weight,bias}, lm_head.{weight,bias},
//     transformer.h.N.ln_1.{weight,bias}, transformer.h.N.attn.{q,k,v,out}_proj.weight,
//     transformer.h.N.mlp.{fc_in,fc_out}.{weight,bias}  (-> w1/b1, w2/b2)
// lm_head.weight is not read when tie_word_embeddings is true; it is required when not.
// Llama-family checkpoints rotate the halves of each head; the rows of q_proj/k_proj
// (and their biases) are permuted within each head so that Flover's adjacent pairs
// rotate the same values: new row 2i = old row i, new row 2i+1 = old row i + head_dim/2.
//
// Every tensor is checked first (present, dtype convertible, shape equal to what
// config.json implies, bytes inside its file) — errors name the file, the tensor and
// the shapes — then target.check_spec runs, and only then are weights read: with a
// target of world > 1 each rank converts only its slice of each tensor, straight from
// the mapped file, so no rank holds more than its shard. Tensors the model does not use
// (rotary inv_freq buffers, attention masks) are ignored with one warning.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <string>

#include "common/status.h"
#include "worker/model/hf_config.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

struct HfModel {
  ModelWeights weights;      // the full model, or target's shard of it (ValidateShard()ed)
  std::string architecture;  // "LlamaForCausalLM"
};

// `path`: the folder, or its config.json.
Result<HfModel> LoadHfModel(const std::string& path, const LoadTarget& target = {});

// True when `path` names a Hugging Face model folder (a directory, or a file named
// config.json): what LoadModel dispatches on.
bool IsHfModelPath(const std::string& path);

}  // namespace flover
