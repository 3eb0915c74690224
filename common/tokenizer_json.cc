#include "common/tokenizer_json.h"

#include <nlohmann/json.hpp>

#include <unordered_map>
#include <utility>
#include <vector>

#include "common/bpe_merges.h"
#include "common/normalizer.h"
#include "common/pretokenizer.h"
#include "common/unicode_regex.h"
#include "common/utf8.h"

namespace flover {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxMerges = size_t{1} << 22;
constexpr size_t kMaxTokenBytes = size_t{64} << 10;
constexpr int kMaxSequenceDepth = 8;

// A JSON value being read: the file's name and the value's path, for messages.
class Field {
 public:
  Field(const Json& value, const std::string& file, std::string path)
      : value_(value), file_(file), path_(std::move(path)) {}

  const Json& value() const { return value_; }
  const std::string& path() const { return path_; }
  bool is_null() const { return value_.is_null(); }

  Status Malformed(const std::string& what) const { return Corruption(file_ + ": " + path_ + " " + what); }
  Status Unsupported(const std::string& what) const {
    return InvalidArgument(file_ + ": " + path_ + " " + what);
  }

  // A member; absent members read as null.
  Field operator[](const std::string& key) const {
    static const Json kNull;
    const std::string path = path_.empty() ? key : path_ + "." + key;
    if (!value_.is_object()) return Field(kNull, file_, path);
    const auto it = value_.find(key);
    return Field(it == value_.end() ? kNull : *it, file_, path);
  }
  Field At(size_t i) const { return Field(value_[i], file_, path_ + "[" + std::to_string(i) + "]"); }

  Status ExpectObject() const {
    if (!value_.is_object()) return Malformed("must be an object, got " + Shown());
    return Status::Ok();
  }
  Status ExpectArray(size_t max_size) const {
    if (!value_.is_array()) return Malformed("must be an array, got " + Shown());
    if (value_.size() > max_size)
      return Unsupported("has " + std::to_string(value_.size()) + " entries; at most " + std::to_string(max_size) +
                         " are read");
    return Status::Ok();
  }
  Result<std::string> String() const {
    if (!value_.is_string()) return Malformed("must be a string, got " + Shown());
    const std::string& s = value_.get_ref<const std::string&>();
    if (s.size() > kMaxTokenBytes)
      return Unsupported("is a string of " + std::to_string(s.size()) + " bytes; at most " +
                         std::to_string(kMaxTokenBytes) + " are read");
    return s;
  }
  Result<std::optional<std::string>> OptionalString() const {
    if (is_null()) return std::optional<std::string>();
    FLOVER_ASSIGN_OR_RETURN(std::string s, String());
    return std::optional<std::string>(std::move(s));
  }
  Result<bool> Bool(bool fallback) const {
    if (is_null()) return fallback;
    if (!value_.is_boolean()) return Malformed("must be true or false, got " + Shown());
    return value_.get<bool>();
  }
  Result<int64_t> Int(int64_t min, int64_t max) const {
    if (!value_.is_number_integer()) return Malformed("must be an integer, got " + Shown());
    const bool fits = value_.is_number_unsigned() ? value_.get<uint64_t>() <= static_cast<uint64_t>(max)
                                                  : value_.get<int64_t>() >= min && value_.get<int64_t>() <= max;
    if (!fits)
      return Malformed("is " + Shown() + ", outside " + std::to_string(min) + ".." + std::to_string(max));
    return value_.get<int64_t>();
  }
  // The "type" member of a component.
  Result<std::string> Type() const {
    FLOVER_RETURN_IF_ERROR(ExpectObject());
    return (*this)["type"].String();
  }

  // A short rendering of the value for messages.
  std::string Shown() const {
    std::string s = value_.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
  }

