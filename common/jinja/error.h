// The engine's internal error: what went wrong and where in the template. Every stage
// (lexer, parser, evaluator, filters) reports a failure by throwing jinja::Error;
// Template (template.h) is the boundary that catches it and returns a Status, so no
// exception leaves the library.
//
// Thread-safety: value type.
#pragma once

#include <optional>
#include <string>

namespace flover::jinja {

// A place in the template source: 1-based line, 1-based column in characters.
struct Position {
  int line = 1;
  int column = 1;
};

enum class ErrorKind {
  kSyntax,       // the text is not a template (unclosed tag, bad expression)
  kUnsupported,  // valid Jinja that this engine does not implement (a tag, filter, test, method)
  kRender,       // the template failed while rendering (undefined value, wrong type)
  kRaised,       // the template called raise_exception(message)
  kLimit,        // a bound on work, depth, size or output was reached
};

struct Error {
  ErrorKind kind;
  std::string message;
  std::optional<Position> position;  // set by the stage that knows it
};

[[noreturn]] inline void Fail(ErrorKind kind, std::string message) { throw Error{kind, std::move(message), {}}; }
[[noreturn]] inline void Fail(ErrorKind kind, std::string message, Position at) {
  throw Error{kind, std::move(message), at};
}

}  // namespace flover::jinja
