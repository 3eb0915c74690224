#include "common/byte_level.h"

#include <array>
#include <cstdint>

#include "common/utf8.h"

namespace flover {
namespace {

bool StandsForItself(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct Tables {
  std::array<char32_t, 256> char_of_byte{};
  std::array<int16_t, 0x144> byte_of_char{};  // -1: not in the alphabet; the alphabet ends at U+0143
  std::array<std::string, 256> utf8_of_byte;

  Tables() {
    byte_of_char.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const char32_t c = StandsForItself(b) ? static_cast<char32_t>(b) : next++;
      char_of_byte[b] = c;
      byte_of_char[c] = static_cast<int16_t>(b);
      AppendUtf8(c, &utf8_of_byte[b]);
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

}  // namespace

void ByteLevelEncode(std::string_view bytes, std::string* out) {
  const Tables& t = GetTables();
  for (const char b : bytes) out->append(t.utf8_of_byte[static_cast<unsigned char>(b)]);
}

std::optional<std::string> ByteLevelDecode(std::string_view token) {
  const Tables& t = GetTables();
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    size_t n = 0;
    const char32_t c = DecodeUtf8At(token, i, &n);
    if (c >= t.byte_of_char.size() || t.byte_of_char[c] < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(t.byte_of_char[c]));
    i += n;
  }
  return bytes;
}

}  // namespace flover
