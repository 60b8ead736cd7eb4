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

void BufferPool::release(Block* b) {
  --live_;
  if (b->capacity == kBlockSize && free_.size() < max_free_) {
    free_.push_back(b);
  } else {
    std::free(b);
  }
}

Chunk BufferPool::make_chunk(const char* data, size_t len) {
  Block* b = acquire(static_cast<uint32_t>(len));
  std::memcpy(b->data(), data, len);
  return Chunk{BlockRef(b), 0, static_cast<uint32_t>(len)};
}

} // namespace faultline::uv
