// RESP codec and pairing micro-benchmarks: MB/s (bytes_per_second) and frames/s
// (items_per_second; ns/frame = 1e9 / items_per_second).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "proxy/pairing.h"
#include "resp/parser.h"

namespace {

using namespace faultline;

std::string mb(std::initializer_list<std::string_view> args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) s += "$" + std::to_string(a.size()) + "\r\n" + std::string(a) + "\r\n";
  return s;
}

struct Count {
  uint64_t n = 0;
  void on_request(const resp::RequestFrame& f) { n += f.argc; }
  void on_reply(const resp::ReplyFrame& f) { n += uint64_t(f.size_bytes()); }
};

// Feeds `stream` in chunks of `chunk` bytes, as a socket read callback would.
template <class P, class Sink = Count>
void run(benchmark::State& state, const std::string& stream, size_t frames, size_t chunk,
         const resp::CaptureOptions& cap = {}) {
  P parser({}, cap);
  Sink sink;
  for (auto _ : state) {
    for (size_t at = 0; at < stream.size(); at += chunk)
      parser.feed(stream.data() + at, std::min(chunk, stream.size() - at), sink);
  }
  benchmark::DoNotOptimize(sink.n);
  if (parser.failed()) state.SkipWithError("parse error");
  state.SetBytesProcessed(int64_t(state.iterations() * stream.size()));
  state.SetItemsProcessed(int64_t(state.iterations() * frames));
}

std::string repeat(const std::string& one, size_t n) {
  std::string s;
  s.reserve(one.size() * n);
  for (size_t i = 0; i < n; ++i) s += one;
  return s;
}

void BM_RequestSmallCommands(benchmark::State& state) {
  std::string s;
  size_t frames = 0;
  for (int i = 0; i < 500; ++i, frames += 3)
    s += mb({"PING"}) + mb({"INCR", "counter:" + std::to_string(i)}) + mb({"EXISTS", "a"});
  run<resp::RequestParser>(state, s, frames, 16 * 1024);
}
BENCHMARK(BM_RequestSmallCommands);

void BM_RequestPipelineGetSet(benchmark::State& state) {
  std::string s;
  for (int i = 0; i < 1000; ++i) {
    std::string k = "key:" + std::to_string(100000 + i);
    s += i % 2 ? mb({"GET", k}) : mb({"SET", k, "value-of-twenty-byte"});
  }
  resp::CaptureOptions cap;
  if (state.range(0) == 0) cap.max_args = 3;  // hot path: name, sub, key only
  run<resp::RequestParser>(state, s, 1000, 16 * 1024, cap);
}
BENCHMARK(BM_RequestPipelineGetSet)->Arg(0)->Arg(1)->ArgName("capture_all");

// What the proxy's counting sink takes: simple frames and runs of alike ones, no frame built.
struct CountSimple {
  uint64_t n = 0;
  bool on_simple_request(const resp::SimpleRequest& r) { return n += r.size(), true; }
  bool on_simple_run(const resp::SimpleRun& r) { return n += r.count, true; }
  void on_request(const resp::RequestFrame& f) { n += f.argc; }
  bool on_simple_reply(const resp::SimpleReply& r) { return n += r.size_bytes(), true; }
  size_t on_simple_reply_run(const resp::SimpleReplyRun& r) { return n += r.count, r.count; }
  void on_reply(const resp::ReplyFrame& f) { n += f.size_bytes(); }
};

// redis-benchmark -P 32 as the proxy reads it: 32 GETs of one key layout per chunk. Arg 1:
// GET and SET alternating (no two frames alike: no runs, each a shape-cache hit).
void BM_RequestPipelineSimple(benchmark::State& state) {
  std::string s;
  for (int i = 0; i < 1024; ++i) {
    std::string k = "key:" + std::to_string(100000 + i);
    s += state.range(0) && i % 2 ? mb({"SET", k, "xxx"}) : mb({"GET", k});
  }
  const size_t chunk = state.range(0) ? 16 * 1024 : s.size() / 32;
  run<resp::RequestParser, CountSimple>(state, s, 1024, chunk);
}
BENCHMARK(BM_RequestPipelineSimple)->Arg(0)->Arg(1)->ArgName("alternating");

// Their replies: 32 per chunk, +OK (SET) or $3 bulks (GET).
void BM_ReplyPipelineSimple(benchmark::State& state) {
  const std::string one = state.range(0) ? "$3\r\nxxx\r\n" : "+OK\r\n";
  const std::string s = repeat(one, 1024);
  run<resp::ReplyParser, CountSimple>(state, s, 1024, one.size() * 32);
}
BENCHMARK(BM_ReplyPipelineSimple)->Arg(0)->Arg(1)->ArgName("bulk");

