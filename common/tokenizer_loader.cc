#include "common/tokenizer_loader.h"

#include <filesystem>
#include <system_error>

#include "common/file_bytes.h"
#include "common/tokenizer_json.h"

namespace flover {
namespace {

namespace fs = std::filesystem;

// Llama 3's tokenizer.json is 9 MiB; the largest real ones are near 40 MiB.
constexpr size_t kMaxTokenizerFileBytes = size_t{128} << 20;
constexpr size_t kMaxConfigFileBytes = size_t{16} << 20;

// '{' then '"' or '}' (whitespace between): a llama2.c file whose max_token_length has
// the low byte 0x7B starts with '{' but not with this.
bool StartsWithJsonObject(std::string_view data) {
  size_t i = 0;
  if (data.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // a UTF-8 byte order mark
  i = data.find_first_not_of(" \t\r\n", i);
  if (i == std::string_view::npos || data[i] != '{') return false;
  i = data.find_first_not_of(" \t\r\n", i + 1);
  return i != std::string_view::npos && (data[i] == '"' || data[i] == '}');
}

// tokenizer.json at `json_path`, with the tokenizer_config.json of its folder if any.
Result<Tokenizer> LoadTokenizerJson(const fs::path& json_path) {
  FLOVER_ASSIGN_OR_RETURN(const std::string json,
                          ReadFileBytes(json_path.string(), kMaxTokenizerFileBytes, "tokenizer file"));
  TokenizerConfigJson config;
  const fs::path config_path = json_path.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (fs::is_regular_file(config_path, ec)) {
    FLOVER_ASSIGN_OR_RETURN(const std::string text,
                            ReadFileBytes(config_path.string(), kMaxConfigFileBytes, "tokenizer config"));
    FLOVER_ASSIGN_OR_RETURN(config, ParseTokenizerConfigJson(text, config_path.string()));
  }
  return ParseTokenizerJson(json, json_path.string(), config);
}

}  // namespace

Result<Tokenizer> LoadTokenizer(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) return NotFound("tokenizer " + path + " does not exist");
  if (status.type() == fs::file_type::directory) {
    const fs::path json = fs::path(path) / "tokenizer.json";
    if (!fs::exists(json, ec)) {
      const bool has_sentencepiece = fs::exists(fs::path(path) / "tokenizer.model", ec);
      return NotFound("folder " + path + " has no tokenizer.json" +
                      (has_sentencepiece ? " (its tokenizer.model, a SentencePiece model, is not read: convert it "
                                           "with transformers' LlamaTokenizerFast, or name a llama2.c tokenizer file)"
                                         : " (name a Hugging Face model folder, a tokenizer.json or a llama2.c "
                                           "tokenizer file)"));
    }
    return LoadTokenizerJson(json);
  }
  FLOVER_ASSIGN_OR_RETURN(const std::string data, ReadFileBytes(path, kMaxTokenizerFileBytes, "tokenizer file"));
  if (StartsWithJsonObject(data)) {
    const fs::path json_path(path);
    // tokenizer.json: its config beside it. Another JSON file: refused when it is a config.
    if (json_path.filename() == "tokenizer_config.json")
      return InvalidArgument(path + " is transformers' tokenizer config; name tokenizer.json or the model folder");
    if (json_path.filename() == "tokenizer.json") return LoadTokenizerJson(json_path);
    return ParseTokenizerJson(data, path);
  }
  if (data.substr(0, 4) == "GGUF")
    return InvalidArgument(path + " is a GGUF model file: its vocabulary is loaded with the model (model.path); "
                                  "name a tokenizer.json, a Hugging Face model folder or a llama2.c tokenizer file");
  if (fs::path(path).extension() == ".model")
    return InvalidArgument(path + " looks like a SentencePiece model, which is not read: name the model's "
                                  "tokenizer.json (transformers' LlamaTokenizerFast converts one) or a llama2.c "
                                  "tokenizer file");
  return Tokenizer::ParseLlama2c(data, path);
}

std::string ModelTokenizerPath(const std::string& tokenizer, const std::string& model_path) {
  if (!tokenizer.empty()) return tokenizer;
  std::error_code ec;
  if (std::filesystem::is_directory(model_path, ec) &&
      std::filesystem::is_regular_file(std::filesystem::path(model_path) / "tokenizer.json", ec))
    return model_path;
  return "";
}

}  // namespace flover
