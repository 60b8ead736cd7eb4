// The toxic chain: what a chunk costs on its way through a pipe's stages, with no stage (the
// data path when no fault applies) and with several connection-level toxics in a row. The
// chain is built the way Session::Pipe runs it: each stage writes to an Output that hands the
// chunk to the next stage by index, the last to a sink that counts bytes (where the real pipe
// calls uv_try_write). Stages that hold data on timers (latency) run on a real libuv loop.

#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "toxics/toxic.h"
#include "uv/buffer.h"

using namespace faultline;

namespace {

struct Chain;

struct Link final : toxics::Output {
  Chain* chain = nullptr;
  size_t index = 0;
  std::unique_ptr<toxics::Stage> stage;
  void data(uv::Chunk c) override;
  void eof() override {}
  void dropped(size_t) override {}
  void close_session() override {}
  void reset_session() override {}
  uv_loop_t* loop() override;
  std::mt19937_64& rng() override;
  uv::BufferPool& pool() override;
};

struct Chain {
  uv_loop_t loop{};
  uv::BufferPool buffers;
  std::mt19937_64 gen{42};
  std::vector<std::unique_ptr<Link>> links;
  uint64_t delivered = 0;

  Chain() { uv_loop_init(&loop); }
  ~Chain() {
    links.clear();
    uv_run(&loop, UV_RUN_NOWAIT); // close callbacks of the stages' timers
    uv_loop_close(&loop);
  }
  void add(std::string_view type, const nlohmann::json& attrs) {
    auto impl = toxics::make_impl(type, attrs);
    auto l = std::make_unique<Link>();
    l->chain = this;
    l->index = links.size() + 1;
    l->stage = impl->make_stage(*l);
    links.push_back(std::move(l));
  }
  // As Pipe::emit: stage `index`, or the sink past the last one.
  void emit(size_t index, uv::Chunk c) {
    if (index < links.size()) links[index]->stage->on_data(std::move(c));
    else delivered += c.len;
  }
};

void Link::data(uv::Chunk c) { chain->emit(index, std::move(c)); }
uv_loop_t* Link::loop() { return &chain->loop; }
std::mt19937_64& Link::rng() { return chain->gen; }
uv::BufferPool& Link::pool() { return chain->buffers; }

// One 16 KiB read (a pipelined batch) per iteration, as a view into a pooled block.
void run(benchmark::State& state, Chain& c, bool loop_each) {
  uv::Block* b = c.buffers.acquire();
  std::memset(b->data(), 'x', 16384);
  uv::BlockRef block(b);
  for (auto _ : state) {
    c.emit(0, uv::Chunk{block, 0, 16384});
    if (loop_each) uv_run(&c.loop, UV_RUN_NOWAIT);
  }
  benchmark::DoNotOptimize(c.delivered);
  state.SetBytesProcessed(static_cast<int64_t>(c.delivered));
  state.counters["chunks/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_ChainEmpty(benchmark::State& state) {
  Chain c;
  run(state, c, false);
}
BENCHMARK(BM_ChainEmpty);

// Settings that never bite: limit_data and slow_close hand chunks on at once; bandwidth at
// 100 GB/s still paces through its queue and timer, so each chunk takes a loop turn.
void BM_ChainThreeToxicsPassThrough(benchmark::State& state) {
  Chain c;
  c.add("limit_data", {{"bytes", 0x7fffffffffffLL}});
  c.add("slow_close", {{"delay", 0}});
  c.add("bandwidth", {{"rate", 100000000}});
  run(state, c, true);
}

void BM_ChainTwoImmediateToxics(benchmark::State& state) {
  Chain c;
  c.add("limit_data", {{"bytes", 0x7fffffffffffLL}});
  c.add("slow_close", {{"delay", 0}});
  run(state, c, false);
}
BENCHMARK(BM_ChainTwoImmediateToxics);
BENCHMARK(BM_ChainThreeToxicsPassThrough);

// latency 0 ms: every chunk goes through the stage's timer queue and one loop turn.
void BM_ChainLatencyZero(benchmark::State& state) {
  Chain c;
  c.add("latency", {{"latency", 0}, {"jitter", 0}});
  run(state, c, true);
}
BENCHMARK(BM_ChainLatencyZero);

// slicer: a 16 KiB chunk cut into ~64-byte views (no copy), as Toxiproxy's slicer does.
void BM_ChainSlicer(benchmark::State& state) {
  Chain c;
  c.add("slicer", {{"average_size", 64}, {"size_variation", 32}, {"delay", 0}});
  run(state, c, true);
}
BENCHMARK(BM_ChainSlicer);

} // namespace
