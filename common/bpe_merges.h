// BpeModel: the BPE model of Hugging Face tokenizers (byte-level BPE as in GPT-2,
// Llama 3 and Qwen2; SentencePiece-style BPE with byte fallback as in Llama 2 and
// Mistral conversions): a vocabulary, and merges ranked by their order.
//
// Encoding a word (one piece from the pre-tokenizer) follows tokenizers' BPE exactly:
//   - ignore_merges: a word that is itself in the vocabulary is that one token;
//   - one symbol per character (continuing_subword_prefix before all but the first,
//     end_of_word_suffix after the last); a character outside the vocabulary becomes its
//     <0xNN> byte tokens (byte_fallback, when all exist), else the unknown token (runs of
//     them fused into one with fuse_unk);
//   - then the adjacent pair with the lowest merge rank is merged (leftmost among
//     equals), repeatedly, until no pair has a merge.
// A merge list naming the same pair twice keeps the later rank, as tokenizers does.
//
// Thread-safety: immutable after Build; Encode may run from many threads.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace flover {

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  // `vocab`: token -> id (ids need not be dense). `merges`: pairs in rank order.
  // InvalidArgument naming the merge (its rank) when a side or the merged token is not
  // in the vocabulary, or when unk_token is not.
  static Result<BpeModel> Build(std::unordered_map<std::string, int> vocab,
                                const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  // Appends the ids of `word`. REQUIRES: word is valid UTF-8.
  void Encode(std::string_view word, std::vector<int>* out) const;

  // Hashes std::string and std::string_view alike, so lookups need no temporary string.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Vocab = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

  int TokenToId(std::string_view token) const;  // -1 when absent
  const Vocab& vocab() const { return vocab_; }
  const BpeOptions& options() const { return options_; }
  // Whether every byte has its <0xNN> token (with byte_fallback: nothing is unknown).
  bool has_all_byte_tokens() const;

 private:
  struct Symbol {
    int id;
    int prev, next;
    size_t len;  // bytes of the word it covers; 0 once merged into its left neighbour
  };
  struct MergeInfo {
    int rank;
    int merged_id;
  };
  static uint64_t PairKey(int a, int b) { return static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32 | static_cast<uint32_t>(b); }
  const MergeInfo* FindMerge(int a, int b) const;
  void MergeAll(std::vector<Symbol>* symbols) const;

  // Constant after Build.
  Vocab vocab_;
  std::unordered_map<uint64_t, MergeInfo> merges_;  // PairKey -> rank, merged id
  BpeOptions options_;
  int unk_id_ = -1;
  int byte_ids_[256];  // <0xNN> tokens, -1 when absent
};

}  // namespace flover
