#include "common/jinja/evaluator.h"

#include <cmath>
#include <limits>
#include <memory>

#include "common/jinja/access.h"
#include "common/jinja/error.h"
#include "common/jinja/filters.h"
#include "common/jinja/function.h"
#include "common/jinja/predicates.h"

namespace flover::jinja {

namespace {

// jinja2's MAX_RANGE: the sandbox refuses longer ranges.
constexpr int64_t kMaxRange = 100000;

struct Scope {
  std::shared_ptr<Scope> parent;
  Object vars;

  const Value* Find(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent.get())
      if (const Value* v = s->vars.Find(name)) return v;
    return nullptr;
  }
};

using ScopePtr = std::shared_ptr<Scope>;

[[noreturn]] void FailOperands(std::string_view op, const Value& a, const Value& b) {
  Fail(ErrorKind::kRender, "unsupported operand types for " + std::string(op) + ": '" + TypeName(a) + "' and '" +
                               TypeName(b) + "'");
}

[[noreturn]] void FailOverflow() { Fail(ErrorKind::kUnsupported, "integer overflow (int64)"); }

int64_t FloorDiv(int64_t a, int64_t b) {
  if (b == 0) Fail(ErrorKind::kRender, "integer division or modulo by zero");
  if (a == std::numeric_limits<int64_t>::min() && b == -1) FailOverflow();
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t FloorMod(int64_t a, int64_t b) {
  if (b == 0) Fail(ErrorKind::kRender, "integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// Python's float % and //.
double FloatMod(double a, double b) {
  if (b == 0) Fail(ErrorKind::kRender, "float modulo by zero");
  double mod = std::fmod(a, b);
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) mod += b;
  } else {
    mod = std::copysign(0.0, b);
  }
  return mod;
}

double FloatFloorDiv(double a, double b) {
  if (b == 0) Fail(ErrorKind::kRender, "float floor division by zero");
  const double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.0;
  if (div == 0) return std::copysign(0.0, a / b);
  double floor_div = std::floor(div);
  if (div - floor_div > 0.5) floor_div += 1.0;
  return floor_div;
}

int64_t IntPow(int64_t base, int64_t exponent) {
  int64_t result = 1;
  while (exponent > 0) {
    if (exponent & 1) {
      if (__builtin_mul_overflow(result, base, &result)) FailOverflow();
    }
    exponent >>= 1;
    if (exponent > 0 && __builtin_mul_overflow(base, base, &base)) FailOverflow();
  }
  return result;
}

class Evaluator {
 public:
  explicit Evaluator(const RenderLimits& limits) : budget_(limits) {}

  ~Evaluator() {
    // Namespaces and scopes holding macros can reach themselves; break the cycles.
    for (const Value& ns : namespaces_) ns.ns().attributes.Clear();
    for (const ScopePtr& scope : macro_scopes_) scope->vars.Clear();
  }

  std::string Run(const Body& body, const Object& variables) {
    auto globals = std::make_shared<Scope>();
    AddGlobals(globals.get());
    auto top = std::make_shared<Scope>();
    top->parent = globals;
    top->vars = variables;
    std::string out;
    out_ = &out;
    ExecBody(body, top);
    return out;
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  // Counts nesting while it lives.
  class Depth {
   public:
    explicit Depth(Evaluator* e) : e_(e) {
      if (++e_->depth_ > e_->budget_.limits().max_depth)
        Fail(ErrorKind::kLimit, "the template nests deeper than " + std::to_string(e_->budget_.limits().max_depth) +
                                    " levels while rendering (recursive macros?)");
    }
    ~Depth() { --e_->depth_; }
    Depth(const Depth&) = delete;
    Depth& operator=(const Depth&) = delete;

   private:
    Evaluator* e_;
  };

  // ---------------------------------------------------------------- globals

  void AddGlobals(Scope* globals) {
    globals->vars.Set("range", Value::Callable(Function{"range", Range}));
    globals->vars.Set("namespace", Value::Callable(Function{"namespace", [this](Args& args, Budget&) {
                                                              Value ns = Value::NewNamespace(ObjectOf("namespace", args));
                                                              namespaces_.push_back(ns);
                                                              return ns;
                                                            }}));
    for (const char* name : {"cycler", "joiner", "lipsum"}) {
      const std::string refused = name;
      globals->vars.Set(name, Value::Callable(Function{refused, [refused](Args&, Budget&) -> Value {
                                                        Fail(ErrorKind::kUnsupported, refused + "() is not supported");
                                                      }}));
    }
    globals->vars.Set("dict", Value::Callable(Function{"dict", [](Args& args, Budget&) {
                                                         return Value::Dict(ObjectOf("dict", args));
                                                       }}));
  }

  // The attributes namespace(...) and dict(...) get: a dict argument, then keywords.
  static Object ObjectOf(const char* function, Args& args) {
    Object object;
    if (args.positional.size() > 1)
      Fail(ErrorKind::kRender, std::string(function) + "() takes at most one positional argument");
    if (!args.positional.empty()) {
      if (!args.positional[0].is_dict())
        Fail(ErrorKind::kUnsupported, std::string(function) + "() of a " + TypeName(args.positional[0]) +
                                          " is not supported (a dict or keywords only)");
      object = args.positional[0].dict();
    }
    for (auto& [key, value] : args.keyword) object.Set(key, std::move(value));
    return object;
  }

  static Value Range(Args& args, Budget& budget) {
    if (!args.keyword.empty()) Fail(ErrorKind::kRender, "range() takes no keyword arguments");
    const std::vector<Value>& p = args.positional;
    if (p.empty() || p.size() > 3) Fail(ErrorKind::kRender, "range() takes 1 to 3 arguments");
    for (const Value& v : p)
      if (!v.is_integral()) Fail(ErrorKind::kRender, std::string("range() needs integers, got ") + TypeName(v));
    const int64_t start = p.size() == 1 ? 0 : p[0].as_int();
    const int64_t stop = p.size() == 1 ? p[0].as_int() : p[1].as_int();
    const int64_t step = p.size() == 3 ? p[2].as_int() : 1;
    if (step == 0) Fail(ErrorKind::kRender, "range() arg 3 must not be zero");
    // The count, in wide arithmetic so that no bound can overflow.
    const __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
    const __int128 stride = step > 0 ? step : -static_cast<__int128>(step);
    const __int128 count = span <= 0 ? 0 : (span + stride - 1) / stride;
    if (count > kMaxRange)
      Fail(ErrorKind::kLimit, "range() of " + std::to_string(static_cast<long long>(std::min<__int128>(count, INT64_MAX))) +
                                  " items: the sandbox allows " + std::to_string(kMaxRange) + " at most");
    std::vector<Value> items;
    for (__int128 i = 0; i < count; ++i) items.push_back(Value::Int(static_cast<int64_t>(start + i * step)));
    budget.ChargeItems(items.size());
    return Value::List(std::move(items), Value::ListShape::kView);
  }

  // ---------------------------------------------------------------- statements

  Flow ExecBody(const Body& body, const ScopePtr& scope) {
    for (const StmtPtr& s : body) {
      const Flow flow = Exec(*s, scope);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow Exec(const Stmt& s, const ScopePtr& scope) {
    const Depth depth(this);
    budget_.Charge(1);
    try {
      return ExecNode(s, scope);
    } catch (Error& e) {
      if (!e.position) e.position = s.position;
      throw;
    }
  }

  Flow ExecNode(const Stmt& s, const ScopePtr& scope) {
    switch (s.kind) {
      case Stmt::Kind::kText: Emit(s.text); return Flow::kNormal;
      case Stmt::Kind::kOutput: Emit(Str(Eval(*s.expr, *scope), budget_.limits().max_output_bytes)); return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (const auto& [condition, body] : s.branches)
          if (!condition || Truthy(Eval(*condition, *scope))) return ExecBody(body, scope);
        return Flow::kNormal;
      case Stmt::Kind::kFor: ExecFor(s, scope); return Flow::kNormal;
      case Stmt::Kind::kSet: Assign(s.target, Eval(*s.expr, *scope), scope.get()); return Flow::kNormal;
      case Stmt::Kind::kSetBlock: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        Assign(s.target, Value::String(Capture(s.body, inner)), scope.get());
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro: DefineMacro(s, scope); return Flow::kNormal;
      case Stmt::Kind::kBreak: return Flow::kBreak;
      case Stmt::Kind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void Emit(std::string_view text) {
    out_->append(text);
    if (out_->size() > budget_.limits().max_output_bytes)
      Fail(ErrorKind::kLimit, "the rendered text is longer than " + std::to_string(budget_.limits().max_output_bytes) +
                                  " bytes");
    budget_.Charge(static_cast<int64_t>(text.size() / 64));
  }

  // What `body` renders in `scope`, into a string of its own.
  std::string Capture(const Body& body, const ScopePtr& scope) {
    std::string captured;
    std::string* outer = out_;
    out_ = &captured;
    try {
      ExecBody(body, scope);
    } catch (...) {
      out_ = outer;
      throw;
    }
    out_ = outer;
    return captured;
  }

  // Binds `value` to `target` in `scope` (unpacking several names).
  void Assign(const Target& target, const Value& value, Scope* scope) {
    if (!target.attribute.empty()) {
      const Value* ns = scope->Find(target.names[0]);
      if (!ns || ns->kind() != Value::Kind::kNamespace)
        Fail(ErrorKind::kRender, "cannot assign attribute on non-namespace object '" + target.names[0] + "'");
      ns->ns().attributes.Set(target.attribute, value);
      return;
    }
    if (target.names.size() == 1) {
      scope->vars.Set(target.names[0], value);
      return;
    }
    const std::vector<Value> items = Iterate(value);
    if (items.size() != target.names.size())
      Fail(ErrorKind::kRender, std::string(items.size() > target.names.size() ? "too many" : "not enough") +
                                   " values to unpack (expected " + std::to_string(target.names.size()) + ", got " +
                                   std::to_string(items.size()) + ")");
    for (size_t i = 0; i < items.size(); ++i) scope->vars.Set(target.names[i], items[i]);
  }

  void ExecFor(const Stmt& s, const ScopePtr& scope) {
    std::vector<Value> items = Iterate(Eval(*s.expr, *scope));
    budget_.ChargeItems(items.size());
    if (s.filter) {
      std::vector<Value> kept;
      for (Value& item : items) {
        Scope probe;
        probe.parent = scope;
        Assign(s.target, item, &probe);
        if (Truthy(Eval(*s.filter, probe))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      ExecBody(s.else_body, scope);
      return;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      auto iteration = std::make_shared<Scope>();
      iteration->parent = scope;
      Assign(s.target, items[static_cast<size_t>(i)], iteration.get());
      iteration->vars.Set("loop", LoopObject(items, i));
      if (ExecBody(s.body, iteration) == Flow::kBreak) break;
    }
  }

  static Value LoopObject(const std::vector<Value>& items, int64_t i) {
    const int64_t n = static_cast<int64_t>(items.size());
    Object loop;
    loop.Set("index0", Value::Int(i));
    loop.Set("index", Value::Int(i + 1));
    loop.Set("revindex0", Value::Int(n - i - 1));
    loop.Set("revindex", Value::Int(n - i));
    loop.Set("first", Value::Bool(i == 0));
    loop.Set("last", Value::Bool(i == n - 1));
    loop.Set("length", Value::Int(n));
    loop.Set("depth", Value::Int(1));
    loop.Set("depth0", Value::Int(0));
    if (i > 0) loop.Set("previtem", items[static_cast<size_t>(i - 1)]);
    if (i + 1 < n) loop.Set("nextitem", items[static_cast<size_t>(i + 1)]);
    loop.Set("cycle", Value::Callable(Function{"loop.cycle", [i](Args& args, Budget&) {
                                                 if (!args.keyword.empty() || args.positional.empty())
                                                   Fail(ErrorKind::kRender, "loop.cycle() needs at least one positional argument");
                                                 return args.positional[static_cast<size_t>(i) % args.positional.size()];
                                               }}));
    loop.Set("changed", Value::Callable(Function{"loop.changed", [](Args&, Budget&) -> Value {
                                                   Fail(ErrorKind::kUnsupported, "loop.changed() is not supported");
                                                 }}));
    return Value::Dict(std::move(loop));
  }

  void DefineMacro(const Stmt& s, const ScopePtr& scope) {
    const Stmt* macro = &s;
    Value function = Value::Callable(Function{"macro '" + s.text + "'", [this, macro, scope](Args& args, Budget&) {
                                                return CallMacro(*macro, scope, args);
                                              }});
    scope->vars.Set(s.text, std::move(function));
    macro_scopes_.push_back(scope);
  }

  Value CallMacro(const Stmt& macro, const ScopePtr& defined_in, Args& args) {
    const Depth depth(this);
    const std::string name = "macro '" + macro.text + "'";
    if (args.positional.size() > macro.params.size())
      Fail(ErrorKind::kRender, name + " takes " + std::to_string(macro.params.size()) + " arguments, got " +
                                   std::to_string(args.positional.size()));
    auto call = std::make_shared<Scope>();
    call->parent = defined_in;
    std::vector<bool> given(macro.params.size(), false);
    for (size_t i = 0; i < args.positional.size(); ++i) {
      call->vars.Set(macro.params[i].name, args.positional[i]);
      given[i] = true;
    }
    for (auto& [key, value] : args.keyword) {
      size_t i = 0;
      while (i < macro.params.size() && macro.params[i].name != key) ++i;
      if (i == macro.params.size()) Fail(ErrorKind::kRender, name + " has no argument '" + key + "'");
      if (given[i]) Fail(ErrorKind::kRender, name + " got argument '" + key + "' twice");
      call->vars.Set(key, value);
      given[i] = true;
    }
    for (size_t i = 0; i < macro.params.size(); ++i) {
      if (given[i]) continue;
      const MacroParam& p = macro.params[i];
      call->vars.Set(p.name, p.default_value ? Eval(*p.default_value, *call)
                                             : Value::Undefined("parameter '" + p.name + "' was not provided"));
    }
    return Value::String(Capture(macro.body, call));
  }

  // ---------------------------------------------------------------- expressions

  Value Eval(const Expr& e, Scope& scope) {
    const Depth depth(this);
    budget_.Charge(1);
    try {
      return EvalNode(e, scope);
    } catch (Error& error) {
      if (!error.position) error.position = e.position;
      throw;
    }
  }

  Value EvalNode(const Expr& e, Scope& scope) {
    const auto operand = [&](size_t i) { return Eval(*e.operands[i], scope); };
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.literal;
      case Expr::Kind::kName:
        if (const Value* v = scope.Find(e.name)) return *v;
        return Value::Undefined("'" + e.name + "' is undefined");
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        std::vector<Value> items;
        for (const ExprPtr& item : e.operands) items.push_back(Eval(*item, scope));
        budget_.ChargeItems(items.size());
        return Value::List(std::move(items),
                           e.kind == Expr::Kind::kTuple ? Value::ListShape::kTuple : Value::ListShape::kList);
      }
      case Expr::Kind::kDict: {
        Object object;
        for (size_t i = 0; i + 1 < e.operands.size(); i += 2) {
          const Value key = operand(i);
          if (!key.is_string())
            Fail(ErrorKind::kUnsupported, std::string("dict keys other than strings are not supported, got ") + TypeName(key));
          object.Set(key.as_string(), operand(i + 1));
        }
        budget_.ChargeItems(object.entries().size());
        return Value::Dict(std::move(object));
      }
      case Expr::Kind::kAttribute: return GetAttribute(operand(0), e.name);
      case Expr::Kind::kItem: {
        const Value object = operand(0);
        if (object.is_string()) budget_.Charge(ScanCost(object));  // indexing a str decodes it
        return GetItem(object, operand(1));
      }
      case Expr::Kind::kSlice: {
        const Value object = operand(0);
        budget_.Charge(ScanCost(object));
        const auto bound = [&](size_t i) { return e.operands[i] ? operand(i) : Value::None(); };
        return GetSlice(object, bound(1), bound(2), bound(3), budget_);
      }
      case Expr::Kind::kCall: return Call(e, scope);
      case Expr::Kind::kFilter: return ApplyFilter(e.name, operand(0), ArgsOf(e, scope), budget_);
      case Expr::Kind::kTest: {
        const Value subject = operand(0);
        Args args = ArgsOf(e, scope);
        budget_.Charge(ScanCost(subject));
        for (const Value& arg : args.positional) budget_.Charge(ScanCost(arg));
        if (e.name == "in" && subject.is_string() && !args.positional.empty() && args.positional[0].is_string())
          budget_.ChargeSearch(args.positional[0].as_string().size(), subject.as_string().size());
        return Value::Bool(ApplyTest(e.name, subject, std::move(args)) != e.negated);
      }
      case Expr::Kind::kUnary: return Unary(e.name, operand(0));
      case Expr::Kind::kBinary:
        if (e.name == "and") {
          Value left = operand(0);
          return Truthy(left) ? operand(1) : left;
        }
        if (e.name == "or") {
          Value left = operand(0);
          return Truthy(left) ? left : operand(1);
        }
        return Binary(e.name, operand(0), operand(1));
      case Expr::Kind::kCompare: {
        Value left = operand(0);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = operand(i + 1);
          if (!CompareOp(e.ops[i], left, right)) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kCondition:
        if (Truthy(operand(0))) return operand(1);
        if (e.operands[2]) return operand(2);
        return Value::Undefined("the inline if expression evaluated to false and no else section was defined");
    }
    return Value();
  }

  // The arguments of a call, filter or test: operands 1.. and the keywords.
  Args ArgsOf(const Expr& e, Scope& scope) {
    Args args;
    for (size_t i = 1; i < e.operands.size(); ++i) args.positional.push_back(Eval(*e.operands[i], scope));
    for (const auto& [key, value] : e.keywords) args.keyword.emplace_back(key, Eval(*value, scope));
    return args;
  }

  Value Call(const Expr& e, Scope& scope) {
    const Value callee = Eval(*e.operands[0], scope);
    if (callee.is_undefined()) FailUndefined(callee);
    if (callee.kind() != Value::Kind::kFunction)
      Fail(ErrorKind::kRender, "'" + std::string(TypeName(callee)) + "' object is not callable");
    Args args = ArgsOf(e, scope);
    Value out = callee.function().call(args, budget_);
    if (out.is_string()) budget_.CheckString(out.as_string().size());
    return out;
  }

  static Value Unary(const std::string& op, const Value& v) {
    if (op == "not") return Value::Bool(!Truthy(v));
    if (v.is_undefined()) FailUndefined(v);
    if (!v.is_number()) Fail(ErrorKind::kRender, "bad operand type for unary " + op + ": '" + TypeName(v) + "'");
    if (op == "+") return v.kind() == Value::Kind::kFloat ? v : Value::Int(v.as_int());
    if (v.kind() == Value::Kind::kFloat) return Value::Float(-v.as_double());
    if (v.as_int() == std::numeric_limits<int64_t>::min()) FailOverflow();
    return Value::Int(-v.as_int());
  }

  Value Binary(const std::string& op, const Value& a, const Value& b) {
    if (op == "~") return Concat(Str(a, budget_.limits().max_output_bytes), Str(b, budget_.limits().max_output_bytes));
    if (a.is_undefined()) FailUndefined(a);
    if (b.is_undefined()) FailUndefined(b);
    if (a.is_number() && b.is_number()) return Arithmetic(op, a, b);
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Concat(a.as_string(), b.as_string());
      if (a.is_list() && b.is_list() && a.shape() == b.shape() &&
          (a.shape() == Value::ListShape::kList || a.shape() == Value::ListShape::kTuple)) {
        std::vector<Value> items = a.items();
        items.insert(items.end(), b.items().begin(), b.items().end());
        budget_.ChargeItems(items.size());
        return Value::List(std::move(items), a.shape());
      }
    }
    if (op == "*") {
      if (a.is_integral() && (b.is_string() || b.is_list())) return Repeat(b, a.as_int());
      if (b.is_integral() && (a.is_string() || a.is_list())) return Repeat(a, b.as_int());
    }
    if (op == "%" && a.is_string()) {
      budget_.Charge(ScanCost(a));
      return Format(a.as_string(), b);
    }
    FailOperands(op, a, b);
  }

  Value Concat(const std::string& a, const std::string& b) {
    budget_.CheckString(a.size() + b.size());
    budget_.Charge(static_cast<int64_t>((a.size() + b.size()) / 64));
    return Value::String(a + b);
  }

  Value Repeat(const Value& v, int64_t times) {
    if (times < 0) times = 0;
    if (v.is_string()) {
      const std::string& s = v.as_string();
      if (!s.empty() && static_cast<uint64_t>(times) > budget_.limits().max_output_bytes / s.size())
        budget_.CheckString(SIZE_MAX);
      budget_.CheckString(s.size() * static_cast<size_t>(times));
      budget_.Charge(static_cast<int64_t>(s.size() * static_cast<size_t>(times) / 64));
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += s;
      return Value::String(std::move(out));
    }
    if (v.shape() != Value::ListShape::kList && v.shape() != Value::ListShape::kTuple)
      Fail(ErrorKind::kRender, std::string("unsupported operand types for *: '") + TypeName(v) + "' and 'int'");
    const std::vector<Value>& items = v.items();
    if (!items.empty() && static_cast<uint64_t>(times) > budget_.limits().max_items / items.size())
      budget_.ChargeItems(SIZE_MAX);
    budget_.ChargeItems(items.size() * static_cast<size_t>(times));
    std::vector<Value> out;
    for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
    return Value::List(std::move(out), v.shape());
  }

  // printf-style "%s" % value: %s, %r, %d, %i and %%, without flags or widths.
  Value Format(const std::string& format, const Value& arg) {
    const std::vector<Value> values = arg.is_tuple() ? arg.items() : std::vector<Value>{arg};
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < format.size(); ++i) {
      if (format[i] != '%') {
        out.push_back(format[i]);
        continue;
      }
      if (i + 1 >= format.size()) Fail(ErrorKind::kRender, "incomplete format");
      const char spec = format[++i];
      if (spec == '%') {
        out.push_back('%');
        continue;
      }
      if (spec != 's' && spec != 'r' && spec != 'd' && spec != 'i')
        Fail(ErrorKind::kUnsupported, std::string("the format %") + spec + " is not supported (%s, %r, %d, %i only)");
      if (next >= values.size()) Fail(ErrorKind::kRender, "not enough arguments for format string");
      const Value& v = values[next++];
      if (spec == 's') {
        out += Str(v, budget_.limits().max_output_bytes);
      } else if (spec == 'r') {
        out += Repr(v, budget_.limits().max_output_bytes);
      } else {
        if (!v.is_number()) Fail(ErrorKind::kRender, std::string("%d format: a number is required, not ") + TypeName(v));
        out += std::to_string(v.is_integral() ? v.as_int() : static_cast<int64_t>(std::trunc(v.as_double())));
      }
      budget_.CheckString(out.size());
    }
    if (next < values.size()) Fail(ErrorKind::kRender, "not all arguments converted during string formatting");
    return Value::String(std::move(out));
  }

  static Value Arithmetic(const std::string& op, const Value& a, const Value& b) {
    if (a.is_integral() && b.is_integral() && op != "/") {
      const int64_t x = a.as_int(), y = b.as_int();
      int64_t r;
      if (op == "+") {
        if (__builtin_add_overflow(x, y, &r)) FailOverflow();
        return Value::Int(r);
      }
      if (op == "-") {
        if (__builtin_sub_overflow(x, y, &r)) FailOverflow();
        return Value::Int(r);
      }
      if (op == "*") {
        if (__builtin_mul_overflow(x, y, &r)) FailOverflow();
        return Value::Int(r);
      }
      if (op == "//") return Value::Int(FloorDiv(x, y));
      if (op == "%") return Value::Int(FloorMod(x, y));
      if (op == "**") {
        if (y >= 0) return Value::Int(IntPow(x, y));
        if (x == 0) Fail(ErrorKind::kRender, "0.0 cannot be raised to a negative power");
        return Value::Float(std::pow(static_cast<double>(x), static_cast<double>(y)));
      }
    }
    const double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value::Float(x + y);
    if (op == "-") return Value::Float(x - y);
    if (op == "*") return Value::Float(x * y);
    if (op == "/") {
      if (y == 0) Fail(ErrorKind::kRender, "division by zero");
      return Value::Float(x / y);
    }
    if (op == "//") return Value::Float(FloatFloorDiv(x, y));
    if (op == "%") return Value::Float(FloatMod(x, y));
    if (op == "**") {
      if (x == 0 && y < 0) Fail(ErrorKind::kRender, "0.0 cannot be raised to a negative power");
      if (x < 0 && y != std::floor(y)) Fail(ErrorKind::kUnsupported, "a negative number to a fractional power (complex)");
      return Value::Float(std::pow(x, y));
    }
    FailOperands(op, a, b);
  }

  bool CompareOp(const std::string& op, const Value& a, const Value& b) {
    if ((op == "in" || op == "notin") && a.is_string() && b.is_string()) {
      budget_.ChargeSearch(b.as_string().size(), a.as_string().size());
    } else {
      budget_.Charge(ScanCost(a) + ScanCost(b));
    }
    if (op == "==") return Equal(a, b);
    if (op == "!=") return !Equal(a, b);
    if (op == "in") return Contains(b, a);
    if (op == "notin") return !Contains(b, a);
    const int c = Compare(a, b, op);
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
  }

  Budget budget_;
  std::string* out_ = nullptr;  // where text goes: the output, or a set block's or macro's own
  int depth_ = 0;
  std::vector<Value> namespaces_;        // every namespace() made
  std::vector<ScopePtr> macro_scopes_;  // every scope a macro was defined in
};

}  // namespace

std::string Render(const Body& body, const Object& variables, const RenderLimits& limits) {
  return Evaluator(limits).Run(body, variables);
}

}  // namespace flover::jinja
