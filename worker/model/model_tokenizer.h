// The tokenizer that serves a cluster's model (the coordinator tokenizes text prompts
// and detokenizes streams with it): model.tokenizer when the config names one, else the
// model's own: a Hugging Face folder's tokenizer.json (tokenizer_loader.h) or the
// vocabulary embedded in a GGUF file (gguf_loader.h; only its metadata is read).
//
// Thread-safety: a free function; no shared state.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"
#include "common/tokenizer.h"

namespace flover {

// nullopt when there is none (a dummy model, a llama2.c checkpoint without a tokenizer
// named, a GGUF without a vocabulary): requests then carry token ids. Errors name the
// file (LoadTokenizer's, LoadGgufTokenizer's).
Result<std::optional<Tokenizer>> LoadModelTokenizer(const std::string& tokenizer, const std::string& model_path);

}  // namespace flover
