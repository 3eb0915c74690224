#include "common/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "tests/test_paths.h"

namespace flover {
namespace {

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

constexpr int kBos = 1;
constexpr int kSpace = 410;  // " ", the dummy prefix in tok512.bin

std::vector<int> Concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The real stories260K vocabulary. A missing file fails the test with its path.
class Tok512Test : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::Tok512Bin();
    Result<Tokenizer> loaded = Tokenizer::LoadLlama2c(path);
    ASSERT_TRUE(loaded.ok()) << "cannot load " << path << ": " << loaded.status().ToString();
    tok_.emplace(std::move(loaded).value());
  }

  const Tokenizer& tok() const { return *tok_; }

 private:
  std::optional<Tokenizer> tok_;
};

TEST_F(Tok512Test, LoadsAllEntries) {
  EXPECT_EQ(tok().vocab_size(), 512);
  EXPECT_EQ(tok().bos_id(), 1);
  EXPECT_EQ(tok().eos_id(), 2);
  EXPECT_EQ(tok().piece(0), "<unk>");
  EXPECT_EQ(tok().piece(1), "\n<s>\n");
  EXPECT_EQ(tok().piece(2), "\n</s>\n");
  EXPECT_EQ(tok().piece(3), "<0x00>");
  EXPECT_EQ(tok().piece(13), "<0x0A>");
  EXPECT_EQ(tok().piece(258), "<0xFF>");
  EXPECT_EQ(tok().piece(kSpace), " ");
  EXPECT_EQ(tok().piece(511), "\xE2\x80\x8A");  // U+200A, the last single character
}

// Prompt ids printed by run.c for the README's three prompts.
TEST_F(Tok512Test, EncodesReadmePrompts) {
  EXPECT_EQ(tok().Encode("Sara"), (std::vector<int>{1, 301, 295, 412}));
  EXPECT_EQ(tok().Encode("The cat sat on the mat."),
            (std::vector<int>{1, 291, 280, 294, 262, 294, 353, 265, 284, 294, 426}));
  EXPECT_EQ(tok().Encode("Ben had a red car"),
            (std::vector<int>{1, 368, 302, 381, 261, 352, 266, 280, 295}));
}

TEST_F(Tok512Test, EmptyTextIsJustBos) {
  EXPECT_EQ(tok().Encode(""), std::vector<int>{kBos});
  EXPECT_EQ(tok().Encode("", /*add_bos=*/false), std::vector<int>{});
}

TEST_F(Tok512Test, WithoutBosOmitsOnlyBos) {
  EXPECT_EQ(tok().Encode("Sara", /*add_bos=*/false), (std::vector<int>{301, 295, 412}));
  for (const std::string text : {"a", " ", "The cat sat on the mat.", "  two spaces", "x\ny\n"}) {
    EXPECT_EQ(tok().Encode(text), Concat({kBos}, tok().Encode(text, false))) << text;
  }
}

TEST_F(Tok512Test, DummyPrefixIsASpace) {
  // A lone space is the dummy prefix plus the space itself: no "  " piece exists.
  EXPECT_EQ(tok().Encode(" "), (std::vector<int>{kBos, kSpace, kSpace}));
  EXPECT_EQ(tok().Encode("a", false), (std::vector<int>{261}));  // " a"
}

TEST_F(Tok512Test, MultiByteCharacterInVocabIsOnePiece) {
  ASSERT_EQ(tok().piece(485), "\xC3\xA9");  // é
  EXPECT_EQ(tok().Encode("\xC3\xA9"), (std::vector<int>{kBos, kSpace, 485}));
}

TEST_F(Tok512Test, CharactersOutsideVocabFallBackToBytes) {
  // ü (C3 BC) has no piece: ids are byte + 3.
  EXPECT_EQ(tok().Encode("\xC3\xBC"), (std::vector<int>{kBos, kSpace, 0xC3 + 3, 0xBC + 3}));
  // 😀 (F0 9F 98 80), then merges still happen around it (" a", then "b").
  EXPECT_EQ(tok().Encode("a\xF0\x9F\x98\x80" "b"),
            (std::vector<int>{kBos, 261, 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3, 430}));
  // ASCII without a piece ('{' is not in the vocabulary).
  EXPECT_EQ(tok().Encode("{", false), (std::vector<int>{kSpace, '{' + 3}));
}

