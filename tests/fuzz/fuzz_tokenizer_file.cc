// Fuzzes the llama2.c tokenizer reader (common/tokenizer.h, Tokenizer::ParseLlama2c),
// then uses what it accepts: encodes a fixed text (ASCII, multi-byte UTF-8, an invalid
// byte, a literal "<0x41>") and decodes the ids, every id of the vocabulary after BOS,
// and ids outside it.
//
// Input: the tokenizer file. Seeds: the fuzz vocabulary (fuzz_vocabulary.h), and
// tok512.bin when scripts/fuzz.sh finds it.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/tokenizer.h"

using namespace flover;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<Tokenizer> tok =
      Tokenizer::ParseLlama2c(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz tokenizer");
  if (!tok.ok()) return 0;
  static constexpr std::string_view kText = "Once upon a time, \xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xFF <0x41>\n";
  const std::vector<int> ids = tok->Encode(kText, /*add_bos=*/true);
  (void)tok->Decode(ids, tok->bos_id());
  for (int id = 0; id < tok->vocab_size(); ++id) (void)tok->DecodeToken(tok->bos_id(), id);
  (void)tok->Decode({-1, tok->vocab_size(), 1 << 30}, -5);
  return 0;
}
