#include "common/piece_scores.h"

#include <queue>
#include <utility>

#include "common/check.h"

namespace flover {
namespace {

// run.c starts its search for the best merge at this score and needs a strictly greater
// one, so pieces scoring at or below it (and NaN) never merge.
constexpr float kMinMergeScore = -1e10f;
// Id of the byte-fallback piece <0xNN> is NN + kByteFallbackOffset (after unk, BOS, EOS).
constexpr int kByteFallbackOffset = 3;

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// A possible merge of the adjacent symbols at positions `left` and `right`, valid while
// those positions still hold `left_id` and `right_id` and are still neighbours.
struct MergeCandidate {
  float score;
  int left;
  int right;
  int left_id;
  int right_id;
  int merged_id;
};

// Orders the queue so that its top is run.c's choice: the highest score, and among equal
// scores the leftmost pair (positions keep their left-to-right order as pairs merge).
struct MergeCandidateLess {
  bool operator()(const MergeCandidate& a, const MergeCandidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

}  // namespace

PieceScoreModel::PieceScoreModel(std::vector<std::string> pieces, std::vector<float> scores)
    : pieces_(std::move(pieces)), scores_(std::move(scores)) {
  FLOVER_CHECK_EQ(pieces_.size(), scores_.size());
  ids_.reserve(pieces_.size());
  for (size_t id = 0; id < pieces_.size(); ++id) ids_.try_emplace(pieces_[id], static_cast<int>(id));
}

int PieceScoreModel::Lookup(std::string_view piece) const {
  const auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

void PieceScoreModel::Encode(std::string_view text, std::vector<int>* out) const {
  if (text.empty()) return;
  const int vocab_size = static_cast<int>(pieces_.size());

  // One symbol per UTF-8 character (a lead byte and up to 3 continuation bytes, grouped
  // as run.c does), or one per byte when the character has no piece. The dummy prefix
  // " " comes first.
  std::vector<int> symbols;
  symbols.reserve(text.size() + 1);
  auto add_character = [&](std::string_view ch) {
    if (const int id = Lookup(ch); id >= 0) {
      symbols.push_back(id);
      return;
    }
    for (const char byte : ch) symbols.push_back(static_cast<unsigned char>(byte) + kByteFallbackOffset);
  };
  add_character(" ");
  for (size_t i = 0; i < text.size();) {
    size_t length = 1;
    while (length < 4 && i + length < text.size() && IsUtf8Continuation(text[i + length])) ++length;
    add_character(text.substr(i, length));
    i += length;
  }

  // Merge the best pair until none is left. run.c rescans every pair after each merge
  // (O(n^2) lookups); a queue of candidates, discarded lazily once stale, picks the same
  // pair each step in O(log n). Removed positions hold -1.
  const int n = static_cast<int>(symbols.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  std::priority_queue<MergeCandidate, std::vector<MergeCandidate>, MergeCandidateLess> queue;
  std::string merged;
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int a = symbols[left];
    const int b = symbols[right];
    // Byte-fallback ids may lie outside a vocabulary that lacks byte pieces.
    if (a >= vocab_size || b >= vocab_size) return;
    merged.assign(pieces_[a]).append(pieces_[b]);
    const int id = Lookup(merged);
    if (id < 0 || !(scores_[id] > kMinMergeScore)) return;
    queue.push({scores_[id], left, right, a, b, id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!queue.empty()) {
    const MergeCandidate c = queue.top();
    queue.pop();
    if (symbols[c.left] != c.left_id || symbols[c.right] != c.right_id || next[c.left] != c.right) {
      continue;  // stale: one side has merged since
    }
    symbols[c.left] = c.merged_id;
    symbols[c.right] = -1;
    next[c.left] = next[c.right];
    if (next[c.left] >= 0) prev[next[c.left]] = c.left;
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }

  for (int i = 0; i >= 0; i = next[i]) out->push_back(symbols[i]);
}

}  // namespace flover