TEST_F(Tok512Test, InvalidUtf8FallsBackToBytes) {
  // Stray continuation bytes are grouped at most four at a time, as run.c does.
  EXPECT_EQ(tok().Encode("\x80\x80\x80\x80\x80", false),
            (std::vector<int>{kSpace, 0x83, 0x83, 0x83, 0x83, 0x83}));
  EXPECT_EQ(tok().Encode("\xC3", false), (std::vector<int>{kSpace, 0xC3 + 3}));
}

TEST_F(Tok512Test, DecodeDropsLeadingSpaceOnlyAfterBos) {
  ASSERT_EQ(tok().piece(301), " S");
  EXPECT_EQ(tok().DecodeToken(kBos, 301), "S");
  EXPECT_EQ(tok().DecodeToken(412, 301), " S");
  EXPECT_EQ(tok().DecodeToken(kBos, kSpace), "");
  EXPECT_EQ(tok().DecodeToken(kBos, 412), "a");  // no space to drop
}

TEST_F(Tok512Test, DecodesBytePieces) {
  EXPECT_EQ(tok().DecodeToken(412, 13), "\n");  // <0x0A>
  EXPECT_EQ(tok().DecodeToken(kBos, 13), "\n");
  EXPECT_EQ(tok().DecodeToken(412, 3), std::string(1, '\0'));
  EXPECT_EQ(tok().DecodeToken(412, 258), "\xFF");
}

TEST_F(Tok512Test, DecodeOfOutOfRangeIdIsEmpty) {
  EXPECT_EQ(tok().DecodeToken(kBos, 512), "");
  EXPECT_EQ(tok().DecodeToken(kBos, -1), "");
  EXPECT_EQ(tok().Decode({301, 512, 295}, 412), " Sar");
}

// run.c prints decode(prev, next) for every position after BOS: the prompt's own
// tokens, then the generated ones. The README shows that stdout.
TEST_F(Tok512Test, DecodesReadmeGenerationForSara) {
  const std::vector<int> prompt = {1, 301, 295, 412};
  const std::vector<int> generated = {
      269, 368, 302, 382, 276, 337, 299, 322, 265, 282, 295, 433, 426, 342, 397, 355,
      267, 337, 335, 265, 315, 267, 422, 419, 269, 352, 379, 261, 420, 277, 264, 265,
      282, 295, 433, 426, 342, 394, 261, 370, 268, 414, 444, 269, 261, 262, 423, 388,
      268, 414, 444, 426, 342, 391, 266, 267, 337, 335, 265, 268, 414};
  ASSERT_EQ(generated.size(), 61u);
  EXPECT_EQ(tok().Decode({prompt.begin() + 1, prompt.end()}, kBos), "Sara");
  EXPECT_EQ(tok().Decode(generated, prompt.back()),
            " and Ben were playing in the park. They liked to play with their toys and run "
            "around the park. They saw a big box and a small box. They wanted to play with the "
            "bo");
}

TEST_F(Tok512Test, DecodesReadmeGenerationEndingInNewline) {
  const std::vector<int> prompt = {1, 291, 280, 294, 262, 294, 353, 265, 284, 294, 426};
  const std::vector<int> generated = {
      291, 280, 294, 286, 399, 393, 426, 291, 280, 294, 286, 399, 393, 426, 291, 280, 294, 286,
      399, 393, 426, 291, 280, 294, 269, 265, 280, 294, 337, 266, 267, 428, 316, 386, 426, 342,
      381, 261, 370, 268, 414, 444, 426, 342, 397, 355, 267, 337, 267, 428, 316, 386, 426, 13};
  ASSERT_EQ(generated.size(), 54u);
  const std::vector<int> after_bos = Concat({prompt.begin() + 1, prompt.end()}, generated);
  EXPECT_EQ(tok().Decode(after_bos, kBos),
            "The cat sat on the mat. The cat was very happy. The cat was very happy. The cat was "
            "very happy. The cat and the cat played together. They had a big box. They liked to "
            "play together.\n");
}

