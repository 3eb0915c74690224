// CpuBackend: the ForwardBackend of the CPU engine: the Decoder over a host KvCache,
// logits in host memory, sampling with one Sampler per OpenMP thread. A tensor-parallel
// step whose rows are all greedy (no repetition penalty) gathers only each rank's
// (max, id) per row (Decoder::ForwardArgmax), not the full logits.
#pragma once

#include <vector>

#include "worker/engine/decoder.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/kv_cache.h"
#include "worker/engine/sampler.h"

namespace flover {

class CpuBackend final : public ForwardBackend {
 public:
  // `decoder` and `kv` must outlive the backend.
  CpuBackend(Decoder* decoder, const KvCache* kv);

  const ModelSpec& spec() const override { return decoder_->spec(); }
  int kv_blocks() const override { return kv_->n_blocks(); }
  int kv_block_size() const override { return kv_->block_size(); }

  Status Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
              std::span<int> tokens) override;

 private:
  // The pass(es) into logits_, or, with `argmax`, only each row's greedy token.
  Status Forward(std::span<const StepEntry> entries, bool separate_passes, int* argmax);

  Decoder* decoder_;
  const KvCache* kv_;
  std::vector<float> logits_;     // [rows, vocab], reused
  std::vector<Sampler> samplers_;  // one per OpenMP thread
};

}  // namespace flover
