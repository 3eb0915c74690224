#include "common/jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "common/jinja/filters.h"
#include "common/jinja/predicates.h"

namespace flover::jinja {

namespace {

// Tags of Jinja that this engine does not implement (refused as Unsupported rather
// than as unknown).
constexpr std::string_view kUnsupportedTags[] = {"include", "import", "from",       "extends", "block",
                                                  "call",    "filter", "with",       "autoescape", "do",
                                                  "trans",   "pluralize", "endblock", "endcall", "endfilter",
                                                  "endwith", "endautoescape", "endtrans"};

std::string Quoted(const Token& t) {
  switch (t.kind) {
    case TokenKind::kText: return "text";
    case TokenKind::kExpressionOpen: return "'{{'";
    case TokenKind::kExpressionClose: return "'}}'";
    case TokenKind::kStatementOpen: return "'{%'";
    case TokenKind::kStatementClose: return "'%}'";
    case TokenKind::kString: return "a string";
    case TokenKind::kEnd: return "the end of the template";
    default: return "'" + t.text + "'";
  }
}

std::string OneOf(const std::vector<std::string_view>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += std::string(i == 0 ? "" : (i + 1 == names.size() ? " or " : ", ")) + "'" + std::string(names[i]) + "'";
  return out;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body Run() {
    std::string found;
    return ParseBody({}, "", &found);
  }

 private:
  // Counts nesting while it lives.
  class Nest {
   public:
    Nest(Parser* p, Position at) : p_(p) {
      if (++p_->nesting_ > kMaxNesting)
        Fail(ErrorKind::kLimit, "the template nests deeper than " + std::to_string(kMaxNesting) + " levels", at);
    }
    ~Nest() { --p_->nesting_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser* p_;
  };

  const Token& Current() const { return tokens_[pos_]; }
  const Token& Peek(size_t ahead = 1) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(std::string_view op) const { return Current().kind == TokenKind::kOperator && Current().text == op; }
  bool IsName(std::string_view name) const { return Current().kind == TokenKind::kName && Current().text == name; }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }

  [[noreturn]] void Unexpected(const std::string& expected) const {
    Fail(ErrorKind::kSyntax, "expected " + expected + ", got " + Quoted(Current()), Current().position);
  }
  void ExpectOp(std::string_view op) {
    if (!SkipOp(op)) Unexpected("'" + std::string(op) + "'");
  }
  void ExpectName(std::string_view name) {
    if (!SkipName(name)) Unexpected("'" + std::string(name) + "'");
  }
  std::string ExpectIdentifier(const char* what) {
    if (Current().kind != TokenKind::kName) Unexpected(what);
    return Next().text;
  }
  void ExpectStatementClose() {
    if (Current().kind != TokenKind::kStatementClose) Unexpected("'%}'");
    Next();
  }

  static ExprPtr Node(Expr::Kind kind, Position at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->position = at;
    return e;
  }
  // Adds `operand` (may be null) to `e`, keeping e's height.
  static void Add(Expr* e, ExprPtr operand) {
    if (operand) {
      e->height = std::max(e->height, operand->height + 1);
      if (e->height > kMaxNesting)
        Fail(ErrorKind::kLimit, "an expression nests deeper than " + std::to_string(kMaxNesting) + " levels",
             e->position);
    }
    e->operands.push_back(std::move(operand));
  }
  static ExprPtr Binary(Expr::Kind kind, std::string op, ExprPtr left, ExprPtr right, Position at) {
    ExprPtr e = Node(kind, at);
    e->name = std::move(op);
    Add(e.get(), std::move(left));
    Add(e.get(), std::move(right));
    return e;
  }

  // ---------------------------------------------------------------- statements

  // Statements up to a `{% name %}` with name in `ends` (consumed up to and including
  // the name, stored in *found), or the end of the template when `ends` is empty.
  // `open` describes the block being parsed, for messages ("'for' at line 3").
  Body ParseBody(const std::vector<std::string_view>& ends, const std::string& open, std::string* found) {
    Body body;
    while (true) {
      const Token& t = Current();
      switch (t.kind) {
        case TokenKind::kText: {
          auto s = std::make_unique<Stmt>();
          s->kind = Stmt::Kind::kText;
          s->position = t.position;
          s->text = t.text;
          body.push_back(std::move(s));
          Next();
          break;
        }
        case TokenKind::kExpressionOpen: {
          Next();
          auto s = std::make_unique<Stmt>();
          s->kind = Stmt::Kind::kOutput;
          s->position = t.position;
          s->expr = ParseTuple(true, {}, false);
          if (Current().kind != TokenKind::kExpressionClose) Unexpected("'}}'");
          Next();
          body.push_back(std::move(s));
          break;
        }
        case TokenKind::kStatementOpen: {
          const Token& name = Peek();
          if (name.kind == TokenKind::kName &&
              std::find(ends.begin(), ends.end(), name.text) != ends.end()) {
            Next();
            *found = Next().text;
            return body;
          }
          if (name.kind == TokenKind::kName &&
              (name.text.starts_with("end") || name.text == "elif" || name.text == "else") &&
              std::find(std::begin(kUnsupportedTags), std::end(kUnsupportedTags), name.text) ==
                  std::end(kUnsupportedTags)) {
            Fail(ErrorKind::kSyntax,
                 "unexpected '" + name.text + "'" +
                     (ends.empty() ? std::string(": no block is open")
                                   : ": the " + open + " is still open (expected " + OneOf(ends) + ")"),
                 name.position);
          }
          Next();
          body.push_back(ParseStatement(t.position));
          break;
        }
        case TokenKind::kEnd:
          if (!ends.empty())
            Fail(ErrorKind::kSyntax, "the " + open + " is not closed (expected " + OneOf(ends) + ")", t.position);
          return body;
        default: Unexpected("text or a tag");
      }
    }
  }

  StmtPtr ParseStatement(Position at) {
    const Nest nest(this, at);
    if (Current().kind != TokenKind::kName) Unexpected("a tag name");
    const Token& tag = Next();
    const std::string& name = tag.text;
    if (name == "if") return ParseIf(at);
    if (name == "for") return ParseFor(at);
    if (name == "set") return ParseSet(at);
    if (name == "macro") return ParseMacro(at);
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) Fail(ErrorKind::kSyntax, "'" + name + "' outside of a for loop", tag.position);
      ExpectStatementClose();
      auto s = std::make_unique<Stmt>();
      s->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      s->position = at;
      return s;
    }
    if (name == "generation") return ParseGeneration(at);
    if (std::find(std::begin(kUnsupportedTags), std::end(kUnsupportedTags), name) != std::end(kUnsupportedTags))
      Fail(ErrorKind::kUnsupported, "the '" + name + "' tag is not supported", tag.position);
    Fail(ErrorKind::kSyntax, "unknown tag '" + name + "'", tag.position);
  }

