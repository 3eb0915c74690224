// Fuzzes the tokenizer.json reader (common/tokenizer_json.h, ParseTokenizerJson), then
// uses what it accepts: encodes a fixed text (ASCII, multi-byte UTF-8, an invalid byte,
// special-token-like strings, whitespace runs) and checks the contract: every id has a
// token, and the streamed decoding (TokenStreamDecoder) is valid UTF-8 piece by piece and
// equals Decode; a difference aborts, as a finding. Then decodes ids around the
// vocabulary.
//
// Input: the tokenizer.json. Seeds: the reference fixtures (tests/fixtures/tokenizers/),
// copied by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/token_stream_decoder.h"
#include "common/tokenizer_json.h"
#include "common/utf8.h"

using namespace flover;

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

void CheckStream(const Tokenizer& tok, const std::vector<int>& ids, int prev) {
  TokenStreamDecoder stream(tok, prev);
  std::string text;
  for (const int id : ids) {
    const std::string piece = stream.Push(id);
    if (!IsValidUtf8(piece)) Fail("a streamed piece is not valid UTF-8");
    text += piece;
  }
  const std::string tail = stream.Finish();
  if (!IsValidUtf8(tail)) Fail("the stream's tail is not valid UTF-8");
  if (text + tail != tok.Decode(ids, prev)) Fail("the streamed text differs from Decode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<Tokenizer> tok = ParseTokenizerJson(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
  if (!tok.ok()) return 0;
  static constexpr std::string_view kText =
      "Once upon a time,  \xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xFF <0x41> <s></s><|endoftext|> it's 12345\n\n\t x";
  const std::vector<int> ids = tok->Encode(kText, /*add_bos=*/true);
  for (const int id : ids)
    if (id < 0 || id >= tok->vocab_size()) Fail("Encode gives an id outside the vocabulary");
  CheckStream(*tok, ids, -1);
  CheckStream(*tok, ids, tok->bos_id());
  std::vector<int> around;
  for (int id = -2; id < tok->vocab_size() + 2 && id < 512; ++id) around.push_back(id);
  CheckStream(*tok, around, -1);
  for (const int id : around) (void)tok->DecodeToken(-1, id);
  return 0;
}
