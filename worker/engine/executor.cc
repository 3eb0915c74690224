#include "worker/engine/executor.h"

#include <algorithm>

#include "common/block_allocator.h"

namespace flover {

Executor::Executor(ForwardBackend* backend) : backend_(backend) {}

Status Executor::Join(uint64_t request_id, RequestParams request, std::span<const int> generated) {
  if (sequences_.count(request_id))
    return InvalidArgument("request " + std::to_string(request_id) + " joined twice");
  FLOVER_RETURN_IF_ERROR(ValidateRequest(request, spec()));
  const int n_generated = static_cast<int>(generated.size());
  for (int t : generated)
    if (t < 0 || t >= spec().vocab_size)
      return InvalidArgument("request " + std::to_string(request_id) + ": generated token " + std::to_string(t) +
                             " is outside the vocabulary of " + std::to_string(spec().vocab_size));
  if (StopsByLength(static_cast<int>(request.prompt.size()), n_generated, request.stop.max_tokens,
                    spec().max_seq_len))
    return InvalidArgument("request " + std::to_string(request_id) + ": " + std::to_string(n_generated) +
                           " generated tokens leave none to generate (max_tokens " +
                           std::to_string(request.stop.max_tokens) + ", context " +
                           std::to_string(spec().max_seq_len) + ")");
  auto seq = std::make_unique<Sequence>();
  seq->id = request_id;
  seq->arrival = request_id;
  seq->sampling = request.sampling;
  seq->stop = std::move(request.stop);
  seq->n_prompt = static_cast<int>(request.prompt.size());
  seq->tokens = std::move(request.prompt);
  seq->tokens.insert(seq->tokens.end(), generated.begin(), generated.end());
  sequences_.emplace(request_id, std::move(seq));
  return Status::Ok();
}

std::vector<int> Executor::Leave(uint64_t request_id) {
  auto it = sequences_.find(request_id);
  if (it == sequences_.end()) return {};
  std::vector<int> blocks = std::move(it->second->block_table);
  sequences_.erase(it);
  return blocks;
}

std::vector<int> Executor::Reset(uint64_t request_id) {
  auto it = sequences_.find(request_id);
  if (it == sequences_.end()) return {};
  Sequence& seq = *it->second;
  seq.n_computed = 0;
  std::vector<int> blocks = std::move(seq.block_table);
  seq.block_table.clear();
  return blocks;
}

const Sequence* Executor::Find(uint64_t request_id) const {
  auto it = sequences_.find(request_id);
  return it == sequences_.end() ? nullptr : it->second.get();
}

Status Executor::Check(const ExecEntry& e, const Sequence& seq) const {
  const std::string who = "request " + std::to_string(e.request_id) + ": ";
  if (seq.finish != FinishReason::kNone) return InvalidArgument(who + "already finished");
  if (e.start_pos != seq.n_computed)
    return InvalidArgument(who + "entry starts at position " + std::to_string(e.start_pos) + " but " +
                           std::to_string(seq.n_computed) + " tokens are computed");
  if (e.n_tokens < 1 || e.n_tokens > seq.n_uncomputed())
    return InvalidArgument(who + "entry computes " + std::to_string(e.n_tokens) + " tokens; " +
                           std::to_string(seq.n_uncomputed()) + " are uncomputed");
  for (int b : e.new_blocks)
    if (b < 0 || b >= backend_->kv_blocks())
      return InvalidArgument(who + "block " + std::to_string(b) + " outside the pool of " +
                             std::to_string(backend_->kv_blocks()));
  const int covered = static_cast<int>(seq.block_table.size() + e.new_blocks.size()) * backend_->kv_block_size();
  if (covered < e.start_pos + e.n_tokens)
    return InvalidArgument(who + "block table covers " + std::to_string(covered) + " positions, the entry needs " +
                           std::to_string(e.start_pos + e.n_tokens));
  return Status::Ok();
}

Status Executor::Run(std::span<const ExecEntry> entries, std::vector<ExecOutput>* outputs, bool separate_passes) {
  // Validate everything before touching any state.
  stepping_.assign(entries.size(), nullptr);
  for (size_t i = 0; i < entries.size(); ++i) {
    auto it = sequences_.find(entries[i].request_id);
    if (it == sequences_.end()) continue;  // stale: finished or left meanwhile
    Sequence* seq = it->second.get();
    if (std::find(stepping_.begin(), stepping_.begin() + i, seq) != stepping_.begin() + i)
      return InvalidArgument("request " + std::to_string(seq->id) + " listed twice in one step");
    FLOVER_RETURN_IF_ERROR(Check(entries[i], *seq));
    stepping_[i] = seq;
  }

  entries_.clear();
  sampled_.clear();
  for (size_t i = 0; i < entries.size(); ++i) {
    Sequence* seq = stepping_[i];
    if (!seq) continue;
    const ExecEntry& e = entries[i];
    seq->block_table.insert(seq->block_table.end(), e.new_blocks.begin(), e.new_blocks.end());
    const bool last_chunk = e.start_pos + e.n_tokens == static_cast<int>(seq->tokens.size());
    entries_.push_back(StepEntry{seq->tokens.data() + e.start_pos, e.n_tokens, e.start_pos,
                                 seq->block_table.data(), last_chunk});
    if (last_chunk) sampled_.push_back(seq);
  }
  if (entries_.empty()) return Status::Ok();

  const int n_logits = static_cast<int>(sampled_.size());
  rows_.clear();
  for (Sequence* seq : sampled_)
    rows_.push_back(SampleRow{&seq->sampling, seq->tokens, static_cast<uint64_t>(seq->n_generated())});
  next_tokens_.resize(n_logits);
  next_logprobs_.resize(n_logits);
  if (Status s = backend_->Step(entries_, separate_passes, rows_, next_tokens_, next_logprobs_); !s.ok()) {
    for (size_t i = 0; i < entries.size(); ++i)  // undo: the step did not happen
      if (stepping_[i]) stepping_[i]->block_table.resize(stepping_[i]->block_table.size() - entries[i].new_blocks.size());
    return s;
  }
  for (size_t i = 0; i < entries.size(); ++i)
    if (stepping_[i]) stepping_[i]->n_computed += entries[i].n_tokens;

  for (int j = 0; j < n_logits; ++j) {
    Sequence* seq = sampled_[j];
    const FinishReason reason = seq->Append(next_tokens_[j], spec());
    seq->finish = reason;
    ExecOutput& out = outputs->emplace_back(ExecOutput{seq->id, next_tokens_[j], reason, std::nullopt});
    if (seq->sampling.logprobs) out.logprobs = next_logprobs_[j];
  }
  return Status::Ok();
}

}  // namespace flover