  static std::string Where(const char* tag, Position at) {
    return std::string("'") + tag + "' at line " + std::to_string(at.line);
  }

  StmtPtr ParseIf(Position at) {
    auto s = std::make_unique<Stmt>();
    s->kind = Stmt::Kind::kIf;
    s->position = at;
    ExprPtr condition = ParseTuple(false, {}, false);
    ExpectStatementClose();
    std::string found;
    while (true) {
      Body body = ParseBody({"elif", "else", "endif"}, Where("if", at), &found);
      s->branches.emplace_back(std::move(condition), std::move(body));
      if (found == "elif") {
        condition = ParseTuple(false, {}, false);
        ExpectStatementClose();
        continue;
      }
      if (found == "else") {
        ExpectStatementClose();
        s->branches.emplace_back(nullptr, ParseBody({"endif"}, Where("if", at), &found));
      }
      ExpectStatementClose();
      return s;
    }
  }

  StmtPtr ParseFor(Position at) {
    auto s = std::make_unique<Stmt>();
    s->kind = Stmt::Kind::kFor;
    s->position = at;
    s->target = ParseTarget(false, "in");
    ExpectName("in");
    s->expr = ParseTuple(false, {"recursive"}, false);
    if (SkipName("if")) s->filter = ParseExpression(true);
    if (IsName("recursive"))
      Fail(ErrorKind::kUnsupported, "recursive for loops are not supported", Current().position);
    ExpectStatementClose();
    std::string found;
    ++loop_depth_;
    s->body = ParseBody({"endfor", "else"}, Where("for", at), &found);
    --loop_depth_;
    if (found == "else") {
      ExpectStatementClose();
      s->else_body = ParseBody({"endfor"}, Where("for", at), &found);
    }
    ExpectStatementClose();
    return s;
  }

