// ModelWeights: every tensor of a decoder (model_spec.h), row-major, as loaded from a
// file or generated. Matrices are stored [out, in] so that y = W x (the llama2.c and GGUF
// convention), each in the format it is kept in (weight_tensor.h: fp32, fp16, bf16,
// Q8_0, Q4_0 or Q4_K; weight_policy.h says which); vectors (norm weights, biases) are
// always fp32. Loaders fill this; the decoder (worker/engine/decoder.h) repacks what it
// needs once at construction.
//
// Which tensors a model has follows from its spec (LayerTensors()/ModelTensors() say
// when each is present, and give every tensor's shape); an absent tensor is empty.
//
// A ModelWeights is either complete and consistent with its spec or not returned at all:
// loaders never hand out half-filled weights. Value type, not thread-safe for writing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "worker/model/weight_tensor.h"

namespace flover {

struct LayerWeights {
  WeightTensor attn_norm;         // [dim]
  WeightTensor attn_norm_bias;    // [dim]          NormKind::kLayer
  WeightTensor wq;                // [q_dim, dim]
  WeightTensor wk;                // [kv_dim, dim]
  WeightTensor wv;                // [kv_dim, dim]
  WeightTensor bq;                // [q_dim]        qkv_bias
  WeightTensor bk;                // [kv_dim]       qkv_bias
  WeightTensor bv;                // [kv_dim]       qkv_bias
  WeightTensor wo;                // [dim, q_dim]
  WeightTensor ffn_norm;          // [dim]          not with parallel_residual
  WeightTensor ffn_norm_bias;     // [dim]          kLayer, not parallel_residual
  WeightTensor w1;                // [hidden_dim, dim] gate (SwiGLU) or fc_in (GELU)
  WeightTensor w2;                // [dim, hidden_dim] down / fc_out
  WeightTensor w3;                // [hidden_dim, dim] up   FfnKind::kSwiGlu
  WeightTensor b1;                // [hidden_dim]   ffn_bias
  WeightTensor b2;                // [dim]          ffn_bias
};

struct ModelWeights {
  ModelSpec spec;
  WeightTensor token_embedding;   // [vocab_size, dim]
  std::vector<LayerWeights> layers;  // [n_layers]
  WeightTensor final_norm;        // [dim]
  WeightTensor final_norm_bias;   // [dim]          NormKind::kLayer
  WeightTensor classifier;        // [vocab_size, dim]; empty when spec.shared_classifier
  WeightTensor classifier_bias;   // [vocab_size]   classifier_bias

  // The LM head: `classifier`, or `token_embedding` when shared.
  const WeightTensor& lm_head() const { return spec.shared_classifier ? token_embedding : classifier; }

  // Checks every tensor against `spec` (and spec.Validate()), absent tensors included:
  // a vector is fp32 with its number of values, a matrix holds its [rows, cols] in its
  // format (whole blocks, the format's bytes). The message names the tensor. Loaders
  // call it before returning.
  Status Validate() const;

  // Bytes of every tensor held, by format: what the weights cost in memory.
  std::map<cpu::WeightFormat, int64_t> BytesByFormat() const;
  // "q8_0 1.1 GB + fp32 0.3 MB": BytesByFormat() for logs, largest first.
  std::string FormatsString() const;
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

// One tensor kind: its name in messages, where it lives, whether it is a matrix (kept
// in any format) or a vector (fp32), its full shape [rows, cols] (a vector is [n, 1])
// and whether a model of `spec` has it.
template <typename Owner>
struct TensorInfo {
  const char* name;
  WeightTensor Owner::*member;
  bool matrix;
  TensorSplit split;
  int64_t (*rows)(const ModelSpec& spec);
  int64_t (*cols)(const ModelSpec& spec);
  bool (*present)(const ModelSpec& spec);

  int64_t size(const ModelSpec& spec) const { return rows(spec) * cols(spec); }
};

// OK when `t` (tensor `name`, for the message) is what a table entry of shape [rows,
// cols] holds: a vector fp32 with rows * cols values, a matrix [rows, cols] in its
// format; rows or cols 0 (an absent tensor): empty. Corruption naming the tensor
// otherwise.
Status CheckTensorShape(const std::string& name, const WeightTensor& t, bool matrix, int64_t rows, int64_t cols);

// Every tensor of a layer / of the model outside the layers, in file order. The model
// table leaves out `classifier` when the spec shares it (present() is false).
const std::vector<TensorInfo<LayerWeights>>& LayerTensors();
const std::vector<TensorInfo<ModelWeights>>& ModelTensors();

}  // namespace flover
