#include "common/model_spec.h"

#include <cmath>
#include <sstream>

namespace flover {

int64_t ModelSpec::n_params() const {
  const int64_t d = dim, h = hidden_dim, q = q_dim(), kv = kv_dim();
  const int64_t norm_params = norm == NormKind::kLayer ? 2 * d : d;  // weight (and bias)
  const int64_t n_norms = parallel_residual ? 1 : 2;
  int64_t per_layer = n_norms * norm_params  // attention (and ffn) norms
                      + d * q                // wq
                      + 2 * d * kv           // wk, wv
                      + q * d                // wo
                      + (ffn == FfnKind::kSwiGlu ? 3 : 2) * d * h;  // w1, w2 (, w3)
  if (qkv_bias) per_layer += q + 2 * kv;
  if (ffn_bias) per_layer += h + d;
  int64_t n = int64_t{vocab_size} * d + n_layers * per_layer + norm_params;
  if (!shared_classifier) n += int64_t{vocab_size} * d;
  if (classifier_bias) n += vocab_size;
  return n;
}

std::vector<float> ModelSpec::RopeFrequencies() const {
  const int rd = rotary_dims();
  std::vector<float> freqs(static_cast<size_t>(rd / 2));
  for (int i = 0; i < rd; i += 2)  // run.c's float arithmetic: 1 / theta^(i / rotary_dim)
    freqs[i / 2] = 1.0f / powf(rope_theta, static_cast<float>(i) / static_cast<float>(rd));
  if (rope_scaling.kind != RopeScaling::Kind::kLlama3) return freqs;
  // LLaMA 3.1: long wavelengths slowed down by `factor`, short ones kept, a smooth ramp
  // between (as Hugging Face transformers computes it).
  const RopeScaling& s = rope_scaling;
  const float old_context = static_cast<float>(s.original_max_position);
  const float low_freq_wavelen = old_context / s.low_freq_factor;
  const float high_freq_wavelen = old_context / s.high_freq_factor;
  for (float& f : freqs) {
    const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
    if (wavelen > low_freq_wavelen) {
      f /= s.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const float smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0f - smooth) * f / s.factor + smooth * f;
    }
  }
  return freqs;
}

int64_t ModelSpec::kv_bytes_per_token(int bytes_per_value) const {
  return int64_t{2} * n_layers * kv_dim() * bytes_per_value;
}

Status ModelSpec::Validate() const {
  auto positive = [](const char* name, int v) -> Status {
    if (v <= 0) return InvalidArgument(std::string(name) + " must be positive, got " + std::to_string(v));
    return Status::Ok();
  };
  FLOVER_RETURN_IF_ERROR(positive("dim", dim));
  FLOVER_RETURN_IF_ERROR(positive("hidden_dim", hidden_dim));
  FLOVER_RETURN_IF_ERROR(positive("n_layers", n_layers));
  FLOVER_RETURN_IF_ERROR(positive("n_heads", n_heads));
  FLOVER_RETURN_IF_ERROR(positive("n_kv_heads", n_kv_heads));
  FLOVER_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  FLOVER_RETURN_IF_ERROR(positive("max_seq_len", max_seq_len));
  if (dim % n_heads != 0)
    return InvalidArgument("dim=" + std::to_string(dim) + " is not divisible by n_heads=" + std::to_string(n_heads));
  if (n_heads % n_kv_heads != 0)
    return InvalidArgument("n_heads=" + std::to_string(n_heads) + " is not divisible by n_kv_heads=" +
                           std::to_string(n_kv_heads));
  if (rotary_dim < 0 || rotary_dim > head_dim() || rotary_dims() % 2 != 0)
    return InvalidArgument("rotary_dim=" + std::to_string(rotary_dims()) + " must be even and at most head_dim=" +
                           std::to_string(head_dim()));
  if (rope_scaling.kind == RopeScaling::Kind::kLlama3 &&
      !(rope_scaling.factor >= 1.0f && rope_scaling.low_freq_factor > 0.0f &&
        rope_scaling.high_freq_factor > rope_scaling.low_freq_factor && rope_scaling.original_max_position > 0))
    return InvalidArgument("rope_scaling (llama3) needs factor >= 1, 0 < low_freq_factor < high_freq_factor and "
                           "original_max_position_embeddings > 0");
  if (sliding_window < 0) return InvalidArgument("sliding_window must not be negative");
  if (!(norm_eps > 0.0f)) return InvalidArgument("norm_eps must be positive");
  if (!(rope_theta > 0.0f)) return InvalidArgument("rope_theta must be positive");
  if (bos_id < 0 || bos_id >= vocab_size || eos_id < 0 || eos_id >= vocab_size)
    return InvalidArgument("bos_id/eos_id outside the vocabulary of " + std::to_string(vocab_size));
  if (extra_eos_ids.size() > kMaxExtraEosIds)
    return InvalidArgument(std::to_string(extra_eos_ids.size()) + " end-of-text ids; at most " +
                           std::to_string(kMaxExtraEosIds + 1) + " are supported");
  for (int id : extra_eos_ids)
    if (id < 0 || id >= vocab_size)
      return InvalidArgument("eos id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(vocab_size));
  return Status::Ok();
}

std::string ModelSpec::ToString() const {
  std::ostringstream os;
  if (arch != "llama") os << arch << " ";
  os << "dim=" << dim << " hidden=" << hidden_dim << " layers=" << n_layers << " heads=" << n_heads
     << " kv_heads=" << n_kv_heads << " vocab=" << vocab_size << " seq=" << max_seq_len
     << (shared_classifier ? " shared_classifier" : " separate_classifier");
  return os.str();
}

}  // namespace flover
