// llama2.c checkpoints (".bin", the legacy version-0 export of run.c):
// 7 int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
// a negative vocab_size means a separate classifier follows), then float32 arrays in
// run.c's order: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
// rms_final, freq_cis_real/imag (skipped), [wcls].
// The file size must match the header exactly; otherwise Corruption naming the file.
#pragma once

#include <string>

#include "common/status.h"
#include "worker/model/model_weights.h"

namespace flover {

Result<ModelWeights> LoadLlama2cCheckpoint(const std::string& path);

}  // namespace flover
