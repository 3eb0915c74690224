#include "common/block_allocator.h"

#include <algorithm>
#include <cstdint>

#include "common/check.h"

namespace flover {

BlockAllocator::BlockAllocator(int n_blocks) : allocated_(n_blocks, false) {
  FLOVER_CHECK_GE(n_blocks, 0);
  free_.reserve(n_blocks);
  for (int id = n_blocks - 1; id >= 0; --id) free_.push_back(id);  // hand out 0, 1, 2, ... first
}

std::optional<std::vector<int>> BlockAllocator::Allocate(int n) {
  FLOVER_CHECK_GE(n, 0);
  if (n > n_free()) return std::nullopt;
  // The top of the stack, top first: a fresh pool hands out 0, 1, 2, ...
  std::vector<int> out(free_.rbegin(), free_.rbegin() + n);
  free_.resize(free_.size() - n);
  for (int id : out) allocated_[id] = true;
  return out;
}

void BlockAllocator::Free(std::span<const int> blocks) {
  for (int id : blocks) {
    FLOVER_CHECK(id >= 0 && id < n_blocks()) << "block id " << id << " outside pool of " << n_blocks();
    FLOVER_CHECK(allocated_[id]) << "double free of block " << id;
    allocated_[id] = false;
    free_.push_back(id);
  }
}

int CapKvBlocks(int max_blocks, int max_sequences, int max_seq_len, int block_size) {
  if (max_sequences <= 0) return max_blocks;
  const int64_t useful = std::min<int64_t>(
      static_cast<int64_t>(max_sequences) * BlockAllocator::BlocksFor(max_seq_len, std::max(1, block_size)),
      int64_t{1} << 30);
  return static_cast<int>(max_blocks > 0 ? std::min<int64_t>(max_blocks, useful) : useful);
}

}  // namespace flover