void BM_RequestInline(benchmark::State& state) {
  run<resp::RequestParser>(state, repeat("GET \"key:1\"\r\n", 1000), 1000, 16 * 1024);
}
BENCHMARK(BM_RequestInline);

void BM_ReplyOk(benchmark::State& state) {
  run<resp::ReplyParser>(state, repeat("+OK\r\n", 2000), 2000, 16 * 1024);
}
BENCHMARK(BM_ReplyOk);

void BM_ReplyBulk100(benchmark::State& state) {
  run<resp::ReplyParser>(state, repeat("$100\r\n" + std::string(100, 'v') + "\r\n", 1000), 1000,
                         16 * 1024);
}
BENCHMARK(BM_ReplyBulk100);

void BM_ReplyArray(benchmark::State& state) {  // MGET of 10 keys
  std::string one = "*10\r\n";
  for (int i = 0; i < 10; ++i) one += "$8\r\nvalue:" + std::to_string(10 + i) + "\r\n";
  run<resp::ReplyParser>(state, repeat(one, 200), 200, 16 * 1024);
}
BENCHMARK(BM_ReplyArray);

void BM_LargeBulk(benchmark::State& state) {  // skipped by length, fed in 64 KB reads
  const size_t n = size_t(state.range(0));
  std::string payload(64 * 1024, 'x');
  std::string head = "$" + std::to_string(n) + "\r\n";
  resp::ReplyParser parser;
  Count sink;
  for (auto _ : state) {
    parser.feed(head.data(), head.size(), sink);
    for (size_t left = n; left > 0;) {
      size_t k = std::min(left, payload.size());
      parser.feed(payload.data(), k, sink);
      left -= k;
    }
    parser.feed("\r\n", 2, sink);
  }
  state.SetBytesProcessed(int64_t(state.iterations() * (n + head.size() + 2)));
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_LargeBulk)->Arg(1 << 20)->Arg(100 << 20);

void BM_PairingOnly(benchmark::State& state) {  // on_request + on_reply per GET
  resp::RequestFrame rq;
  rq.argc = 2;
  rq.cmd = resp::lookup("GET");
  rq.name = "GET";
  rq.has_key = true;
  rq.key = {"key:100001", 10};
  resp::ReplyFrame rp;
  rp.type = resp::Type::Bulk;
  rp.size = 20;
  proxy::Pairing p;
  uint64_t now = 0;
  for (auto _ : state) {
    for (int i = 0; i < 100; ++i) p.on_request(rq, ++now);
    for (int i = 0; i < 100; ++i) benchmark::DoNotOptimize(p.on_reply(rp, ++now));
  }
  state.SetItemsProcessed(int64_t(state.iterations() * 100));
}
BENCHMARK(BM_PairingOnly);

// The whole RESP cost of one pipelined GET in the proxy: parse the request, pair it, parse the
// reply, pair it.
void BM_ProxyPathGet(benchmark::State& state) {
  std::string reqs, reps;
  for (int i = 0; i < 1000; ++i) {
    reqs += mb({"GET", "key:" + std::to_string(100000 + i)});
    reps += "$20\r\nvalue-of-twenty-byte\r\n";
  }
  resp::CaptureOptions cap;
  cap.max_args = 3;
  resp::RequestParser rq({}, cap);
  resp::ReplyParser rp({}, cap);
  proxy::Pairing p;
  uint64_t now = 0, lat = 0;
  auto on_req = [&](const resp::RequestFrame& f) { p.on_request(f, ++now); };
  auto on_rep = [&](const resp::ReplyFrame& f) { lat += p.on_reply(f, ++now).latency_us; };
  const size_t chunk = 16 * 1024;
  for (auto _ : state) {
    for (size_t at = 0; at < reqs.size(); at += chunk)
      rq.feed(reqs.data() + at, std::min(chunk, reqs.size() - at), on_req);
    for (size_t at = 0; at < reps.size(); at += chunk)
      rp.feed(reps.data() + at, std::min(chunk, reps.size() - at), on_rep);
  }
  benchmark::DoNotOptimize(lat);
  state.SetBytesProcessed(int64_t(state.iterations() * (reqs.size() + reps.size())));
  state.SetItemsProcessed(int64_t(state.iterations() * 1000));
}
BENCHMARK(BM_ProxyPathGet);

} // namespace
