// Room and ArrayStorage: small arrays carved from a block their owner holds, else the heap.

#include "base/room.h"

#include <cstdint>
#include <utility>

#include <gtest/gtest.h>

namespace faultline {
namespace {

struct Wide {
  uint64_t a = 7, b = 9;
};

bool inside(const void* p, const char* block, size_t n) {
  auto at = reinterpret_cast<uintptr_t>(p), lo = reinterpret_cast<uintptr_t>(block);
  return at >= lo && at < lo + n;
}

TEST(Room, ArraysComeFromTheRoomAlignedAndValueInitialized) {
  alignas(16) char block[256];
  std::fill(std::begin(block), std::end(block), char(0x55));
  Room room{block + 1, sizeof block - 1};  // misaligned start: the next array pads
  ArrayStorage<char> text(10, &room);
  ArrayStorage<Wide> wide(4, &room);
  EXPECT_FALSE(text.owned());
  EXPECT_FALSE(wide.owned());
  EXPECT_TRUE(inside(text.get(), block, sizeof block));
  EXPECT_TRUE(inside(wide.get(), block, sizeof block));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(wide.get()) % alignof(Wide), 0u);
  EXPECT_GE(static_cast<const void*>(wide.get()), static_cast<const void*>(text.get() + 10));
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(text[i], 0);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(wide[i].a, 7u);
  EXPECT_LE(room.left, sizeof block - 1 - 10 - 4 * sizeof(Wide));
}

TEST(Room, WhatDoesNotFitComesFromTheHeapAndLeavesTheRoomAsItWas) {
  char block[64];
  Room room{block, sizeof block};
  ArrayStorage<Wide> big(8, &room);  // 128 bytes
  EXPECT_TRUE(big.owned());
  EXPECT_FALSE(inside(big.get(), block, sizeof block));
  EXPECT_EQ(room.left, sizeof block);
  ArrayStorage<char> none(8, nullptr);  // no room at all
  EXPECT_TRUE(none.owned());
  ArrayStorage<char> fits(64, &room);  // exactly what is left
  EXPECT_FALSE(fits.owned());
  EXPECT_EQ(room.left, 0u);
}

TEST(Room, MovingKeepsTheMemoryAndWhoOwnsIt) {
  char block[64];
  Room room{block, sizeof block};
  ArrayStorage<char> a(16, &room);
  char* at = a.get();
  ArrayStorage<char> b(std::move(a));
  EXPECT_EQ(b.get(), at);
  EXPECT_FALSE(b.owned());
  EXPECT_EQ(a.get(), nullptr);
  ArrayStorage<char> heap(16, nullptr);
  char* hat = heap.get();
  b = std::move(heap);  // b's room array is let go (not freed), the heap one moves in
  EXPECT_EQ(b.get(), hat);
  EXPECT_TRUE(b.owned());
}

TEST(Room, RoomBytesIsEnoughWhateverTheStart) {
  alignas(16) char block[256];
  for (size_t start = 0; start < 8; ++start) {
    Room room{block + start, ArrayStorage<Wide>::room_bytes(3)};
    ArrayStorage<Wide> w(3, &room);
    EXPECT_FALSE(w.owned()) << start;
  }
}

} // namespace
} // namespace faultline
