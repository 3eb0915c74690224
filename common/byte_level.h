// The byte-level alphabet of GPT-2 style BPE (tokenizers' ByteLevel pre-tokenizer and
// decoder): each of the 256 byte values stands for one printable character, so that
// any byte string is a string of characters. Printable Latin-1 bytes ('!'..'~',
// '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes, in order, for U+0100,
// U+0101, ... (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).
//
// Thread-safety: pure functions over constant tables.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace flover {

// The characters (UTF-8) that stand for `bytes`, appended to `out`.
void ByteLevelEncode(std::string_view bytes, std::string* out);

// The bytes that the characters of `token` stand for; nullopt when a character of it
// is not in the alphabet (tokenizers' decoder then keeps the token's own bytes).
// REQUIRES: token is valid UTF-8.
std::optional<std::string> ByteLevelDecode(std::string_view token);

}  // namespace flover
