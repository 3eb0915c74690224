#include "common/added_tokens.h"

#include <utf8proc.h>

#include <algorithm>
#include <utility>

#include "common/normalizer.h"
#include "common/utf8.h"

namespace flover {
namespace {

// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, joiners.
bool IsWordChar(char32_t c) {
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

size_t LastCharStart(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

bool EndsWithWord(std::string_view s) {
  if (s.empty()) return false;
  size_t n = 0;
  return IsWordChar(DecodeUtf8At(s, LastCharStart(s), &n));
}

bool StartsWithWord(std::string_view s) {
  if (s.empty()) return false;
  size_t n = 0;
  return IsWordChar(DecodeUtf8At(s, 0, &n));
}

// Where the whitespace at the end of `s` begins.
size_t SpaceLeftmostAtEnd(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    const size_t start = LastCharStart(s.substr(0, end));
    size_t n = 0;
    if (!IsUnicodeWhitespace(DecodeUtf8At(s, start, &n))) break;
    end = start;
  }
  return end;
}

// The length of the whitespace at the start of `s`.
size_t SpaceRightmostAtStart(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = 0;
    if (!IsUnicodeWhitespace(DecodeUtf8At(s, i, &n))) break;
    i += n;
  }
  return i;
}

}  // namespace

int AddedVocabulary::Matcher::Child(int node, unsigned char byte) const {
  const auto it = edges_.find(static_cast<uint64_t>(node) << 8 | byte);
  return it == edges_.end() ? -1 : it->second;
}

void AddedVocabulary::Matcher::Add(std::string_view pattern, int token_index) {
  if (pattern.empty()) return;
  int node = 0;
  for (const char c : pattern) {
    const auto b = static_cast<unsigned char>(c);
    int child = Child(node, b);
    if (child < 0) {
      child = static_cast<int>(terminal_.size());
      terminal_.push_back(-1);
      edges_.emplace(static_cast<uint64_t>(node) << 8 | b, child);
    }
    node = child;
  }
  if (terminal_[node] < 0) {  // the first token of a content wins
    terminal_[node] = token_index;
    ++n_patterns_;
  }
}

std::optional<AddedVocabulary::Matcher::Match> AddedVocabulary::Matcher::Find(std::string_view text,
                                                                               size_t from) const {
  if (n_patterns_ == 0) return std::nullopt;
  for (size_t begin = from; begin < text.size(); ++begin) {
    int node = 0;
    std::optional<Match> longest;
    for (size_t i = begin; i < text.size(); ++i) {
      node = Child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      if (terminal_[node] >= 0) longest = Match{begin, i + 1, terminal_[node]};
    }
    if (longest) return longest;
  }
  return std::nullopt;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer) {
  for (AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    strips_whitespace_ = strips_whitespace_ || t.lstrip || t.rstrip;
    tokens_.push_back(std::move(t));
  }
  // tokenizers matches special tokens first among equal contents.
  std::vector<int> order(tokens_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return tokens_[a].special && !tokens_[b].special; });
  for (const int i : order) {
    const AddedToken& t = tokens_[i];
    if (!t.normalized) {
      raw_.Add(t.content, i);
      continue;
    }
    std::string pattern = t.content;
    if (normalizer != nullptr) normalizer->Normalize(&pattern);
    normalized_.Add(pattern, i);
  }
}

std::vector<AddedVocabulary::Piece> AddedVocabulary::FindMatches(std::string_view text, const Matcher& matcher) const {
  std::vector<Piece> pieces;
  if (text.empty()) return pieces;
  size_t start_offset = 0;
  size_t from = 0;
  while (std::optional<Matcher::Match> m = matcher.Find(text, from)) {
    from = m->end;
    const AddedToken& t = tokens_[m->token_index];
    size_t start = m->begin, stop = m->end;
    if (t.single_word) {
      const bool start_space = start == 0 || !EndsWithWord(text.substr(0, start));
      const bool stop_space = stop == text.size() || !StartsWithWord(text.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(SpaceLeftmostAtEnd(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += SpaceRightmostAtStart(text.substr(stop));
    if (start_offset < start) pieces.push_back({-1, start_offset, start});
    pieces.push_back({m->token_index, start, stop});
    start_offset = stop;
  }
  if (start_offset < text.size()) pieces.push_back({-1, start_offset, text.size()});
  return pieces;
}

std::vector<TextSegment> AddedVocabulary::Split(std::string_view text, const Normalizer* normalizer) const {
  std::vector<TextSegment> segments;
  auto add_text = [&](std::string_view part, bool at_start) {
    std::string normalized(part);
    if (normalizer != nullptr) normalizer->Normalize(&normalized);
    if (normalized_.empty()) {
      if (!normalized.empty()) segments.push_back({std::move(normalized), -1, at_start});
      return;
    }
    for (const Piece& p : FindMatches(normalized, normalized_)) {
      if (p.token_index >= 0) {
        segments.push_back({std::string(), tokens_[p.token_index].id, at_start && p.begin == 0});
      } else if (p.end > p.begin) {
        segments.push_back({normalized.substr(p.begin, p.end - p.begin), -1, at_start && p.begin == 0});
      }
    }
  };
  if (raw_.empty()) {
    add_text(text, true);
    return segments;
  }
  for (const Piece& p : FindMatches(text, raw_)) {
    if (p.token_index >= 0) {
      segments.push_back({std::string(), tokens_[p.token_index].id, p.begin == 0});
    } else if (p.end > p.begin) {
      add_text(text.substr(p.begin, p.end - p.begin), p.begin == 0);
    }
  }
  return segments;
}

}  // namespace flover
