#pragma once
// Pooled, reference-counted read buffers and the chunks that point into them.
//
// A read callback fills one fixed-size block; the chunk that carries the bytes to the peer is a
// view (block, offset, length) that keeps the block alive until the write completes. Toxics that
// split or delay data slice chunks without copying. Blocks return to a bounded free list, so the
// steady state allocates nothing.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "uv/slot_pool.h"

namespace faultline::uv {

class BufferPool;

struct Block {
  BufferPool* pool;
  uint32_t refs;
  uint32_t capacity;
  char* data() { return reinterpret_cast<char*>(this + 1); }
};
static_assert(sizeof(Block) == 16);

// Owning reference to a block (intrusive count, single-threaded).
class BlockRef {
public:
  BlockRef() = default;
  explicit BlockRef(Block* b) : b_(b) {}  // adopts one reference
  BlockRef(const BlockRef& o) : b_(o.b_) {
    if (b_) ++b_->refs;
  }
  BlockRef(BlockRef&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  BlockRef& operator=(BlockRef o) noexcept {
    std::swap(b_, o.b_);
    return *this;
  }
  ~BlockRef() { reset(); }
  void reset();
  Block* get() const { return b_; }
  char* data() const { return b_->data(); }
  explicit operator bool() const { return b_ != nullptr; }

private:
  Block* b_ = nullptr;
};

// A view into a block: the unit of data moving through a pipe and its toxics.
struct Chunk {
  BlockRef block;
  uint32_t off = 0;
  uint32_t len = 0;
  const char* data() const { return block.data() + off; }
  // Split off the first n bytes into a new chunk sharing the block.
  Chunk take_front(uint32_t n) {
    Chunk head{block, off, n};
    off += n;
    len -= n;
    return head;
  }
};

class BufferPool {
public:
  static constexpr uint32_t kBlockSize = 64 * 1024;
  explicit BufferPool(size_t max_free = 64) : max_free_(max_free) { free_.reserve(max_free); }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

  // A block with one reference; capacity kBlockSize, or larger when asked.
  Block* acquire(uint32_t min_capacity = kBlockSize);
  void release(Block* b);
  // Copy arbitrary bytes into a chunk of its own, exactly as large as they are.
  Chunk make_chunk(const char* data, size_t len);
  // A block of exactly `capacity` bytes, never pooled; kPageBlock bytes come from a page of
  // their own (pack blocks: see Packer).
  Block* acquire_exact(uint32_t capacity);
  // A block that fills one page with its header: a pack block. Its page comes from a SlotPool,
  // so that when an idle connection lets go of its pack block the page goes back to the system
  // (trim_pages()), not into a hole of the heap between other connections' memory.
  static constexpr uint32_t kPageBlock = 4096 - 16;
  // Hands back the pages of page blocks freed since the last call; returns how many.
  size_t trim_pages() { return pages_.trim(); }

  size_t blocks_live() const { return live_; }
  size_t blocks_free() const { return free_.size(); }

private:
  std::vector<Block*> free_;
  size_t max_free_;
  size_t live_ = 0;
  SlotPool pages_{kPageBlock + 16};
};

// Keeps what a pipe holds proportional to what it holds in bytes. A read fills a 64 KiB block;
// a chunk that is about to wait (behind a slow peer, in a toxic, in a hold) and fills less than
// half of its block is copied: up to kPackMax bytes into a small shared block, larger ones into
// a block of their own size. So a thousand 1-byte reads held by a latency toxic cost a few KiB,
// not a thousand blocks, and the watermarks, which count bytes, bound memory too: everything
// held lives in blocks at least half full, except one small pack block per packer. Chunks that
// are written at once are never copied.
class Packer {
public:
  static constexpr uint32_t kPackBlock = BufferPool::kPageBlock;
  static constexpr uint32_t kPackMax = 1024;
  // c itself when its block is at least half used by it, else a copy.
  Chunk keep(BufferPool& pool, Chunk c) {
    if (c.len == 0 || uint64_t(c.len) * 2 >= c.block.get()->capacity) return c;
    return copy(pool, c.data(), c.len);
  }
  Chunk copy(BufferPool& pool, const char* data, size_t len);
  // Lets go of the current pack block (it is freed once no chunk uses it): for a connection
  // gone quiet, which would otherwise keep 4 KiB for the next small chunk that waits. True if
  // it had one.
  bool release() {
    used_ = 0;
    if (!block_) return false;
    block_.reset();
    return true;
  }

private:
  BlockRef block_;
  uint32_t used_ = 0;
};

inline void BlockRef::reset() {
  if (b_ && --b_->refs == 0) b_->pool->release(b_);
  b_ = nullptr;
}

} // namespace faultline::uv
