// BlockAllocator: hands out ids of fixed-size KV-cache blocks from a pool of n_blocks.
//
// Allocation is all-or-nothing: "does not fit" is an empty optional, not an error, and
// the caller decides whether to wait or preempt. Freed blocks are reused LIFO (the most
// recently freed block is the most likely to still be in cache). Freeing a block that is
// not allocated is an invariant violation (CHECK).
//
// Thread-safety: none; owned by one scheduler thread.
#pragma once

#include <optional>
#include <span>
#include <vector>

namespace flover {

class BlockAllocator {
 public:
  explicit BlockAllocator(int n_blocks);

  int n_blocks() const { return static_cast<int>(allocated_.size()); }
  int n_free() const { return static_cast<int>(free_.size()); }
  int n_used() const { return n_blocks() - n_free(); }

  // `n` block ids, or nullopt (and no change) if fewer than n are free. REQUIRES: n >= 0.
  std::optional<std::vector<int>> Allocate(int n);
  // Returns blocks to the pool. REQUIRES: each id allocated and listed once.
  void Free(std::span<const int> blocks);

  // Blocks needed to hold n_tokens tokens.
  static int BlocksFor(int n_tokens, int block_size) { return (n_tokens + block_size - 1) / block_size; }

 private:
  std::vector<int> free_;         // stack of free ids
  std::vector<bool> allocated_;   // [n_blocks]
};

// `max_blocks` (0 = no cap) capped at the blocks that `max_sequences` requests of the
// full context (max_seq_len tokens) use at once, since a larger pool is never used, and
// at 2^30; `max_blocks` unchanged when max_sequences <= 0. For the pool of a KV cache or
// a scheduler when the number of requests that run at once is bounded (max_running,
// the policy's running limit).
int CapKvBlocks(int max_blocks, int max_sequences, int max_seq_len, int block_size);

}  // namespace flover
