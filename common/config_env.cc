#include "common/config_env.h"

#include <algorithm>
#include <cstdlib>

namespace flover {
namespace {

bool IsVarStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsVarChar(char c) { return IsVarStart(c) || (c >= '0' && c <= '9'); }

}  // namespace

Result<std::string> ExpandEnv(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (text[i + 1] != '{') {
      out += '$';
      continue;
    }
    const size_t close = text.find('}', i + 2);
    if (close == std::string::npos) {
      return InvalidArgument("unterminated '${' in '" + text + "'");
    }
    const std::string body = text.substr(i + 2, close - i - 2);
    const size_t op = body.find(":-");
    const std::string name = body.substr(0, op);
    const bool valid_name = !name.empty() && IsVarStart(name[0]) &&
                            std::all_of(name.begin(), name.end(), IsVarChar);
    if (!valid_name) {
      return InvalidArgument("'${" + body + "}' is not a variable reference (expected ${NAME} or ${NAME:-default})");
    }
    const char* value = std::getenv(name.c_str());
    if (op == std::string::npos) {
      if (value == nullptr) {
        return InvalidArgument("environment variable " + name + " is not set (write ${" + name +
                               ":-default} to give a default)");
      }
      out += value;
    } else if (value != nullptr && *value != '\0') {
      out += value;
    } else {
      out += body.substr(op + 2);
    }
    i = close;
  }
  return out;
}

std::string EscapeEnv(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '$') out += '$';
    out += c;
  }
  return out;
}

}  // namespace flover
