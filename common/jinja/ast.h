// The syntax tree of a parsed template: statements (text, output, if, for, set, macro,
// break, continue) holding expressions. Built by the parser, read by the evaluator;
// immutable once built.
//
// Nodes are tagged structs rather than a class hierarchy: each kind's comment says
// which fields it uses, and the others stay empty.
//
// Thread-safety: immutable after parsing; shared by every render of a template.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/jinja/error.h"
#include "common/jinja/value.h"

namespace flover::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // literal
    kName,       // name
    kList,       // operands: the items
    kTuple,      // operands: the items
    kDict,       // operands: key, value, key, value, ...
    kAttribute,  // operands[0].name
    kItem,       // operands[0][operands[1]]
    kSlice,      // operands[0][operands[1]:operands[2]:operands[3]], a missing bound is null
    kCall,       // operands[0](operands[1..], keywords)
    kFilter,     // operands[0] | name(operands[1..], keywords)
    kTest,       // operands[0] is [not] name(operands[1..], keywords)
    kUnary,      // op operands[0]: op is "-", "+" or "not"
    kBinary,     // operands[0] op operands[1]: + - * / // % ** ~ and or
    kCompare,    // operands[0] ops[0] operands[1] ops[1] operands[2] ...: == != < <= > >= in notin
    kCondition,  // operands[1] if operands[0] else operands[2] (operands[2] null: no else)
  };

  Kind kind;
  Position position;
  Value literal;
  std::string name;  // kName, kAttribute, kFilter, kTest; the operator of kUnary and kBinary
  std::vector<ExprPtr> operands;
  std::vector<std::pair<std::string, ExprPtr>> keywords;  // kCall, kFilter, kTest
  std::vector<std::string> ops;                           // kCompare
  bool negated = false;                                   // kTest: `is not`
  // The height of this subtree. The parser bounds it, so that evaluating or destroying
  // a tree cannot exhaust the stack.
  int height = 1;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// What `set` and `for` assign to: one name, names to unpack (`a, b`), or an attribute
// of a namespace (`ns.attr`).
struct Target {
  std::vector<std::string> names;  // one, or several to unpack
  std::string attribute;           // non-empty: names[0].attribute
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches: (condition, body) in order; a null condition is the else
    kFor,       // for target in expr [if filter]: body [else else_body]
    kSet,       // set target = expr
    kSetBlock,  // set target %}body{% endset
    kMacro,     // macro name(params): body
    kBreak,
    kContinue,
  };

  Kind kind;
  Position position;
  std::string text;                                  // kText; kMacro: the macro's name
  ExprPtr expr;                                      // kOutput, kFor (the iterable), kSet
  ExprPtr filter;                                    // kFor: the `if` of the loop, or null
  Target target;                                     // kFor, kSet, kSetBlock
  std::vector<std::pair<ExprPtr, Body>> branches;    // kIf
  Body body;                                         // kFor, kSetBlock, kMacro
  Body else_body;                                    // kFor
  std::vector<MacroParam> params;                    // kMacro
};

}  // namespace flover::jinja
