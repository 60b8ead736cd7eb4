#pragma once
// Helpers shared by the RESP tests: frames copied into comparable records, and feeding a byte
// stream whole, at a split point, or one byte at a time.

#include <string>
#include <vector>

#include "resp/parser.h"

namespace faultline::resp::test {

struct ReqRec {
  uint64_t start = 0, end = 0, argc = 0;
  std::string name, sub, key;
  uint64_t key_len = 0;
  bool has_key = false, is_inline = false, simple = false;
  int cmd_id = -1;
  std::vector<std::pair<std::string, uint64_t>> args;  // first 256 bytes + true length
  bool operator==(const ReqRec&) const = default;
};

struct RepRec {
  uint64_t start = 0, end = 0;
  Type type = Type::None;
  bool is_null = false, streamed = false, has_attribute = false, has_tail_int = false;
  int64_t size = 0, integer = 0, tail_int = 0;
  std::string text, head;
  bool operator==(const RepRec&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const ReqRec& r) {
  os << "[" << r.start << "," << r.end << ") " << r.name << (r.sub.empty() ? "" : " ") << r.sub
     << " argc=" << r.argc << " key=" << (r.has_key ? r.key : "-")
     << (r.simple ? " simple" : "");
  for (auto& a : r.args) os << " '" << a.first << "'/" << a.second;
  return os;
}
inline std::ostream& operator<<(std::ostream& os, const RepRec& r) {
  return os << "[" << r.start << "," << r.end << ") " << type_name(r.type) << " size=" << r.size
            << " int=" << r.integer << " text='" << r.text << "' head='" << r.head
            << "' null=" << r.is_null << " streamed=" << r.streamed
            << " attr=" << r.has_attribute << " tail=" << r.tail_int;
}

inline std::string cut(std::string_view s, size_t n) { return std::string(s.substr(0, n)); }

inline ReqRec record(const RequestFrame& f, size_t cap = 256) {
  ReqRec r;
  r.start = f.start;
  r.end = f.end;
  r.argc = f.argc;
  r.name = std::string(f.name);
  r.sub = std::string(f.sub);
  r.has_key = f.has_key;
  if (f.has_key) {
    r.key = cut(f.key.data, cap);
    r.key_len = f.key.len;
  }
  r.is_inline = f.is_inline;
  r.simple = f.simple;
  r.cmd_id = f.cmd ? f.cmd->id : -1;
  for (const Arg& a : f.args) r.args.emplace_back(cut(a.data, cap), a.len);
  return r;
}

inline RepRec record(const ReplyFrame& f, size_t = 0) {
  RepRec r;
  r.start = f.start;
  r.end = f.end;
  r.type = f.type;
  r.is_null = f.is_null;
  r.streamed = f.streamed;
  r.has_attribute = f.has_attribute;
  r.size = f.size;
  r.integer = f.integer;
  r.text = std::string(f.text);
  r.head = std::string(f.head);
  r.tail_int = f.tail_int;
  r.has_tail_int = f.has_tail_int;
  return r;
}

template <class P, class Rec> struct Run {
  std::vector<Rec> frames;
  bool failed = false;
  ParseError error;
  bool operator==(const Run& o) const {
    return frames == o.frames && failed == o.failed && error.offset == o.error.offset &&
           (error.reason == nullptr) == (o.error.reason == nullptr);
  }
};

// Feeds `in` in pieces of the given sizes (the rest whole); step 0 = whole.
template <class P, class Rec>
Run<P, Rec> run_chunks(std::string_view in, const std::vector<size_t>& cuts,
                       const Limits& limits = {}, const CaptureOptions& cap = {}) {
  P parser(limits, cap);
  Run<P, Rec> out;
  auto sink = [&](const auto& f) { out.frames.push_back(record(f, cap.arg_cap_bytes)); };
  size_t at = 0;
  for (size_t c : cuts) {
    if (at >= in.size()) break;
    size_t n = std::min(c, in.size() - at);
    // Copy into a fresh buffer so views into a previous chunk would be caught by ASan.
    std::string chunk(in.substr(at, n));
    parser.feed(chunk.data(), chunk.size(), sink);
    at += n;
  }
  if (at < in.size()) {
    std::string chunk(in.substr(at));
    parser.feed(chunk.data(), chunk.size(), sink);
  }
  out.failed = parser.failed();
  out.error = parser.error();
  return out;
}

using ReqRun = Run<RequestParser, ReqRec>;
using RepRun = Run<ReplyParser, RepRec>;

inline ReqRun requests(std::string_view in, std::vector<size_t> cuts = {},
                       const Limits& l = {}, const CaptureOptions& c = {}) {
  return run_chunks<RequestParser, ReqRec>(in, cuts, l, c);
}
inline RepRun replies(std::string_view in, std::vector<size_t> cuts = {}, const Limits& l = {},
                      const CaptureOptions& c = {}) {
  return run_chunks<ReplyParser, RepRec>(in, cuts, l, c);
}

inline std::vector<size_t> bytewise(size_t n) { return std::vector<size_t>(n, 1); }

} // namespace faultline::resp::test
