// Template: a Jinja template, parsed once and rendered many times, as jinja2 renders
// it in the environment transformers uses for chat templates
// (ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, loop controls).
//
// The engine implements the subset of Jinja that chat templates use (see lexer.h,
// parser.h, evaluator.h, filters.h, predicates.h, methods.h). Whatever it does not
// implement fails with a Status naming the line, column and construct, at Parse when
// it can be seen in the text (a tag, filter or test), else at Render; it never renders
// something other than what jinja2 renders. Parsing and rendering are bounded
// (TemplateOptions, RenderLimits) because templates can come from model files.
//
// Internally every stage throws jinja::Error; Parse and Render are the boundary, and
// no exception leaves them.
//
// Thread-safety: a Template is immutable; Render may run on several threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/jinja/budget.h"
#include "common/jinja/value.h"
#include "common/status.h"

namespace flover::jinja {

struct TemplateOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  size_t max_source_bytes = size_t{1} << 20;
};

class Template {
 public:
  // InvalidArgument "line L, column C: what" for a syntax error or an unsupported
  // construct; ResourceExhausted for a source over max_source_bytes or nested deeper
  // than the parser allows.
  static Result<Template> Parse(std::string_view source, const TemplateOptions& options = {});

  // The text of the template with `variables` (name -> value). InvalidArgument
  // "line L, column C: what" when rendering fails (an undefined value used, a wrong
  // type, raise_exception, an unsupported method); ResourceExhausted when a limit is
  // reached.
  Result<std::string> Render(const Object& variables, const RenderLimits& limits = {}) const;

 private:
  struct Parsed;
  explicit Template(std::shared_ptr<const Parsed> parsed) : parsed_(std::move(parsed)) {}

  std::shared_ptr<const Parsed> parsed_;
};

}  // namespace flover::jinja
