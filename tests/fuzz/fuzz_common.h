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

} // namespace faultline::fuzz