  StmtPtr ParseSet(Position at) {
    auto s = std::make_unique<Stmt>();
    s->position = at;
    s->target = ParseTarget(true, "=");
    if (SkipOp("=")) {
      s->kind = Stmt::Kind::kSet;
      s->expr = ParseTuple(true, {}, false);
      ExpectStatementClose();
      return s;
    }
    if (IsOp("|")) Fail(ErrorKind::kUnsupported, "filters on a set block are not supported", Current().position);
    if (s->target.names.size() != 1) Unexpected("'='");
    s->kind = Stmt::Kind::kSetBlock;
    ExpectStatementClose();
    std::string found;
    const int loops = loop_depth_;
    loop_depth_ = 0;
    s->body = ParseBody({"endset"}, Where("set", at), &found);
    loop_depth_ = loops;
    ExpectStatementClose();
    return s;
  }

  StmtPtr ParseMacro(Position at) {
    auto s = std::make_unique<Stmt>();
    s->kind = Stmt::Kind::kMacro;
    s->position = at;
    s->text = ExpectIdentifier("a macro name");
    ExpectOp("(");
    while (!IsOp(")")) {
      if (!s->params.empty()) ExpectOp(",");
      if (IsOp(")")) break;
      MacroParam& param = s->params.emplace_back();
      const Token& name = Current();
      param.name = ExpectIdentifier("a parameter name");
      if (SkipOp("=")) {
        param.default_value = ParseExpression(true);
      } else if (s->params.size() > 1 && s->params[s->params.size() - 2].default_value) {
        Fail(ErrorKind::kSyntax, "parameter '" + param.name + "' without a default follows one with a default",
             name.position);
      }
    }
    ExpectOp(")");
    ExpectStatementClose();
    std::string found;
    const int loops = loop_depth_;
    loop_depth_ = 0;
    s->body = ParseBody({"endmacro"}, Where("macro", at), &found);
    loop_depth_ = loops;
    ExpectStatementClose();
    return s;
  }

  // transformers' {% generation %} block (it marks the assistant's tokens): its body, as is.
  StmtPtr ParseGeneration(Position at) {
    ExpectStatementClose();
    auto s = std::make_unique<Stmt>();
    s->kind = Stmt::Kind::kIf;
    s->position = at;
    ExprPtr always = Node(Expr::Kind::kLiteral, at);
    always->literal = Value::Bool(true);
    std::string found;
    s->branches.emplace_back(std::move(always), ParseBody({"endgeneration"}, Where("generation", at), &found));
    ExpectStatementClose();
    return s;
  }

  // A name, `a, b` / `(a, b)`, or (with_namespace) `ns.attr`, followed by `end`.
  Target ParseTarget(bool with_namespace, std::string_view end) {
    Target target;
    if (with_namespace && Current().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
        Peek().text == ".") {
      target.names.push_back(Next().text);
      Next();
      target.attribute = ExpectIdentifier("an attribute name");
      return target;
    }
    const bool parenthesized = SkipOp("(");
    while (true) {
      target.names.push_back(ExpectIdentifier("a variable name"));
      if (!SkipOp(",")) break;
      if (parenthesized ? IsOp(")") : (IsName(end) || IsOp(end))) break;
    }
    if (parenthesized) ExpectOp(")");
    for (const std::string& name : target.names)
      if (name == "true" || name == "false" || name == "none" || name == "True" || name == "False" ||
          name == "None")
        Fail(ErrorKind::kSyntax, "cannot assign to '" + name + "'", Current().position);
    return target;
  }

