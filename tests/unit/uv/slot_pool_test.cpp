// SlotPool: page-aligned slots whose pages go back to the system when trimmed.

#include "uv/slot_pool.h"

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "uv/buffer.h"
#include "uv/platform.h"

namespace faultline::uv {
namespace {

#if defined(__linux__)
// How many of the pages of [p, p + bytes) are resident (mincore).
size_t resident_pages(void* p, size_t bytes) {
  const size_t page = platform::page_size();
  std::vector<unsigned char> v((bytes + page - 1) / page);
  EXPECT_EQ(::mincore(p, bytes, v.data()), 0);
  size_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n;
}
#endif

TEST(SlotPool, SlotsArePageAlignedWholePagesFromRegionsOfTheirOwn) {
  const size_t page = platform::page_size();
  SlotPool pool(page + 1);
  EXPECT_EQ(pool.slot_bytes(), 2 * page);
  std::set<uintptr_t> seen;
  std::vector<void*> slots;
  for (size_t i = 0; i < SlotPool::kSlotsPerRegion + 1; ++i) {
    void* s = pool.acquire();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(s) % page, 0u);
    EXPECT_TRUE(seen.insert(reinterpret_cast<uintptr_t>(s)).second) << "slot handed out twice";
    std::memset(s, 0xab, pool.slot_bytes());  // every byte of it is usable
    slots.push_back(s);
  }
  EXPECT_EQ(pool.regions(), 2u);
  EXPECT_EQ(pool.in_use(), SlotPool::kSlotsPerRegion + 1);
  for (void* s : slots) pool.release(s);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(SlotPool, AReleasedSlotIsReusedWhileResidentThenTrimmedToZeroedPages) {
  SlotPool pool(100);
  void* a = pool.acquire();
  std::memset(a, 0x5a, pool.slot_bytes());
  pool.release(a);
  EXPECT_EQ(pool.resident_free(), 1u);
  // Reused at once, pages and all: a connection that closes makes room for the next.
  void* b = pool.acquire();
  EXPECT_EQ(b, a);
  EXPECT_EQ(static_cast<unsigned char*>(b)[0], 0x5a);
  pool.release(b);
  EXPECT_EQ(pool.trim(), 1u);
  EXPECT_EQ(pool.resident_free(), 0u);
  EXPECT_EQ(pool.trim(), 0u);  // nothing released since
#if defined(__linux__)
  EXPECT_EQ(resident_pages(a, pool.slot_bytes()), 0u) << "trim kept the slot's page";
#endif
  void* c = pool.acquire();
  EXPECT_EQ(c, a);  // the lowest clean slot first
  // The system's fresh pages: nothing of what the slot held before.
  const auto* bytes = static_cast<const unsigned char*>(c);
  for (size_t i = 0; i < pool.slot_bytes(); ++i) ASSERT_EQ(bytes[i], 0) << i;
  pool.release(c);
}

TEST(SlotPool, TrimHandsBackEveryReleasedSlotAndKeepsTheOthers) {
  SlotPool pool(1);
  std::vector<void*> slots;
  for (int i = 0; i < 10; ++i) {
    slots.push_back(pool.acquire());
    std::memset(slots.back(), 1, pool.slot_bytes());
  }
  // Released out of order, with gaps: runs of adjacent slots and lone ones.
  for (int i : {7, 1, 2, 9, 3, 5}) pool.release(slots[i]);
  EXPECT_EQ(pool.trim(), 6u);
#if defined(__linux__)
  for (int i = 0; i < 10; ++i) {
    const bool released = i == 1 || i == 2 || i == 3 || i == 5 || i == 7 || i == 9;
    EXPECT_EQ(resident_pages(slots[i], pool.slot_bytes()), released ? 0u : 1u) << i;
  }
#endif
  for (int i : {0, 4, 6, 8}) {
    const auto* b = static_cast<const unsigned char*>(slots[i]);
    EXPECT_EQ(b[0], 1) << i;
    pool.release(slots[i]);
  }
}

TEST(BufferPool, PackBlocksFillAPageAndGoBackWhenTrimmed) {
  BufferPool pool;
  Block* b = pool.acquire_exact(BufferPool::kPageBlock);
  EXPECT_EQ(b->capacity, BufferPool::kPageBlock);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % platform::page_size(), 0u);
  std::memset(b->data(), 7, b->capacity);
  pool.release(b);
  EXPECT_EQ(pool.trim_pages(), 1u);
#if defined(__linux__)
  EXPECT_EQ(resident_pages(b, platform::page_size()), 0u);
#endif
  // A Packer's blocks are such blocks.
  Packer packer;
  Chunk c = packer.copy(pool, "abc", 3);
  EXPECT_EQ(c.block.get()->capacity, BufferPool::kPageBlock);
  EXPECT_EQ(std::string(c.data(), c.len), "abc");
  c = {};
  packer.release();
  EXPECT_EQ(pool.blocks_live(), 0u);
  EXPECT_EQ(pool.trim_pages(), 1u);
}

} // namespace
} // namespace faultline::uv
