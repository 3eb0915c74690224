// ModelWeights: every tensor of a decoder (model_spec.h), fp32, row-major, as loaded
// from a file or generated. Matrices are stored [out, in] so that y = W x (the llama2.c
// and GGUF convention). Loaders fill this; the decoder (worker/engine/decoder.h) repacks
// what it needs once at construction.
//
// Which tensors a model has follows from its spec (LayerTensors()/ModelTensors() say
// when each is present); an absent tensor is an empty vector.
//
// A ModelWeights is either complete and consistent with its spec or not returned at all:
// loaders never hand out half-filled weights. Value type, not thread-safe for writing.
#pragma once

#include <cstdint>
#include <vector>

#include "common/model_spec.h"

namespace flover {

struct LayerWeights {
  std::vector<float> attn_norm;       // [dim]
  std::vector<float> attn_norm_bias;  // [dim]          NormKind::kLayer
  std::vector<float> wq;              // [q_dim, dim]
  std::vector<float> wk;              // [kv_dim, dim]
  std::vector<float> wv;              // [kv_dim, dim]
  std::vector<float> bq;              // [q_dim]        qkv_bias
  std::vector<float> bk;              // [kv_dim]       qkv_bias
  std::vector<float> bv;              // [kv_dim]       qkv_bias
  std::vector<float> wo;              // [dim, q_dim]
  std::vector<float> ffn_norm;        // [dim]          not with parallel_residual
  std::vector<float> ffn_norm_bias;   // [dim]          kLayer, not parallel_residual
  std::vector<float> w1;              // [hidden_dim, dim] gate (SwiGLU) or fc_in (GELU)
  std::vector<float> w2;              // [dim, hidden_dim] down / fc_out
  std::vector<float> w3;              // [hidden_dim, dim] up   FfnKind::kSwiGlu
  std::vector<float> b1;              // [hidden_dim]   ffn_bias
  std::vector<float> b2;              // [dim]          ffn_bias
};

struct ModelWeights {
  ModelSpec spec;
  std::vector<float> token_embedding;  // [vocab_size, dim]
  std::vector<LayerWeights> layers;    // [n_layers]
  std::vector<float> final_norm;       // [dim]
  std::vector<float> final_norm_bias;  // [dim]          NormKind::kLayer
  std::vector<float> classifier;       // [vocab_size, dim]; empty when spec.shared_classifier
  std::vector<float> classifier_bias;  // [vocab_size]   classifier_bias

  // The LM head: `classifier`, or `token_embedding` when shared.
  const std::vector<float>& lm_head() const {
    return spec.shared_classifier ? token_embedding : classifier;
  }

  // Checks every tensor's size against `spec` (and spec.Validate()), absent tensors
  // included; the message names the tensor. Loaders call it before returning.
  Status Validate() const;
};

// How a tensor is split over tensor-parallel ranks (shard.h has the table).
enum class TensorSplit {
  kReplicated,   // kept whole: token_embedding, the norms, b2
  kQRows,        // wq, bq
  kKvRows,       // wk, wv, bk, bv
  kHiddenRows,   // w1, w3, b1
  kQCols,        // wo
  kHiddenCols,   // w2
  kVocabRows,    // classifier (the LM head) and its bias, padded on the last rank
};

// One tensor kind: its name in messages, where it lives, its full shape [rows, cols]
// (a vector is [n, 1]) and whether a model of `spec` has it.
template <typename Owner>
struct TensorInfo {
  const char* name;
  std::vector<float> Owner::*member;
  TensorSplit split;
  int64_t (*rows)(const ModelSpec& spec);
  int64_t (*cols)(const ModelSpec& spec);
  bool (*present)(const ModelSpec& spec);

  int64_t size(const ModelSpec& spec) const { return rows(spec) * cols(spec); }
};

// Every tensor of a layer / of the model outside the layers, in file order. The model
// table leaves out `classifier` when the spec shares it (present() is false).
const std::vector<TensorInfo<LayerWeights>>& LayerTensors();
const std::vector<TensorInfo<ModelWeights>>& ModelTensors();

}  // namespace flover
