// LoadTokenizer: a tokenizer from what a user names (model.tokenizer in the cluster
// config, flover run --tokenizer):
//   - a Hugging Face model folder: its tokenizer.json, with tokenizer_config.json when
//     there is one (BOS / EOS tokens, add_bos_token);
//   - a tokenizer.json file (tokenizer_config.json beside it is read too);
//   - a llama2.c tokenizer file (tok512.bin, tokenizer.bin).
// The kind is recognised from the bytes: JSON starts with '{'. A GGUF file or a
// SentencePiece .model is refused with an error that says what to name instead.
//
// Thread-safety: a free function; no shared state.
#pragma once

#include <string>

#include "common/status.h"
#include "common/tokenizer.h"

namespace flover {

// Errors name the path: NotFound (missing, or a folder without tokenizer.json), IoError,
// InvalidArgument (a format that is not read, a file over 128 MiB), Corruption
// (malformed; for JSON, the field), as tokenizer_json.h and Tokenizer::ParseLlama2c.
Result<Tokenizer> LoadTokenizer(const std::string& path);

// The tokenizer a cluster's model uses: `tokenizer` when set (model.tokenizer), else
// the model itself when it is a Hugging Face folder holding a tokenizer.json, else ""
// (none: token ids only; or a vocabulary embedded in a GGUF file, which
// LoadModelTokenizer in worker/model/model_tokenizer.h reads).
std::string ModelTokenizerPath(const std::string& tokenizer, const std::string& model_path);

}  // namespace flover
