#include "uv/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace faultline::uv {

BufferPool::~BufferPool() {
  for (Block* b : free_) std::free(b);
}

Block* BufferPool::acquire(uint32_t min_capacity) {
  Block* b;
  if (min_capacity <= kBlockSize && !free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    uint32_t cap = min_capacity <= kBlockSize ? kBlockSize : min_capacity;
    void* mem = std::malloc(sizeof(Block) + cap);
    if (!mem) throw std::bad_alloc();
    b = static_cast<Block*>(mem);
    b->capacity = cap;
  }
  b->pool = this;
  b->refs = 1;
  ++live_;
  return b;
}

Block* BufferPool::acquire_exact(uint32_t capacity) {
  if (capacity == kBlockSize) return acquire();
  void* mem = capacity == kPageBlock ? pages_.acquire() : std::malloc(sizeof(Block) + capacity);
  if (!mem) throw std::bad_alloc();
  auto* b = static_cast<Block*>(mem);
  b->capacity = capacity;
  b->pool = this;
  b->refs = 1;
  ++live_;
  return b;
}

void BufferPool::release(Block* b) {
  --live_;
  if (b->capacity == kBlockSize && free_.size() < max_free_) {
    free_.push_back(b);
  } else if (b->capacity == kPageBlock) {
    pages_.release(b);
  } else {
    std::free(b);
  }
}

Chunk BufferPool::make_chunk(const char* data, size_t len) {
  Block* b = acquire_exact(static_cast<uint32_t>(len));
  if (len) std::memcpy(b->data(), data, len);
  return Chunk{BlockRef(b), 0, static_cast<uint32_t>(len)};
}

Chunk Packer::copy(BufferPool& pool, const char* data, size_t len) {
  if (len > kPackMax) return pool.make_chunk(data, len);
  if (block_ && block_.get()->refs == 1) used_ = 0;  // no chunk uses it any more: start over
  if (!block_ || kPackBlock - used_ < len) {
    block_ = BlockRef(pool.acquire_exact(kPackBlock));
    used_ = 0;
  }
  std::memcpy(block_.data() + used_, data, len);
  Chunk c{block_, used_, static_cast<uint32_t>(len)};
  used_ += static_cast<uint32_t>(len);
  return c;
}

} // namespace faultline::uv
