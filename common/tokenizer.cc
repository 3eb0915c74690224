#include "common/tokenizer.h"

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <queue>
#include <utility>

namespace flover {
namespace {

static_assert(std::endian::native == std::endian::little,
              "tok512.bin is little-endian and is read with memcpy");

// run.c starts its search for the best merge at this score and needs a strictly greater
// one, so pieces scoring at or below it (and NaN) never merge.
constexpr float kMinMergeScore = -1e10f;
// Id of the byte-fallback piece <0xNN> is NN + kByteFallbackOffset (after unk, BOS, EOS).
constexpr int kByteFallbackOffset = 3;

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte NN of a piece spelled exactly "<0xNN>", else -1.
int BytePieceValue(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = HexDigit(piece[3]);
  const int lo = HexDigit(piece[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

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

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

Result<std::string> ReadWholeFile(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    const int err = errno;
    if (err == ENOENT) return NotFound("tokenizer file " + path + " does not exist");
    return IoError("cannot open tokenizer file " + path + ": " + std::strerror(err));
  }
  std::string data;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) data.append(buffer, n);
  if (std::ferror(file.get())) {
    return IoError("cannot read tokenizer file " + path + ": " + std::strerror(errno));
  }
  return data;
}

template <typename T>
T ReadScalar(std::string_view data, size_t offset) {
  T value;
  std::memcpy(&value, data.data() + offset, sizeof(T));
  return value;
}

}  // namespace

Result<Tokenizer> Tokenizer::LoadLlama2c(const std::string& path) {
  FLOVER_ASSIGN_OR_RETURN(const std::string data, ReadWholeFile(path));
  return ParseLlama2c(data, path);
}

Result<Tokenizer> Tokenizer::ParseLlama2c(std::string_view data, const std::string& name) {
  if (data.size() < sizeof(int32_t)) {
    return Corruption(name + ": " + std::to_string(data.size()) +
                      " bytes is too short for a llama2.c tokenizer (int32 max_token_length)");
  }
  const int32_t max_token_length = ReadScalar<int32_t>(data, 0);
  if (max_token_length < 0) {
    return Corruption(name + ": negative max_token_length " + std::to_string(max_token_length) +
                      "; not a llama2.c tokenizer file");
  }

  Tokenizer tok;
  size_t offset = sizeof(int32_t);
  while (offset < data.size()) {
    const size_t id = tok.pieces_.size();
    const size_t left = data.size() - offset;
    constexpr size_t kEntryHeader = sizeof(float) + sizeof(int32_t);
    if (left < kEntryHeader) {
      return Corruption(name + ": truncated: entry " + std::to_string(id) + " at byte offset " +
                        std::to_string(offset) + " needs " + std::to_string(kEntryHeader) +
                        " bytes for its score and length, " + std::to_string(left) + " left");
    }
    const float score = ReadScalar<float>(data, offset);
    const int32_t length = ReadScalar<int32_t>(data, offset + sizeof(float));
    offset += kEntryHeader;
    if (length < 0) {
      return Corruption(name + ": entry " + std::to_string(id) + " has negative length " + std::to_string(length));
    }
    if (static_cast<size_t>(length) > data.size() - offset) {
      return Corruption(name + ": truncated: entry " + std::to_string(id) + " has length " + std::to_string(length) +
                        " but only " + std::to_string(data.size() - offset) + " bytes are left");
    }
    tok.pieces_.emplace_back(data.substr(offset, static_cast<size_t>(length)));
    tok.scores_.push_back(score);
    offset += static_cast<size_t>(length);
  }
  if (tok.pieces_.size() < 3) {
    return Corruption(name + ": has " + std::to_string(tok.pieces_.size()) +
                      " entries; a llama2.c tokenizer needs at least 3 (unk, BOS = 1, EOS = 2)");
  }
  tok.BuildIndex();
  return tok;
}

Result<Tokenizer> Tokenizer::FromPieces(std::vector<std::string> pieces, std::vector<float> scores,
                                        int bos_id, int eos_id) {
  if (pieces.size() != scores.size()) {
    return InvalidArgument("tokenizer has " + std::to_string(pieces.size()) + " pieces but " +
                           std::to_string(scores.size()) + " scores");
  }
  const auto n = static_cast<int64_t>(pieces.size());
  if (bos_id < 0 || bos_id >= n || eos_id < 0 || eos_id >= n) {
    return InvalidArgument("tokenizer BOS id " + std::to_string(bos_id) + " / EOS id " +
                           std::to_string(eos_id) + " outside a vocabulary of " +
                           std::to_string(n) + " pieces");
  }
  static constexpr std::string_view kSentencePieceSpace = "\xE2\x96\x81";  // U+2581 "▁"
  for (std::string& piece : pieces) {
    size_t pos = piece.find(kSentencePieceSpace);
    if (pos == std::string::npos) continue;
    std::string spaced;
    size_t start = 0;
    for (; pos != std::string::npos; pos = piece.find(kSentencePieceSpace, start)) {
      spaced.append(piece, start, pos - start).push_back(' ');
      start = pos + kSentencePieceSpace.size();
    }
    spaced.append(piece, start);
    piece = std::move(spaced);
  }
  Tokenizer tok;
  tok.pieces_ = std::move(pieces);
  tok.scores_ = std::move(scores);
  tok.bos_id_ = bos_id;
  tok.eos_id_ = eos_id;
  tok.BuildIndex();
  return tok;
}

void Tokenizer::BuildIndex() {
  FLOVER_CHECK_EQ(pieces_.size(), scores_.size());
  ids_.clear();
  ids_.reserve(pieces_.size());
  max_piece_bytes_ = 1;
  for (size_t id = 0; id < pieces_.size(); ++id) {
    ids_.try_emplace(pieces_[id], static_cast<int>(id));
    max_piece_bytes_ = std::max(max_piece_bytes_, static_cast<int>(pieces_[id].size()));
  }
}

int Tokenizer::Lookup(std::string_view piece) const {
  const auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

std::vector<int> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int> out;
  if (add_bos) out.push_back(bos_id_);
  if (text.empty()) return out;

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
    if (a >= vocab_size() || b >= vocab_size()) return;
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

  for (int i = 0; i >= 0; i = next[i]) out.push_back(symbols[i]);
  return out;
}

std::string Tokenizer::DecodeToken(int prev_token, int token) const {
  if (token < 0 || token >= vocab_size()) return "";
  std::string_view piece = pieces_[token];
  if (prev_token == bos_id_ && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
  if (const int byte = BytePieceValue(piece); byte >= 0) return std::string(1, static_cast<char>(byte));
  return std::string(piece);
}

std::string Tokenizer::Decode(const std::vector<int>& tokens, int prev_token) const {
  std::string text;
  for (const int token : tokens) {
    text += DecodeToken(prev_token, token);
    prev_token = token;
  }
  return text;
}

}  // namespace flover
