// Incremental UTF-8 for streamed text. Tokens decode to bytes, and a character outside
// the vocabulary arrives as several byte tokens (<0xE2><0x9C><0x93>), so the piece of
// one token can be part of a character, and a sampled byte token can be no valid UTF-8
// at all. Protocol Buffers `string` fields must be valid UTF-8 (a reader refuses the
// whole message otherwise), and users expect text, so the coordinator passes each
// piece through a Utf8Stream: complete characters go out at once, the start of an
// unfinished one waits for the next piece, and bytes that cannot be UTF-8 become
// U+FFFD (one per maximal invalid subpart, as the Unicode standard recommends and
// browsers do).
#pragma once

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

}  // namespace flover
