#include "worker/model/model_weights.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

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

}  // namespace

Status CheckTensorShape(const std::string& name, const WeightTensor& t, bool matrix, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) {
    if (!t.empty())
      return Corruption("tensor " + name + " is present (" + std::to_string(t.n_bytes()) +
                        " bytes), but the model has no such tensor");
    return Status::Ok();
  }
  if (!matrix || t.is_f32()) {
    if (!matrix && !t.is_f32())
      return Corruption("tensor " + name + " is " + cpu::WeightFormatName(t.format()) + "; vectors are fp32");
    const int64_t n = static_cast<int64_t>(t.f32().size());
    if (n != rows * cols)
      return Corruption("tensor " + name + " has " + std::to_string(n) + " elements, expected " +
                        std::to_string(rows * cols));
    return Status::Ok();
  }
  const cpu::WeightFormat f = t.format();
  if (!FitsBlocks(f, cols))
    return Corruption("tensor " + name + " is " + cpu::WeightFormatName(f) + " with rows of " + std::to_string(cols) +
                      " values, not whole blocks of " + std::to_string(cpu::WeightBlockValues(f)));
  const int64_t expected = rows * cpu::WeightRowBytes(f, cols);
  if (t.n_bytes() != expected)
    return Corruption("tensor " + name + " has " + std::to_string(t.n_bytes()) + " bytes of " +
                      cpu::WeightFormatName(f) + ", expected " + std::to_string(expected) + " for [" +
                      std::to_string(rows) + ", " + std::to_string(cols) + "]");
  return Status::Ok();
}

const std::vector<TensorInfo<LayerWeights>>& LayerTensors() {
  using L = LayerWeights;
  using S = TensorSplit;
  static const std::vector<TensorInfo<L>> kTensors = {
      {"attn_norm", &L::attn_norm, false, S::kReplicated, Dim, One, Always},
      {"attn_norm_bias", &L::attn_norm_bias, false, S::kReplicated, Dim, One, LayerNormBias},
      {"wq", &L::wq, true, S::kQRows, QDim, Dim, Always},
      {"wk", &L::wk, true, S::kKvRows, KvDim, Dim, Always},
      {"wv", &L::wv, true, S::kKvRows, KvDim, Dim, Always},
      {"bq", &L::bq, false, S::kQRows, QDim, One, QkvBias},
      {"bk", &L::bk, false, S::kKvRows, KvDim, One, QkvBias},
      {"bv", &L::bv, false, S::kKvRows, KvDim, One, QkvBias},
      {"wo", &L::wo, true, S::kQCols, Dim, QDim, Always},
      {"ffn_norm", &L::ffn_norm, false, S::kReplicated, Dim, One, FfnNorm},
      {"ffn_norm_bias", &L::ffn_norm_bias, false, S::kReplicated, Dim, One, FfnNormBias},
      {"w1", &L::w1, true, S::kHiddenRows, Hidden, Dim, Always},
      {"w2", &L::w2, true, S::kHiddenCols, Dim, Hidden, Always},
      {"w3", &L::w3, true, S::kHiddenRows, Hidden, Dim, Gated},
      {"b1", &L::b1, false, S::kHiddenRows, Hidden, One, FfnBias},
      {"b2", &L::b2, false, S::kReplicated, Dim, One, FfnBias},
  };
  return kTensors;
}

const std::vector<TensorInfo<ModelWeights>>& ModelTensors() {
  using M = ModelWeights;
  using S = TensorSplit;
  static const std::vector<TensorInfo<M>> kTensors = {
      {"token_embedding", &M::token_embedding, true, S::kReplicated, Vocab, Dim, Always},
      {"final_norm", &M::final_norm, false, S::kReplicated, Dim, One, Always},
      {"final_norm_bias", &M::final_norm_bias, false, S::kReplicated, Dim, One, LayerNormBias},
      {"classifier", &M::classifier, true, S::kVocabRows, Vocab, Dim, SeparateClassifier},
      {"classifier_bias", &M::classifier_bias, false, S::kVocabRows, Vocab, One, ClassifierBias},
  };
  return kTensors;
}

Status ModelWeights::Validate() const {
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  if (static_cast<int>(layers.size()) != spec.n_layers)
    return Corruption("model has " + std::to_string(layers.size()) + " layers, spec says " +
                      std::to_string(spec.n_layers));
  auto check = [&](const std::string& name, const auto& t, const WeightTensor& tensor) {
    const bool present = t.present(spec);
    return CheckTensorShape(name, tensor, t.matrix, present ? t.rows(spec) : 0, present ? t.cols(spec) : 0);
  };
  for (const auto& t : ModelTensors()) FLOVER_RETURN_IF_ERROR(check(t.name, t, this->*t.member));
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const auto& t : LayerTensors()) FLOVER_RETURN_IF_ERROR(check(p + t.name, t, layers[i].*t.member));
  }
  return Status::Ok();
}

std::map<cpu::WeightFormat, int64_t> ModelWeights::BytesByFormat() const {
  std::map<cpu::WeightFormat, int64_t> bytes;
  auto add = [&](const WeightTensor& t) {
    if (!t.empty()) bytes[t.format()] += t.n_bytes();
  };
  for (const auto& t : ModelTensors()) add(this->*t.member);
  for (const LayerWeights& l : layers)
    for (const auto& t : LayerTensors()) add(l.*t.member);
  return bytes;
}

std::string ModelWeights::FormatsString() const {
  std::vector<std::pair<int64_t, cpu::WeightFormat>> by_size;
  for (const auto& [format, n] : BytesByFormat()) by_size.emplace_back(n, format);
  std::sort(by_size.rbegin(), by_size.rend());
  std::string s;
  for (const auto& [n, format] : by_size) s += (s.empty() ? "" : " + ") + std::string(cpu::WeightFormatName(format)) + " " + ByteString(n);
  return s.empty() ? "no weights" : s;
}

}  // namespace flover
