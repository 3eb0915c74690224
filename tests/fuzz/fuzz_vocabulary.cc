#include "tests/fuzz/fuzz_vocabulary.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/check.h"

namespace flover::fuzzing {
namespace {

std::string BuildVocabulary() {
  struct Piece {
    std::string text;
    float score;
  };
  std::vector<Piece> pieces = {{"<unk>", 0.0f}, {"\n<s>\n", 0.0f}, {"\n</s>\n", 0.0f}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    pieces.push_back({name, 0.0f});
  }
  for (char c = ' '; c <= '~'; ++c) pieces.push_back({std::string(1, c), -1.0f});
  for (const char* ch : {"\xC3\xA9", "\xC3\xBC", "\xE6\x97\xA5", "\xE2\x96\x81", "\xF0\x9F\x98\x80"})
    pieces.push_back({ch, -1.0f});
  // Merges, in descending score: a higher score merges first, as in SentencePiece's BPE.
  float score = 10.0f;
  for (const char* merge :
       {" t", "th",   "he",    " th", " the", "in",   "ing",   " a",        "er",
        "an", "on",   " s",    "st",  "re",   " o",   " on",   "ce",        " once",
        "up", "upon", " upon", "ti",  "me",   "time", " time", "\xC3\xA9t", "\xE6\x97\xA5\xE6\x97\xA5"}) {
    pieces.push_back({merge, score});
    score -= 0.5f;
  }
  // tok512.bin's layout (little-endian, as the reader requires of its host): int32 the
  // longest piece, then per piece float32 score, int32 length, bytes.
  int32_t longest = 0;
  for (const Piece& p : pieces) longest = std::max(longest, static_cast<int32_t>(p.text.size()));
  std::string out(reinterpret_cast<const char*>(&longest), sizeof(longest));
  for (const Piece& p : pieces) {
    const int32_t length = static_cast<int32_t>(p.text.size());
    out.append(reinterpret_cast<const char*>(&p.score), sizeof(p.score));
    out.append(reinterpret_cast<const char*>(&length), sizeof(length)).append(p.text);
  }
  return out;
}

}  // namespace

const std::string& FuzzVocabularyFile() {
  static const std::string bytes = BuildVocabulary();
  return bytes;
}

const std::string& FuzzVocabularyPath() {
  static const std::string path = [] {
    const std::string& bytes = FuzzVocabularyFile();
    const int fd = memfd_create("flover-fuzz-vocabulary", 0);
    FLOVER_CHECK(fd >= 0) << "memfd_create failed";
    FLOVER_CHECK(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size())) << "write failed";
    return "/proc/self/fd/" + std::to_string(fd);
  }();
  return path;
}

}  // namespace flover::fuzzing