 private:
  const Json& value_;
  const std::string& file_;
  std::string path_;
};

// A Split or Replace pattern: {"String": s} or {"Regex": r}.
Result<UnicodeRegex> ReadPattern(const Field& f) {
  FLOVER_RETURN_IF_ERROR(f.ExpectObject());
  if (f["String"].value().is_string()) {
    FLOVER_ASSIGN_OR_RETURN(std::string s, f["String"].String());
    return UnicodeRegex::Compile(s, /*literal=*/true);
  }
  if (f["Regex"].value().is_string()) {
    FLOVER_ASSIGN_OR_RETURN(std::string r, f["Regex"].String());
    Result<UnicodeRegex> regex = UnicodeRegex::Compile(r);
    if (!regex.ok()) return f.Unsupported(regex.status().message());
    return regex;
  }
  return f.Malformed("must be {\"String\": ...} or {\"Regex\": ...}, got " + f.Shown());
}

Result<std::string> ReadOneChar(const Field& f) {
  FLOVER_ASSIGN_OR_RETURN(std::string s, f.String());
  size_t n = 0;
  if (s.empty() || (DecodeUtf8At(s, 0, &n), n != s.size()))
    return f.Unsupported("must be one character, got " + f.Shown());
  return s;
}

Result<std::shared_ptr<const Normalizer>> ReadNormalizer(const Field& f, int depth) {
  if (f.is_null()) return std::shared_ptr<const Normalizer>();
  FLOVER_ASSIGN_OR_RETURN(const std::string type, f.Type());
  if (type == "Sequence") {
    if (depth >= kMaxSequenceDepth) return f.Unsupported("nests Sequences deeper than " + std::to_string(kMaxSequenceDepth));
    const Field list = f["normalizers"];
    FLOVER_RETURN_IF_ERROR(list.ExpectArray(64));
    std::vector<std::shared_ptr<const Normalizer>> steps;
    for (size_t i = 0; i < list.value().size(); ++i) {
      FLOVER_ASSIGN_OR_RETURN(std::shared_ptr<const Normalizer> step, ReadNormalizer(list.At(i), depth + 1));
      if (step) steps.push_back(std::move(step));
    }
    return MakeSequenceNormalizer(std::move(steps));
  }
  if (type == "Prepend") {
    FLOVER_ASSIGN_OR_RETURN(std::string prefix, f["prepend"].String());
    return MakePrependNormalizer(std::move(prefix));
  }
  if (type == "Replace") {
    FLOVER_ASSIGN_OR_RETURN(UnicodeRegex pattern, ReadPattern(f["pattern"]));
    FLOVER_ASSIGN_OR_RETURN(std::string content, f["content"].String());
    return MakeReplaceNormalizer(std::move(pattern), std::move(content));
  }
  if (type == "NFC") return MakeUnicodeNormalizer(UnicodeForm::kNfc);
  if (type == "NFD") return MakeUnicodeNormalizer(UnicodeForm::kNfd);
  if (type == "NFKC") return MakeUnicodeNormalizer(UnicodeForm::kNfkc);
  if (type == "NFKD") return MakeUnicodeNormalizer(UnicodeForm::kNfkd);
  if (type == "Strip") {
    FLOVER_ASSIGN_OR_RETURN(bool left, f["strip_left"].Bool(true));
    FLOVER_ASSIGN_OR_RETURN(bool right, f["strip_right"].Bool(true));
    return MakeStripNormalizer(left, right);
  }
  return f["type"].Unsupported("\"" + type +
                               "\" is not supported (Flover reads Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, "
                               "Strip)");
}

// Metaspace's prepend scheme: "prepend_scheme" ("always", "first", "never"), or the older
// boolean "add_prefix_space".
Result<PrependScheme> ReadPrependScheme(const Field& f) {
  if (!f["prepend_scheme"].is_null()) {
    FLOVER_ASSIGN_OR_RETURN(std::string scheme, f["prepend_scheme"].String());
    if (scheme == "always") return PrependScheme::kAlways;
    if (scheme == "first") return PrependScheme::kFirst;
    if (scheme == "never") return PrependScheme::kNever;
    return f["prepend_scheme"].Malformed("must be \"always\", \"first\" or \"never\", got " +
                                         f["prepend_scheme"].Shown());
  }
  FLOVER_ASSIGN_OR_RETURN(bool add_prefix_space, f["add_prefix_space"].Bool(true));
  return add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
}

Result<std::shared_ptr<const PreTokenizer>> ReadPreTokenizer(const Field& f, int depth) {
  if (f.is_null()) return std::shared_ptr<const PreTokenizer>();
  FLOVER_ASSIGN_OR_RETURN(const std::string type, f.Type());
  if (type == "Sequence") {
    if (depth >= kMaxSequenceDepth) return f.Unsupported("nests Sequences deeper than " + std::to_string(kMaxSequenceDepth));
    const Field list = f["pretokenizers"];
    FLOVER_RETURN_IF_ERROR(list.ExpectArray(64));
    std::vector<std::shared_ptr<const PreTokenizer>> steps;
    for (size_t i = 0; i < list.value().size(); ++i) {
      FLOVER_ASSIGN_OR_RETURN(std::shared_ptr<const PreTokenizer> step, ReadPreTokenizer(list.At(i), depth + 1));
      if (step) steps.push_back(std::move(step));
    }
    return MakeSequencePreTokenizer(std::move(steps));
  }
  if (type == "Split") {
    FLOVER_ASSIGN_OR_RETURN(UnicodeRegex pattern, ReadPattern(f["pattern"]));
    FLOVER_ASSIGN_OR_RETURN(std::string behavior_name, f["behavior"].String());
    SplitBehavior behavior;
    if (behavior_name == "Removed") {
      behavior = SplitBehavior::kRemoved;
    } else if (behavior_name == "Isolated") {
      behavior = SplitBehavior::kIsolated;
    } else if (behavior_name == "MergedWithPrevious") {
      behavior = SplitBehavior::kMergedWithPrevious;
    } else if (behavior_name == "MergedWithNext") {
      behavior = SplitBehavior::kMergedWithNext;
    } else if (behavior_name == "Contiguous") {
      behavior = SplitBehavior::kContiguous;
    } else {
      return f["behavior"].Malformed("must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous, got " +
                                     f["behavior"].Shown());
    }
    FLOVER_ASSIGN_OR_RETURN(bool invert, f["invert"].Bool(false));
    return MakeSplitPreTokenizer(std::move(pattern), behavior, invert);
  }
  if (type == "ByteLevel") {
    FLOVER_ASSIGN_OR_RETURN(bool add_prefix_space, f["add_prefix_space"].Bool(true));
    FLOVER_ASSIGN_OR_RETURN(bool use_regex, f["use_regex"].Bool(true));
    FLOVER_RETURN_IF_ERROR(f["trim_offsets"].Bool(true).status());  // offsets only
    return MakeByteLevelPreTokenizer(add_prefix_space, use_regex);
  }
  if (type == "Metaspace") {
    FLOVER_ASSIGN_OR_RETURN(std::string replacement, ReadOneChar(f["replacement"]));
    FLOVER_ASSIGN_OR_RETURN(PrependScheme scheme, ReadPrependScheme(f));
    FLOVER_ASSIGN_OR_RETURN(bool split, f["split"].Bool(true));
    return MakeMetaspacePreTokenizer(std::move(replacement), scheme, split);
  }
  if (type == "Digits") {
    FLOVER_ASSIGN_OR_RETURN(bool individual, f["individual_digits"].Bool(false));
    return MakeDigitsPreTokenizer(individual);
  }
  return f["type"].Unsupported("\"" + type +
                               "\" is not supported (Flover reads Sequence, Split, ByteLevel, Metaspace, Digits)");
}

Status ReadDecoder(const Field& f, int depth, std::vector<DecoderStep>* steps) {
  FLOVER_ASSIGN_OR_RETURN(const std::string type, f.Type());
  DecoderStep step;
  if (type == "Sequence") {
    if (depth >= kMaxSequenceDepth) return f.Unsupported("nests Sequences deeper than " + std::to_string(kMaxSequenceDepth));
    const Field list = f["decoders"];
    FLOVER_RETURN_IF_ERROR(list.ExpectArray(64));
    for (size_t i = 0; i < list.value().size(); ++i) FLOVER_RETURN_IF_ERROR(ReadDecoder(list.At(i), depth + 1, steps));
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    step.kind = DecoderStep::Kind::kByteLevel;
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    FLOVER_ASSIGN_OR_RETURN(UnicodeRegex pattern, ReadPattern(f["pattern"]));
    step.pattern = std::move(pattern);
    FLOVER_ASSIGN_OR_RETURN(step.content, f["content"].String());
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    FLOVER_ASSIGN_OR_RETURN(step.content, ReadOneChar(f["content"]));
    FLOVER_ASSIGN_OR_RETURN(const int64_t start, f["start"].Int(0, 1 << 16));
    FLOVER_ASSIGN_OR_RETURN(const int64_t stop, f["stop"].Int(0, 1 << 16));
    step.start = static_cast<int>(start);
    step.stop = static_cast<int>(stop);
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::Kind::kMetaspace;
    FLOVER_ASSIGN_OR_RETURN(step.content, ReadOneChar(f["replacement"]));
    FLOVER_ASSIGN_OR_RETURN(PrependScheme scheme, ReadPrependScheme(f));
    step.strip_first = scheme != PrependScheme::kNever;
  } else {
    return f["type"].Unsupported("\"" + type +
                                 "\" is not supported (Flover reads Sequence, ByteLevel, Replace, ByteFallback, Fuse, "
                                 "Strip, Metaspace)");
  }
  steps->push_back(std::move(step));
  return Status::Ok();
}

// The token TemplateProcessing puts before $A (its BOS), -1 when none.
Result<int> ReadPostProcessor(const Field& f, int depth) {
  if (f.is_null()) return -1;
  FLOVER_ASSIGN_OR_RETURN(const std::string type, f.Type());
  if (type == "ByteLevel") return -1;
  if (type == "Sequence") {
    if (depth >= kMaxSequenceDepth) return f.Unsupported("nests Sequences deeper than " + std::to_string(kMaxSequenceDepth));
    const Field list = f["processors"];
    FLOVER_RETURN_IF_ERROR(list.ExpectArray(64));
    int bos = -1;
    for (size_t i = 0; i < list.value().size(); ++i) {
      FLOVER_ASSIGN_OR_RETURN(int b, ReadPostProcessor(list.At(i), depth + 1));
      if (b >= 0) bos = b;
    }
    return bos;
  }
  if (type != "TemplateProcessing")
    return f["type"].Unsupported("\"" + type + "\" is not supported (Flover reads TemplateProcessing, ByteLevel, Sequence)");
  const Field single = f["single"];
  FLOVER_RETURN_IF_ERROR(single.ExpectArray(64));
  std::vector<int> before;  // ids before $A
  for (size_t i = 0; i < single.value().size(); ++i) {
    const Field item = single.At(i);
    FLOVER_RETURN_IF_ERROR(item.ExpectObject());
    if (!item["Sequence"].is_null()) break;
    const Field special = item["SpecialToken"];
    if (special.is_null()) return item.Malformed("must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    FLOVER_ASSIGN_OR_RETURN(std::string name, special["id"].String());
    const Field ids = f["special_tokens"][name]["ids"];
    FLOVER_RETURN_IF_ERROR(ids.ExpectArray(64));
    for (size_t k = 0; k < ids.value().size(); ++k) {
      FLOVER_ASSIGN_OR_RETURN(const int64_t id, ids.At(k).Int(0, kMaxTokenizerVocab - 1));
      before.push_back(static_cast<int>(id));
    }
  }
  if (before.size() > 1)
    return single.Unsupported("puts " + std::to_string(before.size()) +
                              " tokens before the text; Flover adds at most one (BOS)");
  return before.empty() ? -1 : before.front();
}

Result<std::shared_ptr<const BpeModel>> ReadModel(const Field& f) {
  FLOVER_RETURN_IF_ERROR(f.ExpectObject());
  const Field type_field = f["type"];
  if (!type_field.is_null()) {
    FLOVER_ASSIGN_OR_RETURN(std::string type, type_field.String());
    if (type != "BPE")
      return type_field.Unsupported("\"" + type + "\" is not supported (Flover reads BPE tokenizers)");
  } else if (f["merges"].is_null()) {
    return f.Unsupported("has no type and no merges; Flover reads BPE tokenizers");
  }

  const Field vocab_field = f["vocab"];
  FLOVER_RETURN_IF_ERROR(vocab_field.ExpectObject());
  if (vocab_field.value().size() > static_cast<size_t>(kMaxTokenizerVocab))
    return vocab_field.Unsupported("has " + std::to_string(vocab_field.value().size()) + " tokens; at most " +
                                   std::to_string(kMaxTokenizerVocab) + " are read");
  std::unordered_map<std::string, int> vocab;
  vocab.reserve(vocab_field.value().size());
  for (const auto& [token, unused] : vocab_field.value().items()) {
    const Field named = vocab_field[token];
    if (token.size() > kMaxTokenBytes)
      return vocab_field.Unsupported("has a token of " + std::to_string(token.size()) + " bytes; at most " +
                                     std::to_string(kMaxTokenBytes) + " are read");
    FLOVER_ASSIGN_OR_RETURN(const int64_t id, named.Int(0, kMaxTokenizerVocab - 1));
    vocab.emplace(token, static_cast<int>(id));
  }

  const Field merges_field = f["merges"];
  std::vector<std::pair<std::string, std::string>> merges;
  if (!merges_field.is_null()) {
    FLOVER_RETURN_IF_ERROR(merges_field.ExpectArray(kMaxMerges));
    merges.reserve(merges_field.value().size());
    for (size_t i = 0; i < merges_field.value().size(); ++i) {
      const Field m = merges_field.At(i);
      if (m.value().is_string()) {
        FLOVER_ASSIGN_OR_RETURN(std::string s, m.String());
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
          return m.Malformed("must be two tokens with one space between them, got " + m.Shown());
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.value().is_array() && m.value().size() == 2) {
        FLOVER_ASSIGN_OR_RETURN(std::string a, m.At(0).String());
        FLOVER_ASSIGN_OR_RETURN(std::string b, m.At(1).String());
        merges.emplace_back(std::move(a), std::move(b));
      } else {
        return m.Malformed("must be \"a b\" or [\"a\", \"b\"], got " + m.Shown());
      }
    }
  }

  BpeOptions options;
  FLOVER_ASSIGN_OR_RETURN(options.unk_token, f["unk_token"].OptionalString());
  FLOVER_ASSIGN_OR_RETURN(options.fuse_unk, f["fuse_unk"].Bool(false));
  FLOVER_ASSIGN_OR_RETURN(options.byte_fallback, f["byte_fallback"].Bool(false));
  FLOVER_ASSIGN_OR_RETURN(options.ignore_merges, f["ignore_merges"].Bool(false));
  FLOVER_ASSIGN_OR_RETURN(std::optional<std::string> prefix, f["continuing_subword_prefix"].OptionalString());
  FLOVER_ASSIGN_OR_RETURN(std::optional<std::string> suffix, f["end_of_word_suffix"].OptionalString());
  options.continuing_subword_prefix = prefix.value_or("");
  options.end_of_word_suffix = suffix.value_or("");
  const Field dropout = f["dropout"];
  if (!dropout.is_null() && !(dropout.value().is_number() && dropout.value().get<double>() == 0.0))
    return dropout.Unsupported("is " + dropout.Shown() + "; BPE dropout (random merges) is not supported");

  Result<BpeModel> model = BpeModel::Build(std::move(vocab), merges, std::move(options));
  if (!model.ok()) return f.Malformed(model.status().message());
  return std::make_shared<const BpeModel>(std::move(model).value());
}

Result<std::vector<AddedToken>> ReadAddedTokens(const Field& f) {
  std::vector<AddedToken> tokens;
  if (f.is_null()) return tokens;
  FLOVER_RETURN_IF_ERROR(f.ExpectArray(static_cast<size_t>(kMaxTokenizerVocab)));
  for (size_t i = 0; i < f.value().size(); ++i) {
    const Field t = f.At(i);
    FLOVER_RETURN_IF_ERROR(t.ExpectObject());
    AddedToken token;
    FLOVER_ASSIGN_OR_RETURN(const int64_t id, t["id"].Int(0, kMaxTokenizerVocab - 1));
    token.id = static_cast<int>(id);
    FLOVER_ASSIGN_OR_RETURN(token.content, t["content"].String());
    FLOVER_ASSIGN_OR_RETURN(token.special, t["special"].Bool(false));
    FLOVER_ASSIGN_OR_RETURN(token.single_word, t["single_word"].Bool(false));
    FLOVER_ASSIGN_OR_RETURN(token.lstrip, t["lstrip"].Bool(false));
    FLOVER_ASSIGN_OR_RETURN(token.rstrip, t["rstrip"].Bool(false));
    FLOVER_ASSIGN_OR_RETURN(token.normalized, t["normalized"].Bool(!token.special));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

Result<Json> ParseJson(std::string_view text, const std::string& name) {
  try {
    Json j = Json::parse(text.begin(), text.end());
    if (!j.is_object()) return Corruption(name + ": the top level must be a JSON object");
    return j;
  } catch (const Json::exception& e) {
    return Corruption(name + ": not valid JSON (" + e.what() + ")");
  }
}

// A tokenizer_config.json token: a string, an AddedToken object ({"content": ...}) or null.
Result<std::optional<std::optional<std::string>>> ReadConfigToken(const Json& root, const std::string& name,
                                                                 const std::string& key) {
  using Out = std::optional<std::optional<std::string>>;
  const auto it = root.find(key);
  if (it == root.end()) return Out();
  if (it->is_null()) return Out(std::optional<std::string>());
  const Field f(*it, name, key);
  if (it->is_string()) {
    FLOVER_ASSIGN_OR_RETURN(std::string s, f.String());
    return Out(std::optional<std::string>(std::move(s)));
  }
  if (it->is_object()) {
    FLOVER_ASSIGN_OR_RETURN(std::string s, f["content"].String());
    return Out(std::optional<std::string>(std::move(s)));
  }
  return f.Malformed("must be a string, an object with \"content\", or null; got " + f.Shown());
}

}  // namespace

Result<TokenizerConfigJson> ParseTokenizerConfigJson(std::string_view json, const std::string& name) {
  FLOVER_ASSIGN_OR_RETURN(const Json root, ParseJson(json, name));
  TokenizerConfigJson config;
  FLOVER_ASSIGN_OR_RETURN(config.bos_token, ReadConfigToken(root, name, "bos_token"));
  FLOVER_ASSIGN_OR_RETURN(config.eos_token, ReadConfigToken(root, name, "eos_token"));
  const Field add_bos(root, name, "");
  if (!add_bos["add_bos_token"].is_null()) {
    FLOVER_ASSIGN_OR_RETURN(const bool b, add_bos["add_bos_token"].Bool(false));
    config.add_bos_token = b;
  }
  return config;
}

Result<Tokenizer> ParseTokenizerJson(std::string_view json, const std::string& name, const TokenizerConfigJson& config) {
  FLOVER_ASSIGN_OR_RETURN(const Json root_json, ParseJson(json, name));
  const Field root(root_json, name, "");
  BpeTokenizerParts parts;
  FLOVER_ASSIGN_OR_RETURN(parts.model, ReadModel(root["model"]));
  FLOVER_ASSIGN_OR_RETURN(parts.added_tokens, ReadAddedTokens(root["added_tokens"]));
  FLOVER_ASSIGN_OR_RETURN(parts.normalizer, ReadNormalizer(root["normalizer"], 0));
  FLOVER_ASSIGN_OR_RETURN(parts.pre_tokenizer, ReadPreTokenizer(root["pre_tokenizer"], 0));
  if (root["decoder"].is_null()) {
    DecoderStep join;
    join.kind = DecoderStep::Kind::kJoin;
    parts.decoder.push_back(std::move(join));
  } else {
    FLOVER_RETURN_IF_ERROR(ReadDecoder(root["decoder"], 0, &parts.decoder));
  }
  FLOVER_ASSIGN_OR_RETURN(const int template_bos, ReadPostProcessor(root["post_processor"], 0));

  // Ids of token texts: added tokens first, as tokenizers' token_to_id.
  auto id_of = [&](const std::string& text) {
    for (const AddedToken& t : parts.added_tokens)
      if (t.content == text) return t.id;
    return parts.model->TokenToId(text);
  };
  auto config_token = [&](const std::optional<std::optional<std::string>>& token, const char* key) -> Result<int> {
    if (!token->has_value()) return -1;
    const int id = id_of(**token);
    if (id < 0)
      return InvalidArgument(name + ": tokenizer_config.json names " + key + " \"" + **token +
                             "\", which is not a token of this tokenizer");
    return id;
  };
  parts.bos_id = template_bos;
  if (config.bos_token) {
    FLOVER_ASSIGN_OR_RETURN(parts.bos_id, config_token(config.bos_token, "bos_token"));
  }
  parts.add_bos = config.add_bos_token.value_or(template_bos >= 0);
  if (parts.add_bos && parts.bos_id < 0)
    return InvalidArgument(name + ": tokenizer_config.json sets add_bos_token but names no bos_token");
  if (config.eos_token) {
    FLOVER_ASSIGN_OR_RETURN(parts.eos_id, config_token(config.eos_token, "eos_token"));
  } else {
    for (const char* eos : {"</s>", "<|endoftext|>", "<|end_of_text|>"}) {
      if (const int id = id_of(eos); id >= 0) {
        parts.eos_id = id;
        break;
      }
    }
  }
  Result<Tokenizer> tok = Tokenizer::FromBpe(std::move(parts));
  if (!tok.ok()) return tok.status().WithContext(name);
  return tok;
}

}  // namespace flover
