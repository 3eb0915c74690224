// The vocabulary a GGUF file carries (tokenizer.ggml.*), as a Tokenizer:
//   tokenizer.ggml.model = "llama"  pieces and scores (tokens, scores): SentencePiece BPE
//                                   by scores (Tokenizer::FromPieces)
//   tokenizer.ggml.model = "gpt2"   byte-level BPE (tokens, merges "a b"), with the
//                                   pre-tokenizer named by tokenizer.ggml.pre:
//                                     "default", "gpt-2", "gpt2"      GPT-2's regex
//                                     "llama-bpe", "llama3", "llama-v3" Llama 3's regex,
//                                                                      ignore_merges
//                                     "qwen2"                          Qwen2's regex, NFC
//                                   (absent: "default"), as Hugging Face tokenizers
//                                   encodes those models
// tokenizer.ggml.token_type: control tokens (3) are special tokens and user-defined ones
// (4) added tokens; both are found in text before encoding. BOS / EOS are the model's
// (tokenizer.ggml.bos_token_id / eos_token_id). "gpt2": tokenizer.ggml.add_bos_token says
// whether BOS is added (default: no); "llama" vocabularies always add it, as run.c.
//
// Errors: InvalidArgument for a model or pre-tokenizer that is not read (naming it),
// Corruption for malformed keys (naming them). The caller adds the file's name.
//
// Thread-safety: a free function over a reader used by one thread.
#pragma once

#include <optional>

#include "common/model_spec.h"
#include "common/status.h"
#include "common/tokenizer.h"
#include "worker/model/gguf_reader.h"

namespace flover {

// nullopt when the file has no tokenizer.ggml.tokens. The token count must be
// spec.vocab_size; spec.bos_id / eos_id name BOS / EOS.
Result<std::optional<Tokenizer>> ReadGgufVocab(const GgufReader& reader, const ModelSpec& spec);

}  // namespace flover
