// The evaluator: renders a parsed template's statements with a set of variables, as
// jinja2 renders them.
//
// Scopes follow jinja2: each for loop iteration and each macro call opens a scope; `set`
// writes the innermost scope (so a `set` inside a loop is not seen after it, which is
// what namespace() is for), `if` opens none. Names are looked up from the innermost
// scope out to the variables, then the globals range(), namespace() and dict()
// (jinja2's cycler(), joiner() and lipsum() are refused as unsupported).
// Break and continue end loops; `loop` has index, index0, revindex, revindex0, first,
// last, length, previtem, nextitem, depth, depth0 and cycle().
//
// Every failure throws a jinja::Error carrying the position of the expression or
// statement where it happened; Template (template.h) turns it into a Status.
//
// Thread-safety: pure function; renders share nothing.
#pragma once

#include <string>

#include "common/jinja/ast.h"
#include "common/jinja/budget.h"
#include "common/jinja/value.h"

namespace flover::jinja {

std::string Render(const Body& body, const Object& variables, const RenderLimits& limits);

}  // namespace flover::jinja
