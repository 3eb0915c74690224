#include "common/jinja/template.h"

#include "common/jinja/ast.h"
#include "common/jinja/error.h"
#include "common/jinja/evaluator.h"
#include "common/jinja/lexer.h"
#include "common/jinja/parser.h"

namespace flover::jinja {

namespace {

Status StatusOf(const Error& e) {
  std::string where;
  if (e.position)
    where = "line " + std::to_string(e.position->line) + ", column " + std::to_string(e.position->column) + ": ";
  const StatusCode code = e.kind == ErrorKind::kLimit ? StatusCode::kResourceExhausted : StatusCode::kInvalidArgument;
  return {code, where + e.message};
}

}  // namespace

struct Template::Parsed {
  Body body;
};

Result<Template> Template::Parse(std::string_view source, const TemplateOptions& options) {
  if (source.size() > options.max_source_bytes)
    return ResourceExhausted("the template has " + std::to_string(source.size()) + " bytes; at most " +
                             std::to_string(options.max_source_bytes) + " are allowed");
  try {
    auto parsed = std::make_shared<Parsed>();
    parsed->body = jinja::Parse(Lex(source, LexOptions{options.trim_blocks, options.lstrip_blocks}));
    return Template(std::move(parsed));
  } catch (const Error& e) {
    return StatusOf(e);
  }
}

Result<std::string> Template::Render(const Object& variables, const RenderLimits& limits) const {
  try {
    return jinja::Render(parsed_->body, variables, limits);
  } catch (const Error& e) {
    return StatusOf(e);
  }
}

}  // namespace flover::jinja
