#include "worker/model/model_weights.h"

#include <string>

namespace flover {
namespace {

Status CheckSize(const std::string& name, const std::vector<float>& t, int64_t expected) {
  if (static_cast<int64_t>(t.size()) != expected)
    return Corruption("tensor " + name + " has " + std::to_string(t.size()) + " elements, expected " +
                      std::to_string(expected));
  return Status::Ok();
}

}  // namespace

Status ModelWeights::Validate() const {
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  const int64_t d = spec.dim, h = spec.hidden_dim, q = spec.q_dim(), kv = spec.kv_dim(), v = spec.vocab_size;
  FLOVER_RETURN_IF_ERROR(CheckSize("token_embedding", token_embedding, v * d));
  if (static_cast<int>(layers.size()) != spec.n_layers)
    return Corruption("model has " + std::to_string(layers.size()) + " layers, spec says " +
                      std::to_string(spec.n_layers));
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerWeights& l = layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "attn_norm", l.attn_norm, d));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wq", l.wq, q * d));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wk", l.wk, kv * d));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wv", l.wv, kv * d));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wo", l.wo, d * q));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "ffn_norm", l.ffn_norm, d));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "w1", l.w1, h * d));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "w2", l.w2, d * h));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "w3", l.w3, h * d));
  }
  FLOVER_RETURN_IF_ERROR(CheckSize("final_norm", final_norm, d));
  if (spec.shared_classifier) {
    if (!classifier.empty()) return Corruption("classifier present although spec says it is shared");
  } else {
    FLOVER_RETURN_IF_ERROR(CheckSize("classifier", classifier, v * d));
  }
  return Status::Ok();
}

}  // namespace flover
