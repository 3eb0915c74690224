#include "common/jinja/json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/jinja/error.h"
#include "common/jinja/text.h"

namespace flover::jinja {

namespace {

constexpr int kMaxJsonDepth = 256;

void FailTooDeep() { Fail(ErrorKind::kLimit, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels"); }

Value FromJsonAt(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxJsonDepth) FailTooDeep();
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::None();
    case nlohmann::ordered_json::value_t::boolean: return Value::Bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::Int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        Fail(ErrorKind::kUnsupported, "the integer " + std::to_string(u) + " is too large (int64 at most)");
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::Float(json.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::String(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(FromJsonAt(item, depth + 1));
      return Value::List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object object;
      for (const auto& [key, item] : json.items()) object.Set(key, FromJsonAt(item, depth + 1));
      return Value::Dict(std::move(object));
    }
    default: break;
  }
  Fail(ErrorKind::kUnsupported, std::string("JSON values of type ") + json.type_name() + " are not supported");
}

std::string FloatJson(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return FloatRepr(d);
}

void Write(const Value& v, const JsonFormat& f, int depth, std::string* out) {
  if (depth > kMaxJsonDepth) FailTooDeep();
  if (out->size() > f.max_bytes)
    Fail(ErrorKind::kLimit, "the JSON text is longer than " + std::to_string(f.max_bytes) + " bytes");
  const auto newline = [&](int level) {
    if (!f.indent) return;
    out->push_back('\n');
    for (int i = 0; i < level; ++i) out->append(*f.indent);
  };
  switch (v.kind()) {
    case Value::Kind::kNone: *out += "null"; return;
    case Value::Kind::kBool: *out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::kInt: *out += std::to_string(v.as_int()); return;
    case Value::Kind::kFloat: *out += FloatJson(v.as_double()); return;
    case Value::Kind::kString: *out += JsonQuote(v.as_string(), f.ensure_ascii); return;
    case Value::Kind::kList: {
      if (v.shape() == Value::ListShape::kView || v.shape() == Value::ListShape::kIterator) break;
      const std::vector<Value>& items = v.items();
      if (items.empty()) {
        *out += "[]";
        return;
      }
      out->push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) *out += f.item_separator;
        newline(depth + 1);
        Write(items[i], f, depth + 1, out);
      }
      newline(depth);
      out->push_back(']');
      return;
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : v.dict().entries()) entries.push_back(&entry);
      if (entries.empty()) {
        *out += "{}";
        return;
      }
      if (f.sort_keys)
        std::sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) *out += f.item_separator;
        newline(depth + 1);
        *out += JsonQuote(entries[i]->first, f.ensure_ascii) + f.key_separator;
        Write(entries[i]->second, f, depth + 1, out);
      }
      newline(depth);
      out->push_back('}');
      return;
    }
    default: break;
  }
  Fail(ErrorKind::kRender, std::string("Object of type ") + TypeName(v) + " is not JSON serializable");
}

}  // namespace

Value FromJson(const nlohmann::ordered_json& json) { return FromJsonAt(json, 0); }

std::string ToJson(const Value& value, const JsonFormat& format) {
  std::string out;
  Write(value, format, 0, &out);
  if (out.size() > format.max_bytes)
    Fail(ErrorKind::kLimit, "the JSON text is longer than " + std::to_string(format.max_bytes) + " bytes");
  return out;
}

}  // namespace flover::jinja
