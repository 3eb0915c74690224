// ModelWeights: every tensor of a LLaMA decoder, fp32, row-major, as loaded from a file
// or generated. Matrices are stored [out, in] so that y = W x (the llama2.c and GGUF
// convention). Loaders fill this; the decoder (worker/engine/decoder.h) repacks what it
// needs once at construction.
//
// A ModelWeights is either complete and consistent with its spec or not returned at all:
// loaders never hand out half-filled weights. Value type, not thread-safe for writing.
#pragma once

#include <vector>

#include "common/model_spec.h"

namespace flover {

struct LayerWeights {
  std::vector<float> attn_norm;  // [dim]
  std::vector<float> wq;         // [q_dim, dim]
  std::vector<float> wk;         // [kv_dim, dim]
  std::vector<float> wv;         // [kv_dim, dim]
  std::vector<float> wo;         // [dim, q_dim]
  std::vector<float> ffn_norm;   // [dim]
  std::vector<float> w1;         // [hidden_dim, dim] gate
  std::vector<float> w2;         // [dim, hidden_dim] down
  std::vector<float> w3;         // [hidden_dim, dim] up
};

struct ModelWeights {
  ModelSpec spec;
  std::vector<float> token_embedding;  // [vocab_size, dim]
  std::vector<LayerWeights> layers;    // [n_layers]
  std::vector<float> final_norm;       // [dim]
  std::vector<float> classifier;       // [vocab_size, dim]; empty when spec.shared_classifier

  // The LM head: `classifier`, or `token_embedding` when shared.
  const std::vector<float>& lm_head() const {
    return spec.shared_classifier ? token_embedding : classifier;
  }

  // Checks every tensor's size against `spec` (and spec.Validate()); the message names
  // the tensor. Loaders call it before returning.
  Status Validate() const;
};

}  // namespace flover
