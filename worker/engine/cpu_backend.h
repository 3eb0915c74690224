// CpuBackend: the ForwardBackend of the CPU: the Decoder over a host KvCache, logits in
// host memory, sampling with one Sampler per OpenMP thread. A tensor-parallel step whose
// rows all need only the argmax (greedy, no penalty, no log-probabilities) gathers only
// each rank's (max, id) per row (Decoder::ForwardArgmax), not the full logits.
//
// It owns what it runs on: the group's communicator (tensor parallelism), the KV cache
// and the decoder, destroyed in that reverse order (the decoder first, the
// communicator last). CreateBackend (worker/backend.h) builds one from a model name and
// a device; Create builds one from weights in memory.
//
// Thread-safety: one thread drives a backend; Step parallelises internally (OpenMP).
#pragma once

#include <memory>
#include <vector>

#include "worker/comm/communicator.h"
#include "worker/engine/decoder.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/kv_cache.h"
#include "worker/engine/sampler.h"
#include "worker/model/shard.h"

namespace flover {

class CpuBackend final : public ForwardBackend {
 public:
  // `weights`: the full model when shard.world == 1 (comm may then be null), else rank
  // shard.rank's shard (ShardWeights) with `comm` the group's communicator of that rank
  // and size. Errors: Corruption when the weights do not fit the shard (ValidateShard),
  // InvalidArgument when the communicator does not (CheckCommunicator), KvCache::Create's.
  static Result<std::unique_ptr<CpuBackend>> Create(ModelWeights weights, ShardInfo shard,
                                                    std::unique_ptr<HostCommunicator> comm, const KvCacheConfig& kv);

  const ModelSpec& spec() const override { return decoder_.spec(); }
  int kv_blocks() const override { return kv_->n_blocks(); }
  int kv_block_size() const override { return kv_->block_size(); }

  Status Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
              std::span<int> tokens, std::span<TokenLogprobs> logprobs) override;

  // The parts, for tests that run the decoder directly.
  Decoder& decoder() { return decoder_; }
  const KvCache& kv() const { return *kv_; }

 private:
  CpuBackend(ModelWeights weights, ShardInfo shard, std::unique_ptr<HostCommunicator> comm,
             std::unique_ptr<KvCache> kv);

  // The pass(es) into logits_, or, with `argmax`, only each row's greedy token.
  Status Forward(std::span<const StepEntry> entries, bool separate_passes, int* argmax);

  // Constant after construction; destroyed bottom-up.
  std::unique_ptr<HostCommunicator> comm_;  // null with world 1
  std::unique_ptr<KvCache> kv_;
  Decoder decoder_;

  std::vector<float> logits_;      // [rows, vocab], reused
  std::vector<Sampler> samplers_;  // one per OpenMP thread
};

}  // namespace flover
