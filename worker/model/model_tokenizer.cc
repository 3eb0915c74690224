#include "worker/model/model_tokenizer.h"

#include <fstream>

#include "common/tokenizer_loader.h"
#include "worker/model/gguf_loader.h"

namespace flover {
namespace {

bool IsGgufFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, sizeof(magic)) && std::string(magic, sizeof(magic)) == "GGUF";
}

}  // namespace

Result<std::optional<Tokenizer>> LoadModelTokenizer(const std::string& tokenizer, const std::string& model_path) {
  if (const std::string path = ModelTokenizerPath(tokenizer, model_path); !path.empty()) {
    FLOVER_ASSIGN_OR_RETURN(Tokenizer t, LoadTokenizer(path));
    return std::optional<Tokenizer>(std::move(t));
  }
  if (IsGgufFile(model_path)) return LoadGgufTokenizer(model_path);
  return std::optional<Tokenizer>();
}

}  // namespace flover