TEST_F(Tok512Test, RoundTripsText) {
  const std::string all_printable = [] {
    std::string s;
    for (char c = 0x20; c < 0x7F; ++c) s.push_back(c);
    return s;
  }();
  for (const std::string& text : std::vector<std::string>{
           "Sara", "The cat sat on the mat.", "Ben had a red car", "Hello,   world!!  ",
           "  two leading spaces", "line one\nline two\n", "tabs\tand {braces} [x] |pipes| ~",
           "1234567890", all_printable, "caf\xC3\xA9 na\xC3\xAFve \xF0\x9F\x98\x80 \xE2\x82\xAC" "5"}) {
    const std::vector<int> ids = tok().Encode(text);
    ASSERT_FALSE(ids.empty());
    ASSERT_EQ(ids.front(), kBos);
    EXPECT_EQ(tok().Decode({ids.begin() + 1, ids.end()}, kBos), text) << text;
  }
}

TEST_F(Tok512Test, EncodesLongPrompt) {
  std::string text;
  while (text.size() < 2000) text += "Once upon a time, Lily saw a big red \xF0\x9F\x90\xB6 named Tim. ";
  const std::vector<int> ids = tok().Encode(text);
  const std::vector<int> sentence = tok().Encode("Once upon a time", false);
  // Merges compress text: far fewer ids than bytes.
  EXPECT_LT(ids.size(), text.size() / 2);
  EXPECT_EQ(std::vector<int>(ids.begin() + 1, ids.begin() + 1 + sentence.size()), sentence);
  EXPECT_EQ(tok().Decode({ids.begin() + 1, ids.end()}, kBos), text);
}

// Small synthetic vocabularies pin down the merge order. Ids 0-2 are control pieces and
// 3-258 the byte pieces, as in llama2.c, so byte fallback ids stay in range.
std::vector<std::string> BaseVocab() {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    pieces.push_back(name);
  }
  return pieces;
}

Tokenizer MakeTokenizer(const std::vector<std::pair<std::string, float>>& extra) {
  std::vector<std::string> pieces = BaseVocab();
  std::vector<float> scores(pieces.size(), 0.0f);
  for (const auto& [piece, score] : extra) {
    pieces.push_back(piece);
    scores.push_back(score);
  }
  Result<Tokenizer> tok = Tokenizer::FromPieces(std::move(pieces), std::move(scores));
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return std::move(tok).value();
}

// Ids of the pieces after the 259 base ones.
constexpr int kFirst = 259;

TEST(TokenizerMergeTest, HighestScoreMergesFirst) {
  // ids: 259 " ", 260 a, 261 b, 262 c, 263 ab, 264 bc
  Tokenizer tok = MakeTokenizer({{"\xE2\x96\x81", 0}, {"a", 0}, {"b", 0}, {"c", 0},
                                 {"ab", -2}, {"bc", -1}});
  EXPECT_EQ(tok.Encode("abc", false), (std::vector<int>{kFirst, kFirst + 1, kFirst + 5}));
  Tokenizer flipped = MakeTokenizer({{"\xE2\x96\x81", 0}, {"a", 0}, {"b", 0}, {"c", 0},
                                     {"ab", -1}, {"bc", -2}});
  EXPECT_EQ(flipped.Encode("abc", false), (std::vector<int>{kFirst, kFirst + 4, kFirst + 3}));
}

TEST(TokenizerMergeTest, LeftmostPairWinsTies) {
  Tokenizer tok = MakeTokenizer({{" ", 0}, {"a", 0}, {"b", 0}, {"c", 0}, {"ab", -1}, {"bc", -1}});
  EXPECT_EQ(tok.Encode("abc", false), (std::vector<int>{kFirst, kFirst + 4, kFirst + 3}));
  // "aaaa": "aa" merges left to right, then "aaaa".
  Tokenizer aa = MakeTokenizer({{" ", 0}, {"a", 0}, {"aa", -1}, {"aaa", -0.5f}});
  // Step 1: (a,a) at 0 -> [aa, a, a]; step 2: (aa,a) "aaa" scores higher -> [aaa, a];
  // "aaaa" is not a piece, so it stops there.
  EXPECT_EQ(aa.Encode("aaaa", false), (std::vector<int>{kFirst, kFirst + 3, kFirst + 1}));
}

