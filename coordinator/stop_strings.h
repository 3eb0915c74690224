// StopStrings: a request's stop strings (StopParams.stop_strings), applied to its text
// as it streams. The text ends just before the first stop string that appears (the stop
// string itself is not part of the output, as in the OpenAI API), and text that could
// still turn out to be the start of a stop string is held back, so that no client ever
// receives part of one.
//
// Input is valid UTF-8 in whole characters (what Utf8Stream gives), and so is every
// piece of output: a held-back suffix starts where a stop string starts, at a character.
//
// Thread-safety: none; a value owned by one request.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flover {

class StopStrings {
 public:
  // REQUIRES: every string non-empty.
  explicit StopStrings(std::vector<std::string> stops);

  struct Piece {
    std::string text;      // final now: send it
    bool stopped = false;  // a stop string ended the text; nothing more comes
  };
  // Appends the text of the next token.
  Piece Push(std::string_view text);
  // The text held back, at the end of a request that no stop string ended.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace flover
