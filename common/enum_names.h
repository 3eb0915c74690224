// EnumNames: the spellings of an enum's values (in config files, on the command line, in
// messages) as one constant table per enum, so that parsing, printing and the list an
// error message gives always agree.
//
//   constexpr EnumNames<Color, 2> kColorNames = {{{Color::kRed, "red"}, {Color::kBlue, "blue"}}};
//   kColorNames.Name(Color::kRed) == "red";  kColorNames.FromName("blue") == Color::kBlue;
//   kColorNames.Names() == {"red", "blue"}
//
// Thread-safety: constant tables and const functions.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flover {

template <typename E, size_t N>
struct EnumNames {
  // In the order messages list them; each value and each name once.
  std::array<std::pair<E, const char*>, N> entries;

  // The name of `value`; "unknown" for a value not in the table (an integer cast to E).
  constexpr const char* Name(E value) const {
    for (const auto& [v, name] : entries)
      if (v == value) return name;
    return "unknown";
  }

  // The value spelled `name` (exactly); nullopt for any other spelling.
  constexpr std::optional<E> FromName(std::string_view name) const {
    for (const auto& [v, n] : entries)
      if (name == n) return v;
    return std::nullopt;
  }

  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& entry : entries) names.emplace_back(entry.second);
    return names;
  }
};

}  // namespace flover
