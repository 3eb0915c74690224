// The built-in chat templates' texts, compiled in from common/chat_templates/*.jinja by
// common/CMakeLists.txt (builtin_chat_templates.cc.in). Use chat_template.h instead.
//
// Thread-safety: immutable.
#pragma once

#include <string>
#include <vector>

namespace flover {

struct BuiltinChatTemplateText {
  std::string name;  // the file's name without .jinja
  std::string text;
};

// In the order common/CMakeLists.txt lists them.
const std::vector<BuiltinChatTemplateText>& BuiltinChatTemplateTexts();

}  // namespace flover
