#pragma once
// Shared by the RESP fuzzers: feeding one input whole, byte by byte and at pseudo-random split
// points (derived from the input, so a crash reproduces) must give identical frames and the
// same error offset; frames must tile the stream without gaps.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "resp_test_util.h"

namespace faultline::fuzz {

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant failed: %s\n", what);
    std::abort();
  }
}

inline std::vector<size_t> splits(const uint8_t* data, size_t size, uint32_t salt) {
  std::vector<size_t> cuts;
  uint32_t h = 2166136261u ^ salt;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
  for (size_t at = 0; at < size;) {
    h = h * 1103515245u + 12345u;
    size_t n = 1 + (h >> 16) % 17;
    cuts.push_back(n);
    at += n;
  }
  return cuts;
}

template <class Run> void check_tiling(const Run& r, size_t size) {
  uint64_t at = 0;
  for (const auto& f : r.frames) {
    check(f.start == at, "frames tile the stream");
    check(f.end > f.start && f.end <= size, "frame range");
    at = f.end;
  }
  if (r.failed) check(r.error.offset >= at && r.error.offset < size, "error offset in range");
}

template <class Runner>
void check_splits(const uint8_t* data, size_t size, Runner run) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto whole = run(in, std::vector<size_t>{});
  check_tiling(whole, size);
  check(run(in, resp::test::bytewise(size)) == whole, "byte by byte == whole");
  check(run(in, splits(data, size, 1)) == whole, "random splits == whole");
  check(run(in, splits(data, size, 2)) == whole, "random splits (2) == whole");
}

inline resp::Limits small_limits() {
  resp::Limits l;
  l.max_depth = 6;
  l.max_elements = 300;
  l.max_bulk_len = 1 << 16;
  l.max_inline_len = 512;
  l.max_line_len = 512;
  return l;
}

inline resp::CaptureOptions small_capture() {
  resp::CaptureOptions c;
  c.max_args = 4;
  c.arg_cap_bytes = 16;
  c.text_cap_bytes = 8;
  return c;
}

// A sink that takes simple requests / replies when offered (declining every third) sees every
// frame once, at the offsets the plain run reports, and is offered only simple ones.
struct OfferSink {
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  int offers = 0;
  bool take() { return ++offers % 3 != 0; }
  bool on_simple_request(const resp::SimpleRequest& r) {
    check(r.cmd != nullptr && r.end > r.start, "simple request facts");
    if (!take()) return false;
    seen.emplace_back(r.start, r.end);
    return true;
  }
  // Runs: every other one declined, the others taken whole (requests) or in part (replies).
  bool on_simple_run(const resp::SimpleRun& r) {
    check(r.count >= 1 && r.size > 0 && r.cmd != nullptr, "simple run facts");
    if (!take()) return false;
    for (size_t i = 0; i < r.count; ++i) {
      const resp::SimpleRequest q = r.frame(i);
      check(q.start == (seen.empty() ? q.start : seen.back().second), "run follows");
      seen.emplace_back(q.start, q.end);
    }
    return true;
  }
  void on_request(const resp::RequestFrame& f) { seen.emplace_back(f.start, f.end); }
  size_t on_simple_reply_run(const resp::SimpleReplyRun& r) {
    check(r.count >= 1 && r.size > 0 && r.type != resp::Type::Error, "simple reply run facts");
    const size_t n = take() ? (offers % 2 ? r.count : r.count / 2) : 0;
    for (size_t i = 0; i < n; ++i) seen.emplace_back(r.start + i * r.size, r.start + (i + 1) * r.size);
    return n;
  }
  bool on_simple_reply(const resp::SimpleReply& r) {
    check(r.type != resp::Type::Error && r.end > r.start, "simple reply facts");
    if (!take()) return false;
    seen.emplace_back(r.start, r.end);
    return true;
  }
  void on_reply(const resp::ReplyFrame& f) { seen.emplace_back(f.start, f.end); }
};

template <class Parser, class Run>
void check_offers(const uint8_t* data, size_t size, const Run& whole, const resp::Limits& l,
                  const resp::CaptureOptions& c) {
  for (uint32_t salt : {0u, 3u}) {
    Parser p(l, c);
    OfferSink sink;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    size_t at = 0;
    for (size_t n : salt ? splits(data, size, salt) : std::vector<size_t>{size}) {
      if (at >= size) break;
      std::string chunk(in.substr(at, std::min(n, size - at)));
      p.feed(chunk.data(), chunk.size(), sink);
      at += chunk.size();
    }
    check(sink.seen.size() == whole.frames.size(), "offered + frames == frames");
    for (size_t i = 0; i < sink.seen.size(); ++i)
      check(sink.seen[i].first == whole.frames[i].start &&
                sink.seen[i].second == whole.frames[i].end,
            "offered frame offsets");
  }
}

} // namespace faultline::fuzz
