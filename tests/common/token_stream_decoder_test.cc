// TokenStreamDecoder (common/token_stream_decoder.h): text one token at a time, never
// part of a UTF-8 character, and the same text as the whole decoding. The fixture test
// (tokenizer_fixture_test.cc) checks the last on every reference sequence; these cases
// show what is held and when it comes out.
#include "common/token_stream_decoder.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/tokenizer_loader.h"
#include "common/utf8.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

Tokenizer Load(const std::string& path) {
  Result<Tokenizer> t = LoadTokenizer(path);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

std::string Fixture(const std::string& name) {
  return std::string(FLOVER_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + name;
}

// Each token's output, then Finish's.
std::vector<std::string> Stream(const Tokenizer& tok, int prev, const std::vector<int>& ids) {
  TokenStreamDecoder d(tok, prev);
  std::vector<std::string> out;
  for (const int id : ids) out.push_back(d.Push(id));
  out.push_back(d.Finish());
  return out;
}

TEST(TokenStreamDecoderTest, NothingWithoutATokenizer) {
  TokenStreamDecoder d;
  EXPECT_EQ(d.Push(5), "");
  EXPECT_EQ(d.Finish(), "");
}

// tok512.bin: U+2713 as three byte tokens <0xE2><0x9C><0x93> (ids byte + 3).
TEST(TokenStreamDecoderTest, Llama2cByteTokensWaitForTheirCharacter) {
  const Tokenizer tok = Load(::flover::testing::Tok512Bin());
  const std::vector<int> ids = {0xE2 + 3, 0x9C + 3, 0x93 + 3, 412};
  EXPECT_EQ(Stream(tok, 412, ids), (std::vector<std::string>{"", "", "\xE2\x9C\x93", tok.piece(412), ""}));
  // An unfinished character at the end becomes U+FFFD.
  EXPECT_EQ(Stream(tok, 412, {0xE2 + 3, 0x9C + 3}), (std::vector<std::string>{"", "", kFffd}));
  // After BOS the leading space of the first piece goes, as run.c prints it.
  EXPECT_EQ(Stream(tok, tok.bos_id(), {412})[0], tok.DecodeToken(tok.bos_id(), 412));
}

// Llama 2 style (ByteFallback): a run of byte tokens is text only once it ends, since a
// later byte can make the whole run invalid (then each byte is one U+FFFD).
TEST(TokenStreamDecoderTest, ByteFallbackRunsComeOutWhenTheyEnd) {
  const Tokenizer tok = Load(Fixture("llama2"));
  const int e2 = tok.TokenToId("<0xE2>"), x9c = tok.TokenToId("<0x9C>"), x93 = tok.TokenToId("<0x93>");
  const int a = tok.TokenToId("<0x41>");
  const int hello = tok.Encode("Hello", false).front();  // "▁H..."
  ASSERT_GE(e2, 0);
  ASSERT_GE(a, 0);
  EXPECT_EQ(Stream(tok, 5, {e2, x9c, x93, hello}),
            (std::vector<std::string>{"", "", "", "\xE2\x9C\x93" + tok.Decode({hello}, 5), ""}));
  EXPECT_EQ(Stream(tok, 5, {e2, a, hello}), (std::vector<std::string>{"", "", kFffd + kFffd + tok.Decode({hello}, 5), ""}));
  EXPECT_EQ(Stream(tok, 5, {e2, x9c, x93}), (std::vector<std::string>{"", "", "", "\xE2\x9C\x93"}));
  // DecodeToken gives a byte token's raw byte.
  EXPECT_EQ(tok.DecodeToken(5, e2), "\xE2");
}

// The decoder's Strip removes the text's leading space: at the start (after BOS or with
// no token before), not in a continuation.
TEST(TokenStreamDecoderTest, TheLeadingSpaceGoesOnlyAtTheStart) {
  const Tokenizer tok = Load(Fixture("llama2"));
  const std::vector<int> ids = tok.Encode("Hello world", false);
  EXPECT_EQ(tok.Decode(ids, -1), "Hello world");
  EXPECT_EQ(tok.Decode(ids, tok.bos_id()), "Hello world");
  EXPECT_EQ(tok.Decode(ids, ids.back()), " Hello world");
  std::string joined;
  for (const std::string& s : Stream(tok, tok.bos_id(), ids)) joined += s;
  EXPECT_EQ(joined, "Hello world");
  joined.clear();
  for (const std::string& s : Stream(tok, ids.back(), ids)) joined += s;
  EXPECT_EQ(joined, " Hello world");
}

// Byte-level BPE: a character split over tokens comes out with its last byte; bytes that
// cannot be UTF-8 become U+FFFD as in tokenizers' decode.
TEST(TokenStreamDecoderTest, ByteLevelTokensSplitCharacters) {
  const Tokenizer tok = Load(Fixture("llama3"));
  // The byte-level alphabet's characters for 0xE6 0x97 0xA5 ("日").
  const int b1 = tok.TokenToId("æ"), b2 = tok.TokenToId("Ĺ"), b3 = tok.TokenToId("¥");
  ASSERT_GE(b1, 0);
  ASSERT_GE(b2, 0);
  ASSERT_GE(b3, 0);
  EXPECT_EQ(tok.DecodeToken(-1, b1), "\xE6");
  EXPECT_EQ(Stream(tok, -1, {b1, b2, b3}), (std::vector<std::string>{"", "", "\xE6\x97\xA5", ""}));
  EXPECT_EQ(Stream(tok, -1, {b1, b2}), (std::vector<std::string>{"", "", kFffd}));
  const int a = tok.TokenToId("a");
  EXPECT_EQ(Stream(tok, -1, {b1, a}), (std::vector<std::string>{"", kFffd + "a", ""}));
  EXPECT_EQ(tok.Decode({b1, a}, -1), kFffd + "a");
}

// Whatever the ids, every piece is valid UTF-8 and the pieces join to the decoding.
TEST(TokenStreamDecoderTest, RandomIdsJoinToTheDecoding) {
  for (const char* name : {"llama3", "qwen2", "gpt2", "llama2", "llama2-metaspace", "features"}) {
    const Tokenizer tok = Load(Fixture(name));
    uint32_t state = 12345;
    for (int round = 0; round < 200; ++round) {
      std::vector<int> ids;
      for (int i = 0; i < 12; ++i) {
        state = state * 1664525u + 1013904223u;
        ids.push_back(static_cast<int>(state % static_cast<uint32_t>(tok.vocab_size() + 3)) - 1);
      }
      for (const int prev : {-1, tok.bos_id(), 7}) {
        std::string joined;
        for (const std::string& s : Stream(tok, prev, ids)) {
          EXPECT_TRUE(IsValidUtf8(s)) << name;
          joined += s;
        }
        EXPECT_EQ(joined, tok.Decode(ids, prev)) << name << " round " << round;
      }
    }
  }
  const Tokenizer tok512 = Load(::flover::testing::Tok512Bin());
  std::string joined;
  const std::vector<int> ids = {0xF0 + 3, 0x9F + 3, 412, 0xFF + 3, 300, 0xE2 + 3};
  for (const std::string& s : Stream(tok512, 412, ids)) {
    EXPECT_TRUE(IsValidUtf8(s));
    joined += s;
  }
  EXPECT_EQ(joined, ToValidUtf8(tok512.Decode(ids, 412)));
}

}  // namespace
}  // namespace flover
