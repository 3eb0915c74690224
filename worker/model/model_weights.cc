#include "worker/model/model_weights.h"

#include <string>

namespace flover {
namespace {

int64_t One(const ModelSpec&) { return 1; }
int64_t Dim(const ModelSpec& s) { return s.dim; }
int64_t QDim(const ModelSpec& s) { return s.q_dim(); }
int64_t KvDim(const ModelSpec& s) { return s.kv_dim(); }
int64_t Hidden(const ModelSpec& s) { return s.hidden_dim; }
int64_t Vocab(const ModelSpec& s) { return s.vocab_size; }

bool Always(const ModelSpec&) { return true; }
bool LayerNormBias(const ModelSpec& s) { return s.norm == NormKind::kLayer; }
bool FfnNorm(const ModelSpec& s) { return !s.parallel_residual; }
bool FfnNormBias(const ModelSpec& s) { return !s.parallel_residual && s.norm == NormKind::kLayer; }
bool QkvBias(const ModelSpec& s) { return s.qkv_bias; }
bool Gated(const ModelSpec& s) { return s.ffn == FfnKind::kSwiGlu; }
bool FfnBias(const ModelSpec& s) { return s.ffn_bias; }
bool SeparateClassifier(const ModelSpec& s) { return !s.shared_classifier; }
bool ClassifierBias(const ModelSpec& s) { return s.classifier_bias; }

Status CheckSize(const std::string& name, const std::vector<float>& t, int64_t expected) {
  if (static_cast<int64_t>(t.size()) != expected)
    return Corruption("tensor " + name + " has " + std::to_string(t.size()) + " elements, expected " +
                      std::to_string(expected));
  return Status::Ok();
}

}  // namespace

const std::vector<TensorInfo<LayerWeights>>& LayerTensors() {
  using L = LayerWeights;
  using S = TensorSplit;
  static const std::vector<TensorInfo<L>> kTensors = {
      {"attn_norm", &L::attn_norm, S::kReplicated, Dim, One, Always},
      {"attn_norm_bias", &L::attn_norm_bias, S::kReplicated, Dim, One, LayerNormBias},
      {"wq", &L::wq, S::kQRows, QDim, Dim, Always},
      {"wk", &L::wk, S::kKvRows, KvDim, Dim, Always},
      {"wv", &L::wv, S::kKvRows, KvDim, Dim, Always},
      {"bq", &L::bq, S::kQRows, QDim, One, QkvBias},
      {"bk", &L::bk, S::kKvRows, KvDim, One, QkvBias},
      {"bv", &L::bv, S::kKvRows, KvDim, One, QkvBias},
      {"wo", &L::wo, S::kQCols, Dim, QDim, Always},
      {"ffn_norm", &L::ffn_norm, S::kReplicated, Dim, One, FfnNorm},
      {"ffn_norm_bias", &L::ffn_norm_bias, S::kReplicated, Dim, One, FfnNormBias},
      {"w1", &L::w1, S::kHiddenRows, Hidden, Dim, Always},
      {"w2", &L::w2, S::kHiddenCols, Dim, Hidden, Always},
      {"w3", &L::w3, S::kHiddenRows, Hidden, Dim, Gated},
      {"b1", &L::b1, S::kHiddenRows, Hidden, One, FfnBias},
      {"b2", &L::b2, S::kReplicated, Dim, One, FfnBias},
  };
  return kTensors;
}

const std::vector<TensorInfo<ModelWeights>>& ModelTensors() {
  using M = ModelWeights;
  using S = TensorSplit;
  static const std::vector<TensorInfo<M>> kTensors = {
      {"token_embedding", &M::token_embedding, S::kReplicated, Vocab, Dim, Always},
      {"final_norm", &M::final_norm, S::kReplicated, Dim, One, Always},
      {"final_norm_bias", &M::final_norm_bias, S::kReplicated, Dim, One, LayerNormBias},
      {"classifier", &M::classifier, S::kVocabRows, Vocab, Dim, SeparateClassifier},
      {"classifier_bias", &M::classifier_bias, S::kVocabRows, Vocab, One, ClassifierBias},
  };
  return kTensors;
}

Status ModelWeights::Validate() const {
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  if (static_cast<int>(layers.size()) != spec.n_layers)
    return Corruption("model has " + std::to_string(layers.size()) + " layers, spec says " +
                      std::to_string(spec.n_layers));
  for (const auto& t : ModelTensors())
    FLOVER_RETURN_IF_ERROR(CheckSize(t.name, this->*t.member, t.present(spec) ? t.size(spec) : 0));
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const auto& t : LayerTensors())
      FLOVER_RETURN_IF_ERROR(CheckSize(p + t.name, layers[i].*t.member, t.present(spec) ? t.size(spec) : 0));
  }
  return Status::Ok();
}

}  // namespace flover
