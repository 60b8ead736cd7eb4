#include "uv/buffer.h"

#include <gtest/gtest.h>

using namespace faultline::uv;

TEST(BufferPool, ReusesBlocksAndCountsRefs) {
  BufferPool pool(4);
  Block* b = pool.acquire();
  EXPECT_EQ(pool.blocks_live(), 1u);
  {
    Chunk c{BlockRef(b), 0, 100};
    Chunk head = c.take_front(40);
    EXPECT_EQ(head.len, 40u);
    EXPECT_EQ(c.off, 40u);
    EXPECT_EQ(c.len, 60u);
    EXPECT_EQ(b->refs, 2u);
  }
  EXPECT_EQ(pool.blocks_live(), 0u);
  EXPECT_EQ(pool.blocks_free(), 1u);
  Block* again = pool.acquire();
  EXPECT_EQ(again, b);
  pool.release(again);
  Chunk big = pool.make_chunk(std::string(200000, 'x').data(), 200000);
  EXPECT_EQ(big.len, 200000u);
  EXPECT_EQ(big.data()[199999], 'x');
}
