#include "common/jinja/function.h"

#include "common/jinja/error.h"

namespace flover::jinja {

BoundArgs::BoundArgs(std::string_view function, Args args, const std::vector<std::string_view>& params)
    : function_(function), params_(params.begin(), params.end()), slots_(params.size()) {
  if (args.positional.size() > params_.size())
    Fail(ErrorKind::kRender, function_ + " takes at most " + std::to_string(params_.size()) + " arguments, got " +
                                 std::to_string(args.positional.size()));
  for (size_t i = 0; i < args.positional.size(); ++i) slots_[i] = std::move(args.positional[i]);
  for (auto& [name, value] : args.keyword) {
    size_t i = 0;
    while (i < params_.size() && params_[i] != name) ++i;
    if (i == params_.size()) Fail(ErrorKind::kRender, function_ + " has no argument '" + name + "'");
    if (slots_[i]) Fail(ErrorKind::kRender, function_ + " got argument '" + name + "' twice");
    slots_[i] = std::move(value);
  }
}

const Value& BoundArgs::Required(size_t i) const {
  if (!slots_[i]) Fail(ErrorKind::kRender, function_ + " needs argument '" + params_[i] + "'");
  return *slots_[i];
}

void BoundArgs::WrongType(size_t i, const char* expected) const {
  Fail(ErrorKind::kRender, function_ + ": argument '" + params_[i] + "' must be " + expected + ", got " +
                               TypeName(*slots_[i]));
}

std::optional<std::string> BoundArgs::String(size_t i) const {
  if (!slots_[i]) return std::nullopt;
  if (!slots_[i]->is_string()) WrongType(i, "a string");
  return slots_[i]->as_string();
}

std::optional<int64_t> BoundArgs::Integer(size_t i, bool none_ok) const {
  if (!slots_[i] || (none_ok && slots_[i]->is_none())) return std::nullopt;
  if (!slots_[i]->is_integral()) WrongType(i, "an integer");
  return slots_[i]->as_int();
}

std::optional<bool> BoundArgs::Boolean(size_t i) const {
  if (!slots_[i]) return std::nullopt;
  return Truthy(*slots_[i]);
}

}  // namespace flover::jinja