  // ---------------------------------------------------------------- expressions

  bool IsTupleEnd(const std::vector<std::string_view>& extra_ends) const {
    const Token& t = Current();
    if (t.kind == TokenKind::kExpressionClose || t.kind == TokenKind::kStatementClose || t.kind == TokenKind::kEnd)
      return true;
    if (t.kind == TokenKind::kOperator && t.text == ")") return true;
    return t.kind == TokenKind::kName && std::find(extra_ends.begin(), extra_ends.end(), t.text) != extra_ends.end();
  }

  // Expressions separated by commas: one expression, or a tuple when a comma follows.
  ExprPtr ParseTuple(bool with_condition, const std::vector<std::string_view>& extra_ends, bool parenthesized) {
    const Position at = Current().position;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) ExpectOp(",");
      if (IsTupleEnd(extra_ends)) break;
      items.push_back(ParseExpression(with_condition));
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!parenthesized) Unexpected("an expression");
    }
    ExprPtr e = Node(Expr::Kind::kTuple, at);
    for (ExprPtr& item : items) Add(e.get(), std::move(item));
    return e;
  }

  ExprPtr ParseExpression(bool with_condition) {
    const Nest nest(this, Current().position);
    return with_condition ? ParseCondition() : ParseOr();
  }

  ExprPtr ParseCondition() {
    ExprPtr expr = ParseOr();
    while (IsName("if")) {
      const Position at = Next().position;
      ExprPtr condition = ParseOr();
      ExprPtr otherwise;
      if (SkipName("else")) otherwise = ParseExpression(true);
      ExprPtr e = Node(Expr::Kind::kCondition, at);
      Add(e.get(), std::move(condition));
      Add(e.get(), std::move(expr));
      Add(e.get(), std::move(otherwise));
      expr = std::move(e);
    }
    return expr;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      const Position at = Next().position;
      left = Binary(Expr::Kind::kBinary, "or", std::move(left), ParseAnd(), at);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      const Position at = Next().position;
      left = Binary(Expr::Kind::kBinary, "and", std::move(left), ParseNot(), at);
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (!IsName("not")) return ParseCompare();
    const Position at = Next().position;
    const Nest nest(this, at);
    ExprPtr e = Node(Expr::Kind::kUnary, at);
    e->name = "not";
    Add(e.get(), ParseNot());
    return e;
  }

  ExprPtr ParseCompare() {
    const Position at = Current().position;
    ExprPtr first = ParseMath1();
    ExprPtr e;
    while (true) {
      std::string op;
      if (Current().kind == TokenKind::kOperator &&
          (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">="))) {
        op = Next().text;
      } else if (SkipName("in")) {
        op = "in";
      } else if (IsName("not") && Peek().kind == TokenKind::kName && Peek().text == "in") {
        Next();
        Next();
        op = "notin";
      } else {
        break;
      }
      if (!e) {
        e = Node(Expr::Kind::kCompare, at);
        Add(e.get(), std::move(first));
      }
      e->ops.push_back(op);
      Add(e.get(), ParseMath1());
    }
    return e ? std::move(e) : std::move(first);
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, op.text, std::move(left), ParseConcat(), op.position);
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (IsOp("~")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, "~", std::move(left), ParseMath2(), op.position);
    }
    return left;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, op.text, std::move(left), ParsePow(), op.position);
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, "**", std::move(left), ParseUnary(true), op.position);
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const Token& op = Next();
      const Nest nest(this, op.position);
      node = Node(Expr::Kind::kUnary, op.position);
      node->name = op.text;
      Add(node.get(), ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Current();
    switch (t.kind) {
      case TokenKind::kName: {
        Next();
        ExprPtr e = Node(Expr::Kind::kLiteral, t.position);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::None();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case TokenKind::kString: {
        ExprPtr e = Node(Expr::Kind::kLiteral, t.position);
        std::string s;
        while (Current().kind == TokenKind::kString) s += Next().text;  // "a" "b" is "ab"
        e->literal = Value::String(std::move(s));
        return e;
      }
      case TokenKind::kInteger:
      case TokenKind::kFloat: {
        Next();
        ExprPtr e = Node(Expr::Kind::kLiteral, t.position);
        e->literal = t.kind == TokenKind::kInteger ? Value::Int(t.integer) : Value::Float(t.number);
        return e;
      }
      case TokenKind::kOperator:
        if (t.text == "(") {
          Next();
          ExprPtr e = ParseTuple(true, {}, true);
          ExpectOp(")");
          return e;
        }
        if (t.text == "[") return ParseList();
        if (t.text == "{") return ParseDict();
        break;
      default: break;
    }
    Unexpected("an expression");
  }

  ExprPtr ParseList() {
    ExprPtr e = Node(Expr::Kind::kList, Next().position);
    while (!IsOp("]")) {
      if (!e->operands.empty()) ExpectOp(",");
      if (IsOp("]")) break;
      Add(e.get(), ParseExpression(true));
    }
    ExpectOp("]");
    return e;
  }

  ExprPtr ParseDict() {
    ExprPtr e = Node(Expr::Kind::kDict, Next().position);
    while (!IsOp("}")) {
      if (!e->operands.empty()) ExpectOp(",");
      if (IsOp("}")) break;
      Add(e.get(), ParseExpression(true));
      ExpectOp(":");
      Add(e.get(), ParseExpression(true));
    }
    ExpectOp("}");
    return e;
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".") || IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        node = ParseFilter(std::move(node));
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    const Token& op = Next();
    if (op.text == ".") {
      const Token& attr = Next();
      if (attr.kind == TokenKind::kName) {
        ExprPtr e = Node(Expr::Kind::kAttribute, op.position);
        e->name = attr.text;
        Add(e.get(), std::move(node));
        return e;
      }
      if (attr.kind != TokenKind::kInteger)
        Fail(ErrorKind::kSyntax, "expected a name or a number after '.', got " + Quoted(attr), attr.position);
      ExprPtr index = Node(Expr::Kind::kLiteral, attr.position);
      index->literal = Value::Int(attr.integer);
      ExprPtr e = Node(Expr::Kind::kItem, op.position);
      Add(e.get(), std::move(node));
      Add(e.get(), std::move(index));
      return e;
    }
    // '['
    std::vector<ExprPtr> args;
    while (!IsOp("]")) {
      if (!args.empty()) ExpectOp(",");
      args.push_back(ParseSubscribed());
    }
    ExpectOp("]");
    if (args.empty()) Fail(ErrorKind::kSyntax, "expected a subscript inside '[]'", op.position);
    if (args.size() > 1)
      for (const ExprPtr& a : args)
        if (a->kind == Expr::Kind::kSlice)
          Fail(ErrorKind::kUnsupported, "several slices in one subscript are not supported", a->position);
    ExprPtr key;
    if (args.size() == 1) {
      key = std::move(args[0]);
    } else {
      key = Node(Expr::Kind::kTuple, op.position);
      for (ExprPtr& a : args) Add(key.get(), std::move(a));
    }
    if (key->kind == Expr::Kind::kSlice) {  // the slice node takes the object as operand 0
      key->operands.insert(key->operands.begin(), nullptr);
      key->operands[0] = std::move(node);
      key->height = std::max(key->height, key->operands[0]->height + 1);
      if (key->height > kMaxNesting)
        Fail(ErrorKind::kLimit, "an expression nests deeper than " + std::to_string(kMaxNesting) + " levels",
             key->position);
      return key;
    }
    ExprPtr e = Node(Expr::Kind::kItem, op.position);
    Add(e.get(), std::move(node));
    Add(e.get(), std::move(key));
    return e;
  }

  // One subscript: an expression or a slice `a:b:c` (each part optional). A slice is
  // returned as kSlice with operands start, stop, step (the object is added later).
  ExprPtr ParseSubscribed() {
    const Position at = Current().position;
    ExprPtr start;
    if (!IsOp(":")) {
      start = ParseExpression(true);
      if (!IsOp(":")) return start;
    }
    Next();  // ':'
    ExprPtr slice = Node(Expr::Kind::kSlice, at);
    ExprPtr stop, step;
    if (!IsOp("]") && !IsOp(",") && !IsOp(":")) stop = ParseExpression(true);
    if (SkipOp(":") && !IsOp("]") && !IsOp(",")) step = ParseExpression(true);
    Add(slice.get(), std::move(start));
    Add(slice.get(), std::move(stop));
    Add(slice.get(), std::move(step));
    return slice;
  }

  // `(args)` into e's operands (after those it has) and keywords.
  void ParseCallArgs(Expr* e) {
    const Position at = Current().position;
    ExpectOp("(");
    bool need_comma = false;
    while (!IsOp(")")) {
      if (need_comma) {
        ExpectOp(",");
        if (IsOp(")")) break;
      }
      if (IsOp("*") || IsOp("**"))
        Fail(ErrorKind::kUnsupported, "*args and **kwargs in calls are not supported", Current().position);
      if (Current().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator && Peek().text == "=") {
        std::string key = Next().text;
        Next();
        ExprPtr value = ParseExpression(true);
        e->height = std::max(e->height, value->height + 1);
        e->keywords.emplace_back(std::move(key), std::move(value));
      } else {
        if (!e->keywords.empty())
          Fail(ErrorKind::kSyntax, "a positional argument follows a keyword argument", Current().position);
        Add(e, ParseExpression(true));
      }
      need_comma = true;
    }
    ExpectOp(")");
    if (e->height > kMaxNesting)
      Fail(ErrorKind::kLimit, "an expression nests deeper than " + std::to_string(kMaxNesting) + " levels", at);
  }

  ExprPtr ParseCall(ExprPtr callee) {
    ExprPtr e = Node(Expr::Kind::kCall, callee->position);
    Add(e.get(), std::move(callee));
    ParseCallArgs(e.get());
    return e;
  }

  // A filter or test name, dotted names included.
  std::string ParseDottedName(const char* what) {
    std::string name = ExpectIdentifier(what);
    while (SkipOp(".")) name += "." + ExpectIdentifier(what);
    return name;
  }

  ExprPtr ParseFilter(ExprPtr node) {
    while (IsOp("|")) {
      Next();
      const Position at = Current().position;
      ExprPtr e = Node(Expr::Kind::kFilter, at);
      e->name = ParseDottedName("a filter name");
      if (!FindFilter(e->name))
        Fail(ErrorKind::kUnsupported,
             IsJinjaFilterName(e->name) ? "the filter '" + e->name + "' is not supported"
                                        : "no filter named '" + e->name + "'",
             at);
      Add(e.get(), std::move(node));
      if (IsOp("(")) ParseCallArgs(e.get());
      node = std::move(e);
    }
    return node;
  }

  ExprPtr ParseTest(ExprPtr node) {
    const Position at = Next().position;  // 'is'
    ExprPtr e = Node(Expr::Kind::kTest, at);
    e->negated = SkipName("not");
    const Position name_at = Current().position;
    e->name = ParseDottedName("a test name");
    if (!FindTest(e->name))
      Fail(ErrorKind::kUnsupported,
           IsJinjaTestName(e->name) ? "the test '" + e->name + "' is not supported" : "no test named '" + e->name + "'",
           name_at);
    Add(e.get(), std::move(node));
    const Token& t = Current();
    const bool starts_argument =
        t.kind == TokenKind::kName || t.kind == TokenKind::kString || t.kind == TokenKind::kInteger ||
        t.kind == TokenKind::kFloat || (t.kind == TokenKind::kOperator && (t.text == "[" || t.text == "{"));
    if (IsOp("(")) {
      ParseCallArgs(e.get());
    } else if (starts_argument && !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) Fail(ErrorKind::kSyntax, "tests cannot be chained with 'is'", t.position);
      Add(e.get(), ParsePostfix(ParsePrimary()));  // `x is divisibleby 3`
    }
    return e;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;  // for loops around the statement being parsed (within its macro)
};

}  // namespace

Body Parse(std::vector<Token> tokens) { return Parser(std::move(tokens)).Run(); }

}  // namespace flover::jinja