TEST(TokenizerMergeTest, MergedPiecesKeepMerging) {
  Tokenizer tok = MakeTokenizer(
      {{" ", 0}, {"a", 0}, {"b", 0}, {"c", 0}, {" a", -1}, {"bc", -2}, {" abc", -3}});
  EXPECT_EQ(tok.Encode("abc", false), (std::vector<int>{kFirst + 6}));
  EXPECT_EQ(tok.Encode("abc"), (std::vector<int>{1, kFirst + 6}));
}

TEST(TokenizerMergeTest, ScoresAtOrBelowRunCFloorNeverMerge) {
  // run.c starts its search at -1e10 and needs a strictly higher score.
  Tokenizer tok = MakeTokenizer({{" ", 0}, {"a", 0}, {"b", 0}, {"ab", -1e10f}});
  EXPECT_EQ(tok.Encode("ab", false), (std::vector<int>{kFirst, kFirst + 1, kFirst + 2}));
}

TEST(TokenizerFromPiecesTest, ReplacesSentencePieceSpace) {
  Tokenizer tok = MakeTokenizer({{"\xE2\x96\x81", 0}, {"\xE2\x96\x81" "a\xE2\x96\x81" "b", -1}});
  EXPECT_EQ(tok.piece(kFirst), " ");
  EXPECT_EQ(tok.piece(kFirst + 1), " a b");
}

TEST(TokenizerFromPiecesTest, FirstIdWinsForDuplicatePieces) {
  Tokenizer tok = MakeTokenizer({{" ", 0}, {"x", 0}, {"x", 0}});
  EXPECT_EQ(tok.Encode("x", false), (std::vector<int>{kFirst, kFirst + 1}));
}

TEST(TokenizerFromPiecesTest, MissingPiecesFallBackToBytes) {
  Tokenizer tok = MakeTokenizer({});  // not even " "
  EXPECT_EQ(tok.Encode("hi", false), (std::vector<int>{' ' + 3, 'h' + 3, 'i' + 3}));
  // As in run.c, the leading-space rule looks at the piece: a <0x20> after BOS stays.
  EXPECT_EQ(tok.Decode(tok.Encode("hi", false), kBos), " hi");
}

TEST(TokenizerFromPiecesTest, ByteFallbackBeyondTinyVocabDoesNotCrash) {
  Result<Tokenizer> tok = Tokenizer::FromPieces({"<unk>", "<s>", "</s>", " "}, {0, 0, 0, 0});
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->Encode("z", false), (std::vector<int>{3, 'z' + 3}));
}

TEST(TokenizerFromPiecesTest, CustomBosAndEos) {
  Result<Tokenizer> tok = Tokenizer::FromPieces({"a", "b", "<s>", "</s>"}, {0, 0, 0, 0}, 2, 3);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->bos_id(), 2);
  EXPECT_EQ(tok->eos_id(), 3);
  EXPECT_EQ(tok->Encode("").front(), 2);
}

TEST(TokenizerFromPiecesTest, RejectsBadArguments) {
  Result<Tokenizer> mismatched = Tokenizer::FromPieces({"<unk>", "<s>", "</s>"}, {0, 0});
  ASSERT_FALSE(mismatched.ok());
  EXPECT_EQ(mismatched.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(mismatched.status().message(), "3 pieces but 2 scores"));

  Result<Tokenizer> bad_bos = Tokenizer::FromPieces({"<unk>", "<s>"}, {0, 0}, 1, 2);
  ASSERT_FALSE(bad_bos.ok());
  EXPECT_EQ(bad_bos.status().code(), StatusCode::kInvalidArgument);
}

// Loader errors, on files written into a per-test temporary folder.
class TokenizerLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("flover_tokenizer_test_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  std::filesystem::path dir_;
};

void AppendInt32(std::string& out, int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void AppendEntry(std::string& out, float score, const std::string& piece) {
  out.append(reinterpret_cast<const char*>(&score), 4);
  AppendInt32(out, static_cast<int32_t>(piece.size()));
  out += piece;
}

std::string ThreeEntries() {
  std::string bytes;
  AppendInt32(bytes, 5);
  AppendEntry(bytes, 0, "<unk>");
  AppendEntry(bytes, 0, "\n<s>\n");
  AppendEntry(bytes, -1.5f, "\n</s>\n");
  return bytes;
}

void ExpectError(const Result<Tokenizer>& result, StatusCode code, const std::string& path,
                 const std::string& detail) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), code) << result.status().ToString();
  EXPECT_TRUE(Contains(result.status().message(), path));
  EXPECT_TRUE(Contains(result.status().message(), detail));
}

