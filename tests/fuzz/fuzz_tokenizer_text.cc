// Fuzzes the tokenizer's Encode and Decode on arbitrary text and ids, with the fuzz
// vocabulary (fuzz_vocabulary.h: byte pieces, UTF-8 pieces, merges). Encoding is
// checked against its contract: BOS first, every id inside the vocabulary, and decoding
// the ids after BOS gives the text back, byte for byte (the byte pieces cover what no
// piece does); a difference aborts, as a finding. The same bytes are then decoded as
// ids (little-endian u16, offset so that some fall outside the vocabulary).
//
// Input: the text.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/tokenizer.h"
#include "tests/fuzz/fuzz_vocabulary.h"

using namespace flover;

namespace {

const Tokenizer& Vocabulary() {
  static const Tokenizer tok = [] {
    Result<Tokenizer> t = Tokenizer::ParseLlama2c(fuzzing::FuzzVocabularyFile(), "fuzz vocabulary");
    if (!t.ok()) std::abort();
    return std::move(t).value();
  }();
  return tok;
}

[[noreturn]] void Fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "%s for a text of %zu bytes\n", what, text.size());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizer& tok = Vocabulary();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<int> ids = tok.Encode(text, /*add_bos=*/true);
  if (ids.empty() || ids.front() != tok.bos_id()) Fail("Encode does not start with BOS", text);
  for (int id : ids)
    if (id < 0 || id >= tok.vocab_size()) Fail("Encode gives an id outside the vocabulary", text);
  const std::vector<int> after_bos(ids.begin() + 1, ids.end());
  if (tok.Decode(after_bos, tok.bos_id()) != text) Fail("Decode(Encode(text)) is not the text", text);

  std::vector<int> raw;
  for (size_t i = 0; i + 1 < size; i += 2) raw.push_back((data[i] | (data[i + 1] << 8)) - 256);
  (void)tok.Decode(raw, raw.empty() ? tok.bos_id() : raw.front());
  return 0;
}
