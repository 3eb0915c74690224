// llama2.c checkpoints (".bin", the legacy version-0 export of run.c):
// 7 int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
// a negative vocab_size means a separate classifier follows), then float32 arrays in
// run.c's order: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3,
// rms_final, freq_cis_real/imag (skipped), [wcls].
// The file size must match the header exactly, checked before anything is allocated;
// otherwise Corruption naming the file and both sizes. A header that fails
// ModelSpec::Validate() is Corruption too; a version-1/2 export ("ak42") is
// InvalidArgument; a missing file NotFound. The spec gets max_seq_len = seq_len,
// norm_eps 1e-5, rope_theta 10000, bos 1, eos 2 (run.c's constants).
// With a `target` of world > 1, only that rank's shard is kept (shard.h), each tensor
// cut as it is read; target.check_spec runs after the header, before any tensor.
#pragma once

#include <cstdio>
#include <string>

#include "common/status.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

Result<ModelWeights> LoadLlama2cCheckpoint(const std::string& path, const LoadTarget& target = {});
// The same from the stream `file` (a file, or bytes in memory through fmemopen()), read
// from its start; its size is found by seeking to its end. `name` stands for the path in
// messages. The caller keeps ownership of `file`.
Result<ModelWeights> LoadLlama2cCheckpoint(std::FILE* file, const std::string& name, const LoadTarget& target = {});

}  // namespace flover
