// Loading a model from what a user names on the command line or in a config:
//   - "dummy:<preset>"  seeded random weights of a named shape (dummy_model.h);
//   - "*.gguf", or any file starting with "GGUF"
//                       GGUF v2/v3, architectures llama and qwen2, float and
//                       quantized tensors (gguf_loader.h);
//   - a folder, or a file named config.json
//                       a Hugging Face model folder: config.json and safetensors
//                       weights (F32/F16/BF16), Llama 2/3, Mistral, Qwen2, GPT-J
//                       (hf_loader.h; docs/models.md);
//   - anything else     a llama2.c checkpoint (llama2c_loader.h).
// Matrices are kept in the formats target.weights chooses (weight_policy.h; fp32 unless
// told otherwise: a CPU worker passes its model.dtype, auto by default), vectors fp32.
// Every failure (missing, truncated, inconsistent, unsupported) is a Status naming the
// file and what is wrong; a returned model is complete and Validate()d, or with a
// target of world > 1 exactly that rank's ShardWeights, loaded one tensor at a time
// (a rank never holds the whole model) and ValidateShard()ed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "common/tokenizer.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

struct LoadedModel {
  ModelWeights weights;
  // A vocabulary embedded in the model file (GGUF), if any.
  std::optional<Tokenizer> tokenizer;
  // "llama2.c stories260K.bin", "dummy:stories15m (seed 0)",
  // "Hugging Face LlamaForCausalLM models/tinyllama"
  std::string description;
};

Result<LoadedModel> LoadModel(const std::string& name_or_path, uint64_t dummy_seed = 0,
                              const LoadTarget& target = {});

}  // namespace flover
