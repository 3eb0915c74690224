// Fuzzes the llama2.c checkpoint reader (worker/model/llama2c_loader.h): the header, its
// consistency and size arithmetic, and the tensor reads, from bytes in memory
// (fmemopen). A model it returns must Validate(); when its shape allows tensor
// parallelism of 2, rank 1's shard is loaded too.
//
// Input: the checkpoint file. Seeds: small checkpoints from the seed writer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "worker/model/llama2c_loader.h"

using namespace flover;

namespace {

Result<ModelWeights> Load(const uint8_t* data, size_t size, const LoadTarget& target) {
  std::FILE* file = fmemopen(const_cast<uint8_t*>(data), size, "rb");
  if (file == nullptr) std::abort();
  Result<ModelWeights> weights = LoadLlama2cCheckpoint(file, "fuzz.bin", target);
  std::fclose(file);
  return weights;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<ModelWeights> weights = Load(data, size, {});
  if (!weights.ok()) return 0;
  if (Status s = weights->Validate(); !s.ok()) {
    std::fprintf(stderr, "a loaded model does not validate: %s\n", s.ToString().c_str());
    std::abort();
  }
  if (CheckTensorParallel(weights->spec, 2).ok()) {
    LoadTarget rank1;
    rank1.shard = ShardInfo{.rank = 1, .world = 2};
    Result<ModelWeights> shard = Load(data, size, rank1);
    if (!shard.ok()) {
      std::fprintf(stderr, "the model loads whole but not as rank 1 of 2: %s\n", shard.status().ToString().c_str());
      std::abort();
    }
  }
  return 0;
}