TEST_F(TokenizerLoadTest, VocabularyIsEveryEntryUpToEof) {
  const std::string path = Write("three.bin", ThreeEntries());
  Result<Tokenizer> tok = Tokenizer::LoadLlama2c(path);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->vocab_size(), 3);
  EXPECT_EQ(tok->piece(2), "\n</s>\n");
}

TEST(TokenizerParseTest, BytesInMemoryReadAsTheFile) {
  Result<Tokenizer> tok = Tokenizer::ParseLlama2c(ThreeEntries(), "three entries");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ(tok->vocab_size(), 3);
  EXPECT_EQ(tok->piece(1), "\n<s>\n");
  ExpectError(Tokenizer::ParseLlama2c(ThreeEntries() + "x", "three entries and a byte"), StatusCode::kCorruption,
              "three entries and a byte", "entry 3");
}

TEST_F(TokenizerLoadTest, MissingFileIsNotFound) {
  const std::string path = (dir_ / "no_such_tok.bin").string();
  ExpectError(Tokenizer::LoadLlama2c(path), StatusCode::kNotFound, path, "does not exist");
}

TEST_F(TokenizerLoadTest, DirectoryIsIoError) {
  ExpectError(Tokenizer::LoadLlama2c(dir_.string()), StatusCode::kIoError, dir_.string(), "");
}

TEST_F(TokenizerLoadTest, TruncatedRealFileIsCorruption) {
  const std::string real_path = testing::Tok512Bin();
  std::ifstream in(real_path, std::ios::binary);
  ASSERT_TRUE(in) << "cannot open " << real_path;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(bytes.size(), 6227u) << real_path;

  // Cut inside the last entry's bytes: its length runs past the end.
  const std::string cut_piece = Write("cut_piece.bin", bytes.substr(0, bytes.size() - 1));
  ExpectError(Tokenizer::LoadLlama2c(cut_piece), StatusCode::kCorruption, cut_piece, "entry 511");
  // Cut inside an entry's score/length header.
  const std::string cut_header = Write("cut_header.bin", bytes.substr(0, 4 + 6));
  ExpectError(Tokenizer::LoadLlama2c(cut_header), StatusCode::kCorruption, cut_header, "entry 0");
}

TEST_F(TokenizerLoadTest, PartialTrailingEntryIsCorruption) {
  const std::string path = Write("trailing.bin", ThreeEntries() + std::string("\0\0\0", 3));
  ExpectError(Tokenizer::LoadLlama2c(path), StatusCode::kCorruption, path, "entry 3");
}

TEST_F(TokenizerLoadTest, NegativeLengthIsCorruption) {
  std::string bytes = ThreeEntries();
  const float score = 0;
  bytes.append(reinterpret_cast<const char*>(&score), 4);
  AppendInt32(bytes, -7);
  bytes += "abcdefg";
  const std::string path = Write("negative.bin", bytes);
  ExpectError(Tokenizer::LoadLlama2c(path), StatusCode::kCorruption, path, "negative length -7");
}

TEST_F(TokenizerLoadTest, HugeLengthIsCorruption) {
  std::string bytes = ThreeEntries();
  const float score = 0;
  bytes.append(reinterpret_cast<const char*>(&score), 4);
  AppendInt32(bytes, 0x7FFFFFFF);
  const std::string path = Write("huge.bin", bytes + "xyz");
  ExpectError(Tokenizer::LoadLlama2c(path), StatusCode::kCorruption, path, "2147483647");
}

TEST_F(TokenizerLoadTest, EmptyOrTooSmallFileIsCorruption) {
  const std::string empty = Write("empty.bin", "");
  ExpectError(Tokenizer::LoadLlama2c(empty), StatusCode::kCorruption, empty, "too short");
  std::string header_only;
  AppendInt32(header_only, 7);
  const std::string no_entries = Write("header_only.bin", header_only);
  ExpectError(Tokenizer::LoadLlama2c(no_entries), StatusCode::kCorruption, no_entries,
              "0 entries");
}

}  // namespace
}  // namespace flover
