// Tokenizer: text to token ids and back, for the vocabularies users have:
//   - piece scores (PieceScoreModel, piece_scores.h): llama2.c's tok512.bin and GGUF
//     "llama" vocabularies, encoded as run.c does and decoded as run.c does (the leading
//     space of the piece after BOS dropped, <0xNN> pieces as the byte NN);
//   - Hugging Face tokenizers' BPE (tokenizer.json, tokenizer_json.h; GGUF "gpt2"
//     vocabularies): byte-level BPE (GPT-2, Llama 3, Qwen2) and SentencePiece-style BPE
//     with byte fallback (Llama 2, Mistral), encoded and decoded exactly as tokenizers
//     does: added tokens first, then normalizer, pre-tokenizer, BPE model (bpe_merges.h);
//     decoding through the decoder pipeline (token_decoder.h).
// LoadTokenizer (tokenizer_loader.h) picks the kind from what a user names.
//
// Text that matches an added (special) token (tokenizer.json's added_tokens, GGUF
// control tokens; a llama2.c file has none) maps to that token's id, and decoding gives
// special tokens' text (tokenizers' decode with skip_special_tokens=False). Streamed text goes through a TokenStreamDecoder
// (token_stream_decoder.h), which never splits a UTF-8 character.
//
// Thread-safety: immutable after construction; all methods are const, and copies share
// the vocabulary (cheap to copy).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/added_tokens.h"
#include "common/status.h"
#include "common/token_decoder.h"

namespace flover {

// The most ids a tokenizer may have (tokenizer.json and GGUF vocabularies are bounded by
// it; the largest real vocabularies have about 256k tokens).
inline constexpr int kMaxTokenizerVocab = 1 << 20;

class BpeModel;
class Normalizer;
class PreTokenizer;
class TokenStreamDecoder;

// What a Hugging Face style BPE tokenizer is made of: tokenizer.json's sections, or a
// GGUF "gpt2" vocabulary described the same way.
struct BpeTokenizerParts {
  std::shared_ptr<const BpeModel> model;
  std::vector<AddedToken> added_tokens;              // ids may lie beyond the model's
  std::shared_ptr<const Normalizer> normalizer;       // may be null
  std::shared_ptr<const PreTokenizer> pre_tokenizer;  // may be null
  std::vector<DecoderStep> decoder;                   // {kJoin} when the file has none
  int bos_id = -1;  // -1: none
  int eos_id = -1;
  bool add_bos = false;  // Encode(text, true) starts with bos_id
};

class Tokenizer {
 public:
  enum class Kind { kPieceScores, kBpe };

  // Reads a llama2.c tokenizer file (tok512.bin): int32 max_token_length, then for each
  // id: float32 score, int32 length, `length` bytes. The vocabulary size is the count of
  // entries in the file. Errors name the file: NotFound when it does not exist, IoError
  // when it cannot be read, Corruption when it is truncated (including a partial last
  // entry), has a negative length, or has fewer than 3 entries (unk, BOS = 1, EOS = 2),
  // or is JSON (a tokenizer.json: LoadTokenizer reads those).
  static Result<Tokenizer> LoadLlama2c(const std::string& path);
  // The same format from bytes already in memory; `name` (a path, or what the bytes
  // are) starts every error message. Corruption as LoadLlama2c.
  static Result<Tokenizer> ParseLlama2c(std::string_view data, const std::string& name);

  // Builds from pieces and scores (e.g. a GGUF file's tokenizer.ggml.tokens/scores).
  // SentencePiece's "▁" (U+2581) in pieces is turned into a space. `added_tokens`
  // (e.g. GGUF control tokens) are found in text before encoding. InvalidArgument when
  // the sizes differ, bos_id/eos_id is not an id of the vocabulary, or an added token's
  // id is not.
  static Result<Tokenizer> FromPieces(std::vector<std::string> pieces, std::vector<float> scores,
                                      int bos_id = 1, int eos_id = 2, std::vector<AddedToken> added_tokens = {});

  // Builds a Hugging Face style BPE tokenizer. InvalidArgument when parts.model is null,
  // an id is outside 0..kMaxTokenizerVocab-1, or bos_id / eos_id is given but has no
  // token.
  static Result<Tokenizer> FromBpe(BpeTokenizerParts parts);

  Kind kind() const;
  // One more than the largest id (ids without a token decode to "").
  int vocab_size() const;
  // The most bytes of text one token stands for: text of N bytes encodes to at least
  // N / max_piece_bytes() tokens. INT_MAX when there is no such bound (e.g. an added
  // token that takes in whitespace, or a normalizer that removes text).
  int max_piece_bytes() const;
  int bos_id() const;  // -1 when the tokenizer has no BOS
  int eos_id() const;  // -1 when unknown
  // Whether Encode(text, true) starts with BOS (piece scores: always).
  bool add_bos() const;

  // Token ids of `text` (no EOS). When add_bos and add_bos(), Encode(t, true) is
  // {bos_id()} followed by Encode(t, false). Piece scores: bytes without a piece give
  // ids byte + 3, which REQUIRES a llama2c-style vocabulary (ids 3..258 are
  // <0x00>..<0xFF>). BPE: text that is not valid UTF-8 is encoded as ToValidUtf8(text),
  // since tokenizers only takes strings.
  std::vector<int> Encode(std::string_view text, bool add_bos = true) const;

  // The bytes of `token` when it follows `prev_token` (-1: none), which may be part of a
  // UTF-8 character: a byte token's byte, a byte-level token's bytes. Piece scores: as
  // run.c (the leading space dropped after BOS). BPE: the text begins (a decoder may drop
  // the leading space) when prev_token is -1 or BOS. Ids without a token give "".
  std::string DecodeToken(int prev_token, int token) const;
  // Text of `tokens`; `prev_token` is the token before tokens[0] (-1: none). BPE: exactly
  // tokenizers' decode(tokens, skip_special_tokens=False) when prev_token is -1 or BOS,
  // valid UTF-8. Piece scores: the DecodeToken bytes joined, as run.c prints them.
  std::string Decode(const std::vector<int>& tokens, int prev_token) const;

  // The token's text as the vocabulary spells it (piece scores: "▁" as a space).
  // REQUIRES: 0 <= id < vocab_size().
  const std::string& piece(int id) const;
  // The id of a token spelled `text` (added tokens first), -1 when none.
  int TokenToId(std::string_view text) const;

 private:
  friend class TokenStreamDecoder;
  struct Impl;

  Tokenizer() = default;
  // BPE: whether decoding after `prev_token` starts the text.
  bool StartsText(int prev_token) const;
  bool HasToken(int id) const;  // an id of the vocabulary that has a token
  const std::vector<DecoderStep>& decoder_steps() const;  // BPE

  std::shared_ptr<const Impl> impl_;  // never null once built
};

}  // namespace flover
