// Fuzzes the GGUF reader and model loader (worker/model/gguf_reader.h, gguf_loader.h):
// the header, every metadata key/value (strings, arrays), the tensor table and its
// bounds, the model's metadata and tensors, the embedded vocabulary, from bytes in
// memory (fmemopen). Every numeric array is read through FloatArray. A model it returns
// must Validate(); when its shape allows tensor parallelism of 2, rank 1's shard is
// loaded too.
//
// Input: the GGUF file. Seeds: small GGUF models from the seed writer (llama F32 and F16,
// qwen2 F32), the headers of the fixtures' GGUF files and stories260K.gguf's header when
// scripts/fuzz.sh finds it. Dictionary: gguf.dict.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "worker/model/gguf_loader.h"
#include "worker/model/gguf_reader.h"

using namespace flover;

namespace {

Result<std::unique_ptr<GgufReader>> Open(const uint8_t* data, size_t size) {
  std::FILE* file = fmemopen(const_cast<uint8_t*>(data), size, "rb");
  if (file == nullptr) std::abort();
  return GgufReader::FromStream(file, "fuzz.gguf");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<std::unique_ptr<GgufReader>> reader = Open(data, size);
  if (!reader.ok()) return 0;
  for (const auto& [key, value] : (*reader)->metadata()) {
    if (value.type == GgufValueType::kArray) (void)(*reader)->FloatArray(key, value);
  }
  Result<GgufModel> model = LoadGgufModel(**reader);
  if (!model.ok()) return 0;
  if (Status s = model->weights.Validate(); !s.ok()) {
    std::fprintf(stderr, "a loaded model does not validate: %s\n", s.ToString().c_str());
    std::abort();
  }
  if (CheckTensorParallel(model->weights.spec, 2).ok()) {
    Result<std::unique_ptr<GgufReader>> again = Open(data, size);
    LoadTarget rank1;
    rank1.shard = ShardInfo{.rank = 1, .world = 2};
    Result<GgufModel> shard = again.ok() ? LoadGgufModel(**again, rank1) : Result<GgufModel>(again.status());
    if (!shard.ok()) {
      std::fprintf(stderr, "the model loads whole but not as rank 1 of 2: %s\n", shard.status().ToString().c_str());
      std::abort();
    }
  }
  return 0;
}
