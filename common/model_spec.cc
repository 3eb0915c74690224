#include "common/model_spec.h"

#include <sstream>

namespace flover {

int64_t ModelSpec::n_params() const {
  const int64_t d = dim, h = hidden_dim, q = q_dim(), kv = kv_dim();
  const int64_t per_layer = 2 * d            // attention and ffn norms
                            + d * q          // wq
                            + 2 * d * kv     // wk, wv
                            + q * d          // wo
                            + 3 * d * h;     // w1, w2, w3
  int64_t n = int64_t{vocab_size} * d + n_layers * per_layer + d;
  if (!shared_classifier) n += int64_t{vocab_size} * d;
  return n;
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
  if (head_dim() % 2 != 0)
    return InvalidArgument("head_dim=" + std::to_string(head_dim()) + " must be even for RoPE");
  if (!(norm_eps > 0.0f)) return InvalidArgument("norm_eps must be positive");
  if (!(rope_theta > 0.0f)) return InvalidArgument("rope_theta must be positive");
  if (bos_id < 0 || bos_id >= vocab_size || eos_id < 0 || eos_id >= vocab_size)
    return InvalidArgument("bos_id/eos_id outside the vocabulary of " + std::to_string(vocab_size));
  return Status::Ok();
}

std::string ModelSpec::ToString() const {
  std::ostringstream os;
  os << "dim=" << dim << " hidden=" << hidden_dim << " layers=" << n_layers << " heads=" << n_heads
     << " kv_heads=" << n_kv_heads << " vocab=" << vocab_size << " seq=" << max_seq_len
     << (shared_classifier ? " shared_classifier" : " separate_classifier");
  return os.str();
}

}  // namespace flover
