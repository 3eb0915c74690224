#include "common/tokenizer.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>

#include "common/bpe_merges.h"
#include "common/byte_level.h"
#include "common/file_bytes.h"
#include "common/normalizer.h"
#include "common/piece_scores.h"
#include "common/pretokenizer.h"
#include "common/utf8.h"

namespace flover {

struct Tokenizer::Impl {
  Kind kind = Kind::kPieceScores;
  std::vector<std::string> tokens;  // by id; "" where an id has no token
  std::vector<bool> has_token;      // [vocab_size]
  int bos_id = -1;
  int eos_id = -1;
  bool add_bos = true;
  int max_piece_bytes = 1;
  AddedVocabulary added;

  // kPieceScores
  PieceScoreModel scores;

  // kBpe
  std::shared_ptr<const BpeModel> bpe;
  std::shared_ptr<const Normalizer> normalizer;
  std::shared_ptr<const PreTokenizer> pre_tokenizer;
  std::vector<DecoderStep> decoder;
};

namespace {

static_assert(std::endian::native == std::endian::little,
              "tok512.bin is little-endian and is read with memcpy");

// A llama2.c tokenizer file is read whole; tok512.bin is 6 KiB, Llama 2's 32k-piece
// tokenizer.bin 424 KiB.
constexpr size_t kMaxLlama2cFileBytes = size_t{256} << 20;
// A max_token_length above this is not a llama2.c tokenizer (its pieces are short).
constexpr int32_t kMaxLlama2cTokenLength = 1 << 20;

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

template <typename T>
T ReadScalar(std::string_view data, size_t offset) {
  T value;
  std::memcpy(&value, data.data() + offset, sizeof(T));
  return value;
}

bool LooksLikeJson(std::string_view data) {
  const size_t i = data.find_first_not_of(" \t\r\n");
  return i != std::string_view::npos && data[i] == '{';
}

int SaturatingProduct(int64_t a, int64_t b) {
  if (a == 0 || b == 0) return INT_MAX;
  const int64_t p = a * b;
  return p >= INT_MAX ? INT_MAX : static_cast<int>(p);
}

}  // namespace

Result<Tokenizer> Tokenizer::LoadLlama2c(const std::string& path) {
  FLOVER_ASSIGN_OR_RETURN(const std::string data, ReadFileBytes(path, kMaxLlama2cFileBytes, "tokenizer file"));
  return ParseLlama2c(data, path);
}

Result<Tokenizer> Tokenizer::ParseLlama2c(std::string_view data, const std::string& name) {
  if (data.size() < sizeof(int32_t)) {
    return Corruption(name + ": " + std::to_string(data.size()) +
                      " bytes is too short for a llama2.c tokenizer (int32 max_token_length)");
  }
  const int32_t max_token_length = ReadScalar<int32_t>(data, 0);
  if (max_token_length > kMaxLlama2cTokenLength && LooksLikeJson(data)) {
    return Corruption(name + ": this is JSON (a Hugging Face tokenizer.json?), not a llama2.c tokenizer; "
                             "LoadTokenizer reads both (model.tokenizer / --tokenizer take either)");
  }
  if (max_token_length < 0) {
    return Corruption(name + ": negative max_token_length " + std::to_string(max_token_length) +
                      "; not a llama2.c tokenizer file");
  }

  std::vector<std::string> pieces;
  std::vector<float> scores;
  size_t offset = sizeof(int32_t);
  while (offset < data.size()) {
    const size_t id = pieces.size();
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
    pieces.emplace_back(data.substr(offset, static_cast<size_t>(length)));
    scores.push_back(score);
    offset += static_cast<size_t>(length);
  }
  if (pieces.size() < 3) {
    return Corruption(name + ": has " + std::to_string(pieces.size()) +
                      " entries; a llama2.c tokenizer needs at least 3 (unk, BOS = 1, EOS = 2)");
  }
  auto impl = std::make_shared<Impl>();
  impl->kind = Kind::kPieceScores;
  impl->bos_id = 1;
  impl->eos_id = 2;
  for (const std::string& p : pieces) impl->max_piece_bytes = std::max(impl->max_piece_bytes, static_cast<int>(p.size()));
  impl->tokens = pieces;
  impl->has_token.assign(pieces.size(), true);
  impl->scores = PieceScoreModel(std::move(pieces), std::move(scores));
  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

Result<Tokenizer> Tokenizer::FromPieces(std::vector<std::string> pieces, std::vector<float> scores, int bos_id,
                                        int eos_id, std::vector<AddedToken> added_tokens) {
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
  for (const AddedToken& t : added_tokens) {
    if (t.id < 0 || t.id >= n)
      return InvalidArgument("added token \"" + t.content + "\" has id " + std::to_string(t.id) +
                             " outside a vocabulary of " + std::to_string(n) + " pieces");
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
  auto impl = std::make_shared<Impl>();
  impl->kind = Kind::kPieceScores;
  impl->bos_id = bos_id;
  impl->eos_id = eos_id;
  for (const std::string& p : pieces) impl->max_piece_bytes = std::max(impl->max_piece_bytes, static_cast<int>(p.size()));
  impl->tokens = pieces;
  impl->has_token.assign(pieces.size(), true);
  impl->added = AddedVocabulary(std::move(added_tokens), nullptr);
  if (impl->added.strips_whitespace()) impl->max_piece_bytes = INT_MAX;
  impl->scores = PieceScoreModel(std::move(pieces), std::move(scores));
  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

Result<Tokenizer> Tokenizer::FromBpe(BpeTokenizerParts parts) {
  if (parts.model == nullptr) return InvalidArgument("a BPE tokenizer needs its model");
  auto impl = std::make_shared<Impl>();
  impl->kind = Kind::kBpe;
  const BpeModel& model = *parts.model;

  int max_id = -1;
  auto check_id = [](const std::string& token, int id) -> Status {
    if (id < 0 || id >= kMaxTokenizerVocab)
      return InvalidArgument("token \"" + token + "\" has id " + std::to_string(id) + ", outside 0.." +
                             std::to_string(kMaxTokenizerVocab - 1));
    return Status::Ok();
  };
  for (const auto& [token, id] : model.vocab()) {
    FLOVER_RETURN_IF_ERROR(check_id(token, id));
    max_id = std::max(max_id, id);
  }
  for (const AddedToken& t : parts.added_tokens) {
    FLOVER_RETURN_IF_ERROR(check_id(t.content, t.id));
    max_id = std::max(max_id, t.id);
  }
  impl->tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  impl->has_token.assign(static_cast<size_t>(max_id + 1), false);
  int longest = 1;
  for (const auto& [token, id] : model.vocab()) {
    // The first token of an id wins, as in tokenizers (its reverse map keeps one).
    if (!impl->has_token[id]) {
      impl->tokens[id] = token;
      impl->has_token[id] = true;
    }
    longest = std::max(longest, static_cast<int>(token.size()));
  }
  for (const AddedToken& t : parts.added_tokens) {  // tokenizers looks up added tokens first
    impl->tokens[t.id] = t.content;
    impl->has_token[t.id] = true;
    longest = std::max(longest, static_cast<int>(t.content.size()));
  }
  for (const int id : {parts.bos_id, parts.eos_id}) {
    if (id >= 0 && (id > max_id || !impl->has_token[id]))
      return InvalidArgument("BOS / EOS id " + std::to_string(id) + " has no token");
  }

  // How much text one token can stand for: its own length, times what the normalizer
  // may shrink; unbounded when text may vanish (dropped by the pre-tokenizer, fused
  // into one unknown token, left out for want of a token) or whitespace be absorbed.
  const BpeOptions& o = model.options();
  const bool bytes_always_encode = o.byte_fallback && model.has_all_byte_tokens();
  bool all_byte_level_chars = true;
  for (int b = 0; b < 256 && all_byte_level_chars; ++b) {
    std::string c;
    ByteLevelEncode(std::string(1, static_cast<char>(b)), &c);
    all_byte_level_chars = model.TokenToId(c) >= 0;
  }
  const bool byte_level = parts.pre_tokenizer != nullptr && parts.pre_tokenizer->maps_to_byte_alphabet();
  const bool can_drop = !bytes_always_encode && o.unk_token == std::nullopt && !(byte_level && all_byte_level_chars);
  const bool unk_fuses = !bytes_always_encode && o.unk_token != std::nullopt && o.fuse_unk;
  const int shrink = parts.normalizer ? parts.normalizer->max_shrink() : 1;
  const bool drops = parts.pre_tokenizer != nullptr && parts.pre_tokenizer->drops_text();
  if (o.unk_token) longest = std::max(longest, 4);  // one character
  impl->max_piece_bytes = (can_drop || unk_fuses || drops) ? INT_MAX : SaturatingProduct(longest, shrink);

  impl->added = AddedVocabulary(std::move(parts.added_tokens), parts.normalizer.get());
  if (impl->added.strips_whitespace()) impl->max_piece_bytes = INT_MAX;
  impl->bos_id = parts.bos_id;
  impl->eos_id = parts.eos_id;
  impl->add_bos = parts.add_bos && parts.bos_id >= 0;
  impl->bpe = std::move(parts.model);
  impl->normalizer = std::move(parts.normalizer);
  impl->pre_tokenizer = std::move(parts.pre_tokenizer);
  impl->decoder = std::move(parts.decoder);
  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

Tokenizer::Kind Tokenizer::kind() const { return impl_->kind; }
int Tokenizer::vocab_size() const { return static_cast<int>(impl_->tokens.size()); }
int Tokenizer::max_piece_bytes() const { return impl_->max_piece_bytes; }
int Tokenizer::bos_id() const { return impl_->bos_id; }
int Tokenizer::eos_id() const { return impl_->eos_id; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
const std::string& Tokenizer::piece(int id) const { return impl_->tokens[id]; }

int Tokenizer::TokenToId(std::string_view text) const {
  for (const AddedToken& t : impl_->added.tokens())
    if (t.content == text) return t.id;
  if (impl_->kind == Kind::kPieceScores) return impl_->scores.Lookup(text);
  return impl_->bpe->TokenToId(text);
}

bool Tokenizer::HasToken(int id) const { return id >= 0 && id < vocab_size() && impl_->has_token[id]; }

const std::vector<DecoderStep>& Tokenizer::decoder_steps() const { return impl_->decoder; }

bool Tokenizer::StartsText(int prev_token) const {
  return prev_token < 0 || (impl_->bos_id >= 0 && prev_token == impl_->bos_id);
}

std::vector<int> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  const Impl& m = *impl_;
  std::vector<int> out;
  if (add_bos && m.add_bos) out.push_back(m.bos_id);
  if (m.kind == Kind::kPieceScores) {
    if (m.added.empty()) {
      m.scores.Encode(text, &out);
      return out;
    }
    for (const TextSegment& s : m.added.Split(text, nullptr)) {
      if (s.token_id >= 0) {
        out.push_back(s.token_id);
      } else {
        m.scores.Encode(s.text, &out);
      }
    }
    return out;
  }

  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = ToValidUtf8(text);
    text = repaired;
  }
  std::vector<PreToken> words;
  for (TextSegment& s : m.added.Split(text, m.normalizer.get())) {
    if (s.token_id >= 0) {
      out.push_back(s.token_id);
      continue;
    }
    words.clear();
    words.push_back({std::move(s.text), s.at_start});
    if (m.pre_tokenizer) m.pre_tokenizer->Split(&words);
    for (const PreToken& w : words) m.bpe->Encode(w.text, &out);
  }
  return out;
}

std::string Tokenizer::DecodeToken(int prev_token, int token) const {
  const Impl& m = *impl_;
  if (!HasToken(token)) return "";
  std::string_view piece = m.tokens[token];
  if (m.kind == Kind::kPieceScores) {
    if (prev_token == m.bos_id && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    if (const int byte = BytePieceValue(piece); byte >= 0) return std::string(1, static_cast<char>(byte));
    return std::string(piece);
  }
  DecodeChain chain(m.decoder, StartsText(prev_token), /*raw=*/true);
  chain.Push(piece);
  chain.Finish();
  return chain.Take();
}

std::string Tokenizer::Decode(const std::vector<int>& tokens, int prev_token) const {
  const Impl& m = *impl_;
  if (m.kind == Kind::kPieceScores) {
    std::string text;
    for (const int token : tokens) {
      text += DecodeToken(prev_token, token);
      prev_token = token;
    }
    return text;
  }
  DecodeChain chain(m.decoder, StartsText(prev_token), /*raw=*/false);
  for (const int token : tokens)
    if (HasToken(token)) chain.Push(m.tokens[token]);
  chain.Finish();
  return chain.Take();
}

}  // namespace flover
