// Reading Hugging Face tokenizer files: tokenizer.json (the tokenizers library's
// serialization) and tokenizer_config.json (transformers' settings: BOS / EOS tokens and
// whether BOS is added).
//
// Supported tokenizer.json sections (anything else is refused with an error naming it):
//   model          BPE (vocab, merges as "a b" strings or [a, b] pairs, unk_token,
//                  fuse_unk, byte_fallback, ignore_merges, continuing_subword_prefix,
//                  end_of_word_suffix; dropout null or 0)
//   added_tokens   id, content, special, single_word, lstrip, rstrip, normalized
//   normalizer     Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Strip
//   pre_tokenizer  Sequence, Split, ByteLevel, Metaspace (prepend_scheme or the older
//                  add_prefix_space), Digits
//   decoder        Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace
//   post_processor TemplateProcessing (its special token before $A is BOS), ByteLevel,
//                  Sequence; tokens after $A (EOS) are not added
// Bounds (hostile files): kMaxTokenizerVocab ids and vocabulary entries, 4M merges,
// 64 KiB per token, 8 nested Sequences.
//
// Errors name the file and the field: Corruption for malformed JSON or values of the
// wrong type, InvalidArgument for what is well-formed but unsupported.
//
// Thread-safety: free functions; no shared state.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/tokenizer.h"

namespace flover {

// What tokenizer_config.json says; an absent key is nullopt.
struct TokenizerConfigJson {
  // The outer optional: the key is present; the inner one: its value is not null.
  std::optional<std::optional<std::string>> bos_token;
  std::optional<std::optional<std::string>> eos_token;
  std::optional<bool> add_bos_token;
};

// `name` (a path) starts every error message.
Result<TokenizerConfigJson> ParseTokenizerConfigJson(std::string_view json, const std::string& name);

// BOS: the config's bos_token, else the template's token before $A. Whether Encode adds
// it: the config's add_bos_token, else whether the template does. EOS: the config's
// eos_token, else "</s>", "<|endoftext|>" or "<|end_of_text|>" when the vocabulary has
// one. InvalidArgument when the config names a token the tokenizer lacks.
Result<Tokenizer> ParseTokenizerJson(std::string_view json, const std::string& name,
                                     const TokenizerConfigJson& config = {});

}  // namespace flover
