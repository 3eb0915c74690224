// Python's `str` semantics over UTF-8 text, as Jinja templates see strings: indices,
// lengths and slices count characters (code points), whitespace is what str.isspace()
// calls whitespace, and the case functions follow Python's full case mappings.
//
// Bytes that are not valid UTF-8 decode to U+DC80..U+DCFF (Python's "surrogateescape")
// and encode back to the same bytes, so no input is lost or rejected here.
//
// Case mappings are known for ASCII, Latin-1, Latin Extended-A, basic Greek and
// Cyrillic, and fullwidth Latin letters; characters known to have no case (digits,
// punctuation, CJK, Hangul, kana, most symbols and emoji, Hebrew, Arabic, Indic
// scripts, ...) pass unchanged. Upper/Lower/Title/Capitalize throw an Unsupported
// jinja::Error for any other character rather than guess.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flover::jinja {

std::u32string Decode(std::string_view utf8);
std::string Encode(std::u32string_view text);
// The character at byte `offset` of `utf8` and its length in bytes (an invalid byte: its
// escape, length 1). REQUIRES: offset < utf8.size().
char32_t DecodeAt(std::string_view utf8, size_t offset, size_t* length);
// The count of characters of `utf8` (len() in Python).
size_t CharCount(std::string_view utf8);
// The byte offset of the first invalid UTF-8 sequence, or nullopt when `utf8` is valid.
std::optional<size_t> FindInvalidUtf8(std::string_view utf8);

// str.isspace() of one character (also what `\s` matches in Python's regexes).
bool IsSpace(char32_t c);

// str.strip / lstrip / rstrip: `chars` absent strips whitespace, else those characters.
std::string Strip(std::string_view s, const std::optional<std::string>& chars);
std::string LStrip(std::string_view s, const std::optional<std::string>& chars);
std::string RStrip(std::string_view s, const std::optional<std::string>& chars);

// str.upper / lower / capitalize / title, and Jinja's `title` filter (which
// capitalizes the pieces between runs of whitespace, '-', '(', '{', '[' and '<').
std::string Upper(std::string_view s);
std::string Lower(std::string_view s);
std::string Capitalize(std::string_view s);
std::string TitleMethod(std::string_view s);
std::string TitleFilter(std::string_view s);

// str.split(sep, maxsplit): sep absent splits on runs of whitespace and drops empty
// pieces. REQUIRES: sep, when given, is not empty (the caller reports that).
std::vector<std::string> Split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
// str.replace(old, new, count); count < 0: all. An empty `old` inserts `replacement`
// between characters and at both ends, as Python does.
std::string Replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count);

// repr() of a float (shortest text that reads back the same: "1.0", "1e+16", "nan").
std::string FloatRepr(double value);
// repr() of a str: quoted, with Python's escapes.
std::string StringRepr(std::string_view s);
// A JSON string literal as Python's json.dumps writes it (ensure_ascii: non-ASCII as \uXXXX).
std::string JsonQuote(std::string_view s, bool ensure_ascii);

}  // namespace flover::jinja
