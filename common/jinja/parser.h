// The parser: tokens to a syntax tree, following jinja2's grammar and operator
// precedence (lowest first: `x if c else y`; or; and; not; comparisons, in, not in;
// + -; ~; * / // %; **; unary - +; then filters `|`, tests `is`, calls, `.attr`,
// `[item]` and slices).
//
// Statements: if/elif/else, for/else (with an `if` filter), set (a name, a tuple of
// names, a namespace attribute, or a block), macro, break, continue, and transformers'
// `generation` block. Other Jinja tags (include, import, extends, block, call, filter,
// with, ...) are refused as Unsupported, as are filters and tests the engine does not
// have, so that a template either renders as jinja2 would or fails here with a
// position. Nesting is bounded (kMaxNesting) so hostile input cannot overflow the stack.
//
// Thread-safety: pure function.
#pragma once

#include <vector>

#include "common/jinja/ast.h"
#include "common/jinja/lexer.h"

namespace flover::jinja {

// Nested statements, nested expressions, and the height of an expression tree.
inline constexpr int kMaxNesting = 100;

// The template's statements. Throws a Syntax, Unsupported or Limit jinja::Error.
Body Parse(std::vector<Token> tokens);

}  // namespace flover::jinja
