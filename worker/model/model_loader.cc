#include "worker/model/model_loader.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "worker/model/dummy_model.h"
#include "worker/model/gguf_loader.h"
#include "worker/model/hf_loader.h"
#include "worker/model/llama2c_loader.h"

namespace flover {
namespace {

constexpr std::string_view kDummyPrefix = "dummy:";

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// True when the file starts with "GGUF". Errors (unreadable, too short) are left to the
// loader that runs next, which reports them with the path.
bool HasGgufMagic(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  char magic[4];
  const bool gguf = std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  std::fclose(f);
  return gguf;
}

}  // namespace

Result<LoadedModel> LoadModel(const std::string& name_or_path, uint64_t dummy_seed, const LoadTarget& target) {
  LoadedModel model;
  if (name_or_path.starts_with(kDummyPrefix)) {
    const std::string preset = name_or_path.substr(kDummyPrefix.size());
    FLOVER_ASSIGN_OR_RETURN(model.weights, MakeDummyWeights(preset, dummy_seed, target));
    model.description = name_or_path + " (seed " + std::to_string(dummy_seed) + ")";
    return model;
  }

  std::error_code ec;
  if (!std::filesystem::exists(name_or_path, ec))
    return NotFound(name_or_path +
                    ": no such file (a model is a llama2.c .bin, a .gguf file, a Hugging Face model folder with "
                    "config.json and safetensors weights, or dummy:<preset>)");
  if (IsHfModelPath(name_or_path)) {
    FLOVER_ASSIGN_OR_RETURN(HfModel hf, LoadHfModel(name_or_path, target));
    model.weights = std::move(hf.weights);
    model.description = "Hugging Face " + hf.architecture + " " + name_or_path;
  } else if (EndsWith(name_or_path, ".safetensors")) {
    return InvalidArgument(name_or_path + ": a safetensors file holds no model shape; name the Hugging Face model "
                           "folder that holds it and its config.json");
  } else if (EndsWith(name_or_path, ".gguf") || HasGgufMagic(name_or_path)) {
    FLOVER_ASSIGN_OR_RETURN(GgufModel gguf, LoadGgufModel(name_or_path, target));
    model.weights = std::move(gguf.weights);
    model.tokenizer = std::move(gguf.tokenizer);
    model.description = "GGUF " + name_or_path;
  } else {
    FLOVER_ASSIGN_OR_RETURN(model.weights, LoadLlama2cCheckpoint(name_or_path, target));
    model.description = "llama2.c " + name_or_path;
  }
  return model;
}

}  // namespace flover
