// PieceScoreModel: the llama2.c / SentencePiece BPE vocabulary, pieces with merge scores
// (tok512.bin, a GGUF "llama" vocabulary).
//
// Encode follows run.c (and SentencePiece's BPE): a dummy-prefix space when the text is
// non-empty, one piece per UTF-8 character (bytes without a piece fall back to the
// <0xNN> byte pieces, id byte + 3), then repeatedly merge the adjacent pair whose merged
// piece has the highest score (leftmost on ties) until no merge exists.
//
// Thread-safety: immutable after construction; Encode may run from many threads.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace flover {

class PieceScoreModel {
 public:
  PieceScoreModel() = default;
  // REQUIRES: pieces.size() == scores.size(). Pieces are text (spaces, not "▁").
  PieceScoreModel(std::vector<std::string> pieces, std::vector<float> scores);

  // Appends the ids of `text` (any bytes). Byte-fallback ids are byte + 3, which
  // REQUIRES a llama2c-style vocabulary (ids 3..258 are <0x00>..<0xFF>).
  void Encode(std::string_view text, std::vector<int>* out) const;

  int Lookup(std::string_view piece) const;  // -1 if absent
  const std::vector<std::string>& pieces() const { return pieces_; }

 private:
  // Hashes std::string and std::string_view alike, so lookups need no temporary string.
  struct PieceHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  // Constant after construction.
  std::vector<std::string> pieces_;
  std::vector<float> scores_;                                             // [vocab_size]
  std::unordered_map<std::string, int, PieceHash, std::equal_to<>> ids_;  // piece -> id (first id wins)
};

}  // namespace flover
