// GGUF v3 (and v2) files of the architectures gguf_architecture.h describes
// (`general.architecture` "llama" or "qwen2") with tensors of the types gguf_quant.h
// loads (F32, F16, BF16, Q8_0, Q6_K, Q5_K, Q5_1, Q5_0, Q4_K, Q4_1, Q4_0). Vectors are
// read as fp32; each matrix is kept in the format target.weights chooses for its type
// (weight_policy.h): read as stored, its bytes straight from the file, when that is its
// own type (F32, F16, BF16, Q8_0, Q4_0, Q4_K), else dequantized and converted a chunk of
// rows at a time.
// Reads metadata under the architecture's prefix (ARCH.embedding_length,
// feed_forward_length, block_count, attention.head_count[_kv] (kv defaults to
// head_count), context_length, attention.layer_norm_rms_epsilon, rope.freq_base
// (default 10000); the vocabulary size is token_embd's row count), the tensors
// token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate,
// ffn_down, ffn_up}, blk.N.attn_{q,k,v}.bias (qwen2), output_norm, [output], and the
// embedded vocabulary (gguf_vocab.h; its bos/eos ids also set spec.bos_id/eos_id) when
// present, and the chat template (tokenizer.chat_template, a string, into
// spec.chat_template). An `output` tensor absent or with the same values as token_embd
// (the same bytes of one type, or the same dequantized values) gives a shared classifier.
//
// GGUF matrices are ne = [in, out], i.e. row-major [out, in] as ModelWeights wants.
// llama.cpp's converter permutes the Q/K rows of `llama` files into adjacent rotary
// pairs, Flover's layout, so those are used as stored; `qwen2` files keep Hugging Face's
// half-split rows, which are permuted at load (rotary_layout.h), biases too.
//
// Errors name the file: NotFound (missing), InvalidArgument (not GGUF, unsupported
// version, architecture (the message names the supported ones), tensor type, a
// vocabulary gguf_vocab.h does not read, or partial RoPE), Corruption (malformed,
// truncated, missing key or tensor, wrong shape). Every tensor is checked (presence,
// type, shape, bytes inside the file) before any weight memory is allocated, so a
// hostile file cannot make the loader allocate more than its tensors in the target's
// formats (at most their fp32 size: ~1x the file for F32, up to ~7.2x for the 4.5-bit
// types converted to fp32) plus a few MiB of read buffers. With a `target` of world > 1,
// only that rank's shard is kept (shard.h): of a row-split tensor only the rank's rows
// are read, of a column-split one a chunk of rows at a time, keeping the bytes (or
// values) of its columns, which must be whole blocks of the kept format (InvalidArgument
// naming the tensor otherwise); target.check_spec runs once the shape is known, before
// any tensor.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"
#include "common/tokenizer.h"
#include "worker/model/gguf_reader.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

struct GgufModel {
  ModelWeights weights;
  std::optional<Tokenizer> tokenizer;
};

Result<GgufModel> LoadGgufModel(const std::string& path, const LoadTarget& target = {});
// The same from a reader already open (GgufReader::FromStream for bytes in memory); the
// messages name reader.path().
Result<GgufModel> LoadGgufModel(GgufReader& reader, const LoadTarget& target = {});

// The vocabulary embedded in the GGUF file at `path` (nullopt when it has none), read
// from its metadata alone (the header is parsed, no tensor is read): what a coordinator
// serving the file tokenizes text with. Errors as LoadGgufModel's for the metadata.
Result<std::optional<Tokenizer>> LoadGgufTokenizer(const std::string& path);

}  // namespace flover
