#include "common/bpe_merges.h"

#include <algorithm>
#include <cstdio>
#include <queue>
#include <utility>

#include "common/utf8.h"

namespace flover {

Result<BpeModel> BpeModel::Build(std::unordered_map<std::string, int> vocab,
                                 const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options) {
  BpeModel m;
  m.vocab_.reserve(vocab.size());
  for (auto& [token, id] : vocab) m.vocab_.emplace(token, id);
  m.options_ = std::move(options);
  if (m.options_.unk_token) {
    m.unk_id_ = m.TokenToId(*m.options_.unk_token);
    if (m.unk_id_ < 0) return InvalidArgument("unk_token \"" + *m.options_.unk_token + "\" is not in the vocabulary");
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    m.byte_ids_[b] = m.TokenToId(name);
  }
  const size_t prefix_len = m.options_.continuing_subword_prefix.size();
  m.merges_.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const int a_id = m.TokenToId(a);
    const int b_id = m.TokenToId(b);
    const std::string where = "merge " + std::to_string(rank) + " (\"" + a + "\", \"" + b + "\")";
    if (a_id < 0) return InvalidArgument(where + ": \"" + a + "\" is not in the vocabulary");
    if (b_id < 0) return InvalidArgument(where + ": \"" + b + "\" is not in the vocabulary");
    // The right side loses as many bytes as the continuing-subword prefix has (tokenizers
    // does not check that they are the prefix).
    merged.assign(a).append(b, std::min(prefix_len, b.size()), std::string::npos);
    const int merged_id = m.TokenToId(merged);
    if (merged_id < 0) return InvalidArgument(where + ": the merged token \"" + merged + "\" is not in the vocabulary");
    m.merges_[PairKey(a_id, b_id)] = {static_cast<int>(rank), merged_id};
  }
  return m;
}

int BpeModel::TokenToId(std::string_view token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

bool BpeModel::has_all_byte_tokens() const {
  for (const int id : byte_ids_)
    if (id < 0) return false;
  return true;
}

const BpeModel::MergeInfo* BpeModel::FindMerge(int a, int b) const {
  const auto it = merges_.find(PairKey(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::Encode(std::string_view word, std::vector<int>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const int id = TokenToId(word); id >= 0) {
      out->push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int id, size_t len) {
    const int index = static_cast<int>(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, len});
  };
  // A pending unknown token covering unk_bytes bytes (0: none pending).
  size_t unk_bytes = 0;
  std::string s;
  for (size_t i = 0; i < word.size();) {
    const size_t n = Utf8CharLength(static_cast<unsigned char>(word[i]));
    const bool is_first = i == 0;
    const bool is_last = i + n >= word.size();
    s.clear();
    if (!is_first) s.append(options_.continuing_subword_prefix);
    s.append(word.substr(i, n));
    if (is_last) s.append(options_.end_of_word_suffix);
    i += n;
    if (const int id = TokenToId(s); id >= 0) {
      if (unk_bytes > 0) add(unk_id_, std::exchange(unk_bytes, 0));
      add(id, n);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (const char c : s) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {  // a pending unknown token stays pending, as in tokenizers
        for (const char c : s) add(byte_ids_[static_cast<unsigned char>(c)], 1);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (unk_bytes > 0 && !options_.fuse_unk) add(unk_id_, std::exchange(unk_bytes, 0));
      unk_bytes += n;
    }
  }
  if (unk_bytes > 0) add(unk_id_, unk_bytes);
  MergeAll(&symbols);
  for (const Symbol& sym : symbols)
    if (sym.len > 0) out->push_back(sym.id);
}

void BpeModel::MergeAll(std::vector<Symbol>* symbols_ptr) const {
  std::vector<Symbol>& symbols = *symbols_ptr;
  struct Candidate {
    int pos;
    int rank;
    int merged_id;
  };
  // The top is the lowest rank, then the leftmost position.
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeInfo* m = FindMerge(symbols[i].id, symbols[i + 1].id))
      queue.push({static_cast<int>(i), m->rank, m->merged_id});
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    const int right_pos = left.next;
    const Symbol right = symbols[right_pos];
    // Stale when the pair at this position no longer merges into the same token.
    const MergeInfo* now = FindMerge(left.id, right.id);
    if (now == nullptr || now->merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    left.len += right.len;
    left.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeInfo* m = FindMerge(symbols[left.prev].id, left.id))
        queue.push({left.prev, m->rank, m->merged_id});
    }
    if (left.next >= 0) {
      if (const MergeInfo* m = FindMerge(left.id, symbols[left.next].id))
        queue.push({top.pos, m->rank, m->merged_id});
    }
  }
}

}  // namespace flover
