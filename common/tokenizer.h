// Tokenizer: the llama2.c / SentencePiece-BPE vocabulary (pieces with merge scores).
//
// Encode follows run.c (and SentencePiece's BPE): optional BOS, a dummy-prefix space
// when the text is non-empty, one piece per UTF-8 character (bytes without a piece fall
// back to the <0xNN> byte pieces, id byte+3), then repeatedly merge the adjacent pair
// whose merged piece has the highest score (leftmost on ties) until no merge exists.
// Decode maps ids back to bytes: <0xNN> pieces become the raw byte, and the leading space
// of the first piece after BOS is dropped.
//
// Thread-safety: immutable after construction; all methods are const.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace flover {

class Tokenizer {
 public:
  // Reads a llama2.c tokenizer file (tok512.bin): int32 max_token_length, then for each
  // id: float32 score, int32 length, `length` bytes. The vocabulary size is the count of
  // entries in the file. Errors name the file: NotFound when it does not exist, IoError
  // when it cannot be read, Corruption when it is truncated (including a partial last
  // entry), has a negative length, or has fewer than 3 entries (unk, BOS = 1, EOS = 2).
  static Result<Tokenizer> LoadLlama2c(const std::string& path);
  // The same format from bytes already in memory; `name` (a path, or what the bytes
  // are) starts every error message. Corruption as LoadLlama2c.
  static Result<Tokenizer> ParseLlama2c(std::string_view data, const std::string& name);

  // Builds from pieces and scores (e.g. a GGUF file's tokenizer.ggml.tokens/scores).
  // SentencePiece's "▁" (U+2581) in pieces is turned into a space. InvalidArgument when
  // the sizes differ or bos_id/eos_id is not an id of the vocabulary.
  static Result<Tokenizer> FromPieces(std::vector<std::string> pieces, std::vector<float> scores,
                                      int bos_id = 1, int eos_id = 2);

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  // The longest piece in bytes: text of N bytes encodes to at least
  // N / max_piece_bytes() tokens.
  int max_piece_bytes() const { return max_piece_bytes_; }
  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }

  // Token ids of `text` (no EOS). BOS takes no part in merges, so Encode(t, true) is
  // {bos_id()} followed by Encode(t, false). Bytes without a piece give ids byte + 3,
  // which REQUIRES a llama2c-style vocabulary (ids 3..258 are <0x00>..<0xFF>).
  std::vector<int> Encode(std::string_view text, bool add_bos = true) const;

  // Text of `token` when it follows `prev_token` (run.c's decode): drops the leading
  // space after BOS and turns "<0xNN>" into the byte NN. Ids out of range give "".
  std::string DecodeToken(int prev_token, int token) const;
  // Text of a generated continuation; `prev_token` is the token before tokens[0].
  std::string Decode(const std::vector<int>& tokens, int prev_token) const;

  const std::string& piece(int id) const { return pieces_[id]; }

 private:
  // Hashes std::string and std::string_view alike, so lookups need no temporary string.
  struct PieceHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  Tokenizer() = default;
  // REQUIRES: pieces_.size() == scores_.size(). Fills ids_.
  void BuildIndex();
  int Lookup(std::string_view piece) const;  // -1 if absent

  // Constant after construction.
  std::vector<std::string> pieces_;
  std::vector<float> scores_;                                           // [vocab_size]
  std::unordered_map<std::string, int, PieceHash, std::equal_to<>> ids_;  // piece -> id (first id wins)
  int bos_id_ = 1;
  int eos_id_ = 2;
  int max_piece_bytes_ = 1;
};

}  // namespace flover
