// Incremental UTF-8 for streamed text. Tokens decode to bytes, and a character outside
// the vocabulary arrives as several byte tokens (<0xE2><0x9C><0x93>), so the piece of
// one token can be part of a character, and a sampled byte token can be no valid UTF-8
// at all. Protocol Buffers `string` fields must be valid UTF-8 (a reader refuses the
// whole message otherwise), and users expect text, so streamed text passes through a
// Utf8Stream (inside TokenStreamDecoder): complete characters go out at once, the start of an
// unfinished one waits for the next piece, and bytes that cannot be UTF-8 become
// U+FFFD (one per maximal invalid subpart, as the Unicode standard recommends and
// browsers do).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace flover {

class Utf8Stream {
 public:
  // Appends `bytes`; returns the valid UTF-8 that is complete so far.
  std::string Push(std::string_view bytes);
  // The end of the text: what is still held (an unfinished character) becomes U+FFFD.
  std::string Finish();

 private:
  std::string held_;  // the start of a character, at most 3 bytes
};

// `bytes` as valid UTF-8 (invalid parts replaced by U+FFFD).
std::string ToValidUtf8(std::string_view bytes);
bool IsValidUtf8(std::string_view bytes);

// Characters of valid UTF-8 text, for the tokenizers.
// The length in bytes of the character a lead byte starts (1 for bytes that cannot lead).
inline size_t Utf8CharLength(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}
// The code point of the character at s[i]; `*length` gets its length in bytes.
// REQUIRES: s is valid UTF-8 and s[i] starts a character.
char32_t DecodeUtf8At(std::string_view s, size_t i, size_t* length);
void AppendUtf8(char32_t code_point, std::string* out);
// Unicode's White_Space property (what Rust's char::is_whitespace tests).
bool IsUnicodeWhitespace(char32_t code_point);

}  // namespace flover
