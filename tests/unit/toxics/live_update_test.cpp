// Toxics added, updated and removed on a live connection lose no byte and keep the order: a
// paced echo stream runs through the proxy while the toxics change under it many times.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(LiveToxics, AddUpdateRemoveLoseNoByteAndKeepOrder) {
  EchoServer echo;
  ProxyLoop pl(echo.port(), 7);
  Client c(pl.port());
  constexpr size_t kTotal = 4u << 20;
  const std::string data = random_bytes(kTotal, 42);

  std::string got;
  ssize_t st = 1;
  std::thread reader([&] { got = c.read_to_end(30s, &st); });
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    std::mt19937 g(5);
    size_t off = 0;
    while (off < kTotal) {
      size_t n = std::min<size_t>(kTotal - off, 1 + g() % 8192);
      if (!c.send(std::string_view(data).substr(off, n))) break;
      off += n;
      if (g() % 4 == 0) std::this_thread::sleep_for(1ms); // pace: the stream lasts ~1 s
    }
    c.shutdown_write();
    writing = false;
  });

  using nlohmann::json;
  std::mt19937 g(11);
  int ops = 0;
  while (writing && ops < 400) {
    switch (ops % 8) {
    case 0: pl.add("lat", "latency", Up, {{"latency", 3}, {"jitter", 3}}); break;
    // (timeout drops what it stops, by design, so it has no place in a lose-no-byte test.)
    case 1: pl.add("hole", "latency", Down, {{"latency", 15}}); break;
    case 2: pl.update("lat", "latency", Up, {{"latency", 1}, {"jitter", 1}}); break;
    case 3:
      pl.add("slice", "slicer", Down, {{"average_size", 300}, {"size_variation", 100}});
      break;
    case 4: pl.remove("hole"); break;
    case 5: pl.add("bw", "bandwidth", Up, {{"rate", 20000}}); break;
    case 6: pl.remove("lat"); pl.update("slice", "latency", Down, {{"latency", 2}}); break;
    case 7: pl.remove("bw"); pl.remove("slice"); break;
    }
    ++ops;
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + g() % 6));
  }
  for (const char* n : {"lat", "hole", "slice", "bw"}) pl.remove(n);
  writer.join();
  reader.join();
  EXPECT_GE(ops, 40) << "the stream ended before the toxics had changed much";
  EXPECT_EQ(st, 0);
  ASSERT_EQ(got.size(), kTotal);
  EXPECT_TRUE(got == data) << "bytes reordered or corrupted";
}

} // namespace
} // namespace fltox
