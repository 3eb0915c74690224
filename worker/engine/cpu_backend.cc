#include "worker/engine/cpu_backend.h"

#include <omp.h>

#include <algorithm>

#include "common/check.h"

namespace flover {

Result<std::unique_ptr<CpuBackend>> CpuBackend::Create(ModelWeights weights, ShardInfo shard,
                                                       std::unique_ptr<HostCommunicator> comm,
                                                       const KvCacheConfig& kv) {
  FLOVER_RETURN_IF_ERROR(ValidateShard(weights, shard));
  FLOVER_RETURN_IF_ERROR(CheckCommunicator(comm.get(), shard.rank, shard.world));
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache, KvCache::Create(weights.spec, kv, shard.world));
  return std::unique_ptr<CpuBackend>(new CpuBackend(std::move(weights), shard, std::move(comm), std::move(cache)));
}

CpuBackend::CpuBackend(ModelWeights weights, ShardInfo shard, std::unique_ptr<HostCommunicator> comm,
                       std::unique_ptr<KvCache> kv)
    : comm_(std::move(comm)),
      kv_(std::move(kv)),
      decoder_(std::move(weights), shard, comm_.get()),
      samplers_(std::max(1, omp_get_max_threads())) {}

Status CpuBackend::Forward(std::span<const StepEntry> entries, bool separate_passes, int* argmax) {
  auto pass = [&](std::span<const StepEntry> some, size_t row) {
    return argmax ? decoder_.ForwardArgmax(some, *kv_, argmax + row)
                  : decoder_.Forward(some, *kv_, logits_.data() + row * spec().vocab_size);
  };
  if (!separate_passes) return pass(entries, 0);
  // One pass per entry, in order; each writes its output row (if any) where the fused
  // pass would have.
  size_t row = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    FLOVER_RETURN_IF_ERROR(pass(entries.subspan(i, 1), row));
    if (entries[i].want_logits) ++row;
  }
  return Status::Ok();
}

Status CpuBackend::Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
                        std::span<int> tokens, std::span<TokenLogprobs> logprobs) {
  FLOVER_CHECK(rows.size() == tokens.size() && rows.size() == logprobs.size());
  // Greedy rows without a penalty or log-probabilities need only each row's argmax:
  // with tensor parallelism that saves gathering the full logits (world x rows x
  // vocab/world floats per step).
  const bool argmax_only = decoder_.shard().world > 1 && std::all_of(rows.begin(), rows.end(), [](const SampleRow& r) {
                             return r.params->argmax_only();
                           });
  if (argmax_only) return Forward(entries, separate_passes, tokens.data());
  const int vocab = spec().vocab_size;
  const int n_rows = static_cast<int>(rows.size());
  if (logits_.size() < static_cast<size_t>(n_rows) * vocab) logits_.resize(static_cast<size_t>(n_rows) * vocab);
  FLOVER_RETURN_IF_ERROR(Forward(entries, separate_passes, nullptr));
  // Samplers are sized at construction; a caller may have raised the thread count since.
  if (samplers_.size() < static_cast<size_t>(omp_get_max_threads())) samplers_.resize(omp_get_max_threads());
#pragma omp parallel for schedule(dynamic, 1) if (n_rows > 1)
  for (int j = 0; j < n_rows; ++j) {
    tokens[j] = samplers_[omp_get_thread_num()].Sample(
        std::span<float>(logits_.data() + static_cast<size_t>(j) * vocab, vocab), *rows[j].params, rows[j].history,
        rows[j].draw_index, &logprobs[j]);
  }
  return Status::Ok();
}

}  // namespace flover
