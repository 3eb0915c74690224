#include "common/jinja/access.h"

#include <limits>

#include "common/jinja/error.h"
#include "common/jinja/methods.h"
#include "common/jinja/text.h"

namespace flover::jinja {

namespace {

// jinja2's object_type_repr: "None", "dict object", ...
std::string ObjectName(const Value& v) { return v.is_none() ? "None" : std::string(TypeName(v)) + " object"; }

Value MissingAttribute(const Value& object, const std::string& name) {
  return Value::Undefined("'" + ObjectName(object) + "' has no attribute '" + name + "'");
}

Value MissingItem(const Value& object, const Value& key) {
  if (key.is_string()) return MissingAttribute(object, key.as_string());
  return Value::Undefined("'" + ObjectName(object) + "' has no element " + Repr(key, 200));
}

// items[index] with Python's negative indices, or nullopt when out of range.
template <typename Sequence>
std::optional<size_t> PythonIndex(const Sequence& items, int64_t index) {
  const int64_t n = static_cast<int64_t>(items.size());
  if (index < 0) index += n;
  if (index < 0 || index >= n) return std::nullopt;
  return static_cast<size_t>(index);
}

[[noreturn]] void FailNotIterable(const Value& v) {
  Fail(ErrorKind::kRender, "'" + std::string(TypeName(v)) + "' object is not iterable");
}

[[noreturn]] void FailPartlyUsed() {
  Fail(ErrorKind::kUnsupported,
       "using a generator (what map, select, ... return) again after |first took an item from it is not supported; "
       "apply |list first");
}

std::optional<int64_t> SliceBound(const Value& v) {
  if (v.is_undefined() || v.is_none()) return std::nullopt;
  if (!v.is_integral()) Fail(ErrorKind::kRender, "slice indices must be integers or none, got " + std::string(TypeName(v)));
  return v.as_int();
}

// The indices a slice of a sequence of `length` selects, as Python computes them.
std::vector<size_t> SliceIndices(int64_t length, std::optional<int64_t> start_in, std::optional<int64_t> stop_in,
                                 int64_t step, Budget& budget) {
  if (step == 0) Fail(ErrorKind::kRender, "slice step cannot be zero");
  if (step < -std::numeric_limits<int64_t>::max()) step = -std::numeric_limits<int64_t>::max();
  const auto adjust = [&](std::optional<int64_t> bound, bool is_start) {
    if (!bound) return is_start ? (step > 0 ? 0 : length - 1) : (step > 0 ? length : int64_t{-1});
    int64_t i = *bound;
    if (i < 0) {
      i += length;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= length) {
      i = step < 0 ? length - 1 : length;
    }
    return i;
  };
  const int64_t start = adjust(start_in, true);
  const int64_t stop = adjust(stop_in, false);
  std::vector<size_t> out;
  if (step > 0 ? start >= stop : start <= stop) return out;
  for (int64_t i = start;;) {
    out.push_back(static_cast<size_t>(i));
    if (step > 0 ? step >= stop - i : -step >= i - stop) break;
    i += step;
  }
  budget.ChargeItems(out.size());
  return out;
}

}  // namespace

Value GetAttribute(const Value& object, const std::string& name) {
  if (object.is_undefined()) FailUndefined(object);
  if (std::optional<Value> method = FindMethod(object, name)) return *method;
  if (object.is_dict()) {
    if (const Value* v = object.dict().Find(name)) return *v;
  } else if (object.kind() == Value::Kind::kNamespace) {
    if (const Value* v = object.ns().attributes.Find(name)) return *v;
  }
  return MissingAttribute(object, name);
}

Value GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) FailUndefined(object);
  switch (object.kind()) {
    case Value::Kind::kDict:
      if (key.is_string()) {
        if (const Value* v = object.dict().Find(key.as_string())) return *v;
      }
      break;
    case Value::Kind::kList:
      if (object.shape() == Value::ListShape::kView)
        Fail(ErrorKind::kUnsupported, "subscripting a dict view or range is not supported (use |list)");
      if (object.shape() == Value::ListShape::kIterator) break;
      if (key.is_integral()) {
        if (std::optional<size_t> i = PythonIndex(object.items(), key.as_int())) return object.items()[*i];
        return MissingItem(object, key);
      }
      break;
    case Value::Kind::kString:
      if (key.is_integral()) {
        const std::u32string text = Decode(object.as_string());
        if (std::optional<size_t> i = PythonIndex(text, key.as_int()))
          return Value::String(Encode(std::u32string_view(text).substr(*i, 1)));
        return MissingItem(object, key);
      }
      break;
    case Value::Kind::kNamespace:
      if (key.is_string()) return GetAttribute(object, key.as_string());
      break;
    default: break;
  }
  if (key.is_string()) {
    if (std::optional<Value> method = FindMethod(object, key.as_string())) return *method;
  }
  return MissingItem(object, key);
}

