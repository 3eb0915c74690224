// Fuzzes the Jinja engine (common/jinja/template.h) on arbitrary template texts, as a
// model file can carry one (GGUF tokenizer.chat_template): the text is parsed, and a
// template that parses is rendered with a chat's variables (messages, tokens, tools,
// raise_exception). Any outcome but a crash, a leak (namespaces and macros can reach
// themselves), a hang or a runaway allocation is fine: errors are Statuses. The render
// runs with smaller bounds than a server's, so that the fuzzer spends its time on
// paths, not on long loops.
//
// Input: the template text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/chat_template.h"
#include "common/jinja/json.h"
#include "common/jinja/template.h"

using namespace flover;

namespace {

const jinja::Object& Variables() {
  static const jinja::Object variables = [] {
    const auto json = nlohmann::ordered_json::parse(R"({
      "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": " Hi \u00e9 \ud83c\udf89 "},
        {"role": "assistant", "content": "Hello!", "tool_calls": [
          {"id": "call12345", "type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [true, null]}}}]},
        {"role": "tool", "content": "{\"x\": 2.5}"},
        {"role": "user", "content": ""}
      ],
      "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                 "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
      "documents": null,
      "bos_token": "<s>",
      "eos_token": "</s>",
      "add_generation_prompt": true
    })");
    jinja::Object object = jinja::FromJson(json).dict();
    AddTransformersFunctions(&object);
    return object;
  }();
  return variables;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  Result<jinja::Template> parsed = jinja::Template::Parse(source);
  if (!parsed.ok()) return 0;
  jinja::RenderLimits limits;
  limits.max_steps = 200'000;
  limits.max_output_bytes = size_t{1} << 20;
  limits.max_items = 10'000;
  (void)parsed->Render(Variables(), limits);
  return 0;
}