Value GetSlice(const Value& object, const Value& start, const Value& stop, const Value& step, Budget& budget) {
  if (object.is_undefined()) FailUndefined(object);
  const std::optional<int64_t> first = SliceBound(start), last = SliceBound(stop);
  const int64_t stride = SliceBound(step).value_or(1);
  if (object.is_string()) {
    const std::u32string text = Decode(object.as_string());
    std::u32string out;
    for (size_t i : SliceIndices(static_cast<int64_t>(text.size()), first, last, stride, budget)) out.push_back(text[i]);
    return Value::String(Encode(out));
  }
  if (object.is_list()) {
    if (object.shape() == Value::ListShape::kView)
      Fail(ErrorKind::kUnsupported, "slicing a dict view or range is not supported (use |list)");
    if (object.shape() == Value::ListShape::kIterator) return MissingAttribute(object, "slice");
    std::vector<Value> out;
    const std::vector<Value>& items = object.items();
    for (size_t i : SliceIndices(static_cast<int64_t>(items.size()), first, last, stride, budget)) out.push_back(items[i]);
    return Value::List(std::move(out), object.shape());
  }
  return Value::Undefined("'" + ObjectName(object) + "' cannot be sliced");
}

std::vector<Value> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList:
      if (v.shape() == Value::ListShape::kIterator) {
        switch (v.iterator_state()) {
          case Value::IteratorState::kFresh: v.set_iterator_state(Value::IteratorState::kUsedUp); return v.items();
          case Value::IteratorState::kUsedUp: return {};
          case Value::IteratorState::kPartlyUsed: FailPartlyUsed();
        }
      }
      return v.items();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().entries().size());
      for (const auto& entry : v.dict().entries()) keys.push_back(Value::String(entry.first));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t c : Decode(v.as_string())) chars.push_back(Value::String(Encode(std::u32string(1, c))));
      return chars;
    }
    default: FailNotIterable(v);
  }
}

std::optional<Value> FirstItem(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return std::nullopt;
    case Value::Kind::kList: {
      const std::vector<Value>& items = v.items();
      if (v.shape() == Value::ListShape::kIterator) {
        if (v.iterator_state() == Value::IteratorState::kPartlyUsed) FailPartlyUsed();
        if (v.iterator_state() == Value::IteratorState::kUsedUp) return std::nullopt;
        v.set_iterator_state(items.size() > 1 ? Value::IteratorState::kPartlyUsed : Value::IteratorState::kUsedUp);
      }
      if (items.empty()) return std::nullopt;
      return items[0];
    }
    case Value::Kind::kDict:
      if (v.dict().entries().empty()) return std::nullopt;
      return Value::String(v.dict().entries()[0].first);
    case Value::Kind::kString: {
      if (v.as_string().empty()) return std::nullopt;
      size_t length;
      DecodeAt(v.as_string(), 0, &length);
      return Value::String(v.as_string().substr(0, length));
    }
    default: FailNotIterable(v);
  }
}

int64_t Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(CharCount(v.as_string()));
    case Value::Kind::kList:
      if (v.shape() == Value::ListShape::kIterator) break;
      return static_cast<int64_t>(v.items().size());
    case Value::Kind::kDict: return static_cast<int64_t>(v.dict().entries().size());
    default: break;
  }
  Fail(ErrorKind::kRender, "object of type '" + std::string(TypeName(v)) + "' has no len()");
}

bool Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (!item.is_string())
        Fail(ErrorKind::kRender, "'in <string>' requires a string as left operand, not " + std::string(TypeName(item)));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      if (container.shape() == Value::ListShape::kIterator)
        Fail(ErrorKind::kUnsupported, "'in' on a generator (what map, select, ... return) is not supported; use |list");
      for (const Value& v : container.items())
        if (Equal(v, item)) return true;
      return false;
    case Value::Kind::kDict:
      if (item.is_list() || item.is_dict()) Fail(ErrorKind::kRender, "unhashable type: '" + std::string(TypeName(item)) + "'");
      return item.is_string() && container.dict().Find(item.as_string()) != nullptr;
    default: break;
  }
  Fail(ErrorKind::kRender, "argument of type '" + std::string(TypeName(container)) + "' is not iterable");
}

int64_t ScanCost(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString: return static_cast<int64_t>(v.as_string().size() / 64) + 1;
    case Value::Kind::kList: return static_cast<int64_t>(v.items().size()) + 1;
    case Value::Kind::kDict: return static_cast<int64_t>(v.dict().entries().size()) + 1;
    default: return 1;
  }
}

}  // namespace flover::jinja
