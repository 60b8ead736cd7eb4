#include <gtest/gtest.h>

#include <tuple>

#include <chrono>

#include "resp/parser.h"
#include "resp_test_util.h"

namespace faultline::resp {
namespace {

using test::bytewise;
using test::replies;

void expect_split_invariant(const std::string& in, const Limits& l = {}) {
  auto whole = replies(in, {}, l);
  for (size_t i = 1; i < in.size(); ++i)
    ASSERT_EQ(replies(in, {i}, l), whole) << "split at " << i;
  for (size_t i = 1; i + 3 < in.size(); i += 2)
    ASSERT_EQ(replies(in, {i, 3}, l), whole) << "splits at " << i << "," << i + 3;
  ASSERT_EQ(replies(in, bytewise(in.size()), l), whole) << "byte by byte";
}

test::RepRec one(const std::string& in) {
  auto r = replies(in);
  EXPECT_FALSE(r.failed) << in << " " << (r.error.reason ? r.error.reason : "");
  EXPECT_EQ(r.frames.size(), 1u) << in;
  if (r.frames.empty()) return {};
  EXPECT_EQ(r.frames[0].start, 0u);
  EXPECT_EQ(r.frames[0].end, in.size()) << in;
  return r.frames[0];
}

TEST(ReplyParser, Resp2Types) {
  auto s = one("+OK\r\n");
  EXPECT_EQ(s.type, Type::SimpleString);
  EXPECT_EQ(s.text, "OK");
  auto e = one("-LOADING Redis is loading the dataset in memory\r\n");
  EXPECT_EQ(e.type, Type::Error);
  EXPECT_EQ(e.text, "LOADING Redis is loading the dataset in memory");
  auto i = one(":-42\r\n");
  EXPECT_EQ(i.type, Type::Integer);
  EXPECT_EQ(i.integer, -42);
  auto b = one("$5\r\nhello\r\n");
  EXPECT_EQ(b.type, Type::Bulk);
  EXPECT_EQ(b.size, 5);
  EXPECT_EQ(b.text, "hello");
  auto eb = one("$0\r\n\r\n");
  EXPECT_EQ(eb.size, 0);
  EXPECT_FALSE(eb.is_null);
  auto nb = one("$-1\r\n");
  EXPECT_TRUE(nb.is_null);
  EXPECT_EQ(nb.type, Type::Bulk);
  auto na = one("*-1\r\n");
  EXPECT_TRUE(na.is_null);
  EXPECT_EQ(na.type, Type::Array);
  auto a = one("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n");
  EXPECT_EQ(a.type, Type::Array);
  EXPECT_EQ(a.size, 3);
  EXPECT_EQ(a.head, "message");
  auto ea = one("*0\r\n");
  EXPECT_EQ(ea.size, 0);
  auto sub = one("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
  EXPECT_EQ(sub.head, "subscribe");
  EXPECT_TRUE(sub.has_tail_int);
  EXPECT_EQ(sub.tail_int, 1);
  EXPECT_EQ(one(":9223372036854775807\r\n").integer, INT64_MAX);
  EXPECT_EQ(one(":-9223372036854775808\r\n").integer, INT64_MIN);
  EXPECT_TRUE(replies(":9223372036854775808\r\n").failed);
}

TEST(ReplyParser, ErrorPrefix) {
  ReplyParser p;
  std::string in = "-MOVED 3999 127.0.0.1:6381\r\n!21\r\nSYNTAX invalid syntax\r\n";
  std::vector<std::string> prefixes;
  p.feed(in.data(), in.size(),
         [&](const ReplyFrame& f) { prefixes.emplace_back(f.error_prefix()); });
  EXPECT_EQ(prefixes, (std::vector<std::string>{"MOVED", "SYNTAX"}));
}

TEST(ReplyParser, Resp3Types) {
  EXPECT_TRUE(one("_\r\n").is_null);
  EXPECT_EQ(one("_\r\n").type, Type::Null);
  auto d = one(",3.14\r\n");
  EXPECT_EQ(d.type, Type::Double);
  EXPECT_EQ(d.text, "3.14");
  EXPECT_EQ(one(",inf\r\n").text, "inf");
  auto t = one("#t\r\n");
  EXPECT_EQ(t.type, Type::Boolean);
  EXPECT_EQ(t.integer, 1);
  EXPECT_EQ(one("#f\r\n").integer, 0);
  auto be = one("!21\r\nSYNTAX invalid syntax\r\n");
  EXPECT_EQ(be.type, Type::BlobError);
  EXPECT_EQ(be.size, 21);
  auto v = one("=15\r\ntxt:Some string\r\n");
  EXPECT_EQ(v.type, Type::Verbatim);
  EXPECT_EQ(v.text, "txt:Some string");
  auto big = one("(3492890328409238509324850943850943825024385\r\n");
  EXPECT_EQ(big.type, Type::BigNumber);
  auto m = one("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n");
  EXPECT_EQ(m.type, Type::Map);
  EXPECT_EQ(m.size, 2);
  auto st = one("~3\r\n+a\r\n+b\r\n+c\r\n");
  EXPECT_EQ(st.type, Type::Set);
  EXPECT_EQ(st.size, 3);
  auto push = one(">3\r\n+message\r\n+ch\r\n+hello\r\n");
  EXPECT_EQ(push.type, Type::Push);
  EXPECT_EQ(push.head, "message");
  auto inv = one(">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nfoo\r\n");
  EXPECT_EQ(inv.head, "invalidate");
}

TEST(ReplyParser, AttributesAttachToTheNextValue) {
  std::string in = "|1\r\n+key-popularity\r\n*2\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2039123\r\n:9543892\r\n";
  auto r = one(in);
  EXPECT_TRUE(r.has_attribute);
  EXPECT_EQ(r.type, Type::Array);
  EXPECT_EQ(r.size, 2);
  EXPECT_EQ(r.tail_int, 9543892);
  // Inside an aggregate an attribute is not an element.
  auto n = one("*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n");
  EXPECT_EQ(n.size, 2);
  EXPECT_EQ(n.tail_int, 2);
  auto e = one("|0\r\n+OK\r\n");
  EXPECT_EQ(e.text, "OK");
  EXPECT_TRUE(e.has_attribute);
}

TEST(ReplyParser, StreamedStringsAndAggregates) {
  auto s = one("$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n");
  EXPECT_EQ(s.type, Type::Bulk);
  EXPECT_TRUE(s.streamed);
  EXPECT_EQ(s.size, -1);
  EXPECT_EQ(s.text, "Hello word");
  auto a = one("*?\r\n:1\r\n:2\r\n*?\r\n+x\r\n.\r\n.\r\n");
  EXPECT_EQ(a.type, Type::Array);
  EXPECT_TRUE(a.streamed);
  auto m = one("%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n");
  EXPECT_EQ(m.type, Type::Map);
  auto st = one("~?\r\n+a\r\n.\r\n");
  EXPECT_EQ(st.type, Type::Set);
  auto nested = one("*2\r\n$?\r\n;1\r\na\r\n;0\r\n:5\r\n");
  EXPECT_EQ(nested.head, "a");
}

TEST(ReplyParser, SplitInvariance) {
  std::string in =
      "+OK\r\n-ERR x\r\n:12\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n$9\r\nsubscribe\r\n:1\r\n"
      "_\r\n,1.5\r\n#t\r\n!3\r\nERR\r\n=7\r\ntxt:abc\r\n(123\r\n%1\r\n+k\r\n*1\r\n:1\r\n"
      "~1\r\n+s\r\n|1\r\n+a\r\n+b\r\n>2\r\n+pubsub\r\n+x\r\n$?\r\n;2\r\nab\r\n;0\r\n"
      "*?\r\n:1\r\n%?\r\n+k\r\n:1\r\n.\r\n.\r\n*0\r\n$0\r\n\r\n";
  expect_split_invariant(in);
  auto r = replies(in);
  EXPECT_FALSE(r.failed);
  EXPECT_EQ(r.frames.size(), 20u);  // the attribute decorates the push
  for (size_t i = 1; i < r.frames.size(); ++i) EXPECT_EQ(r.frames[i].start, r.frames[i - 1].end);
}

TEST(ReplyParser, LargeBulkIsSkippedByLength) {
  const size_t n = 100u << 20;
  std::string header = "$" + std::to_string(n) + "\r\n";
  std::string chunk(64 * 1024, 'x');
  ReplyParser p;
  int frames = 0;
  uint64_t end = 0;
  auto sink = [&](const ReplyFrame& f) {
    ++frames;
    end = f.end;
    if (f.type != Type::Bulk) return;
    EXPECT_EQ(f.size, int64_t(n));
    EXPECT_EQ(f.text.size(), 128u);
  };
  auto t0 = std::chrono::steady_clock::now();
  p.feed(header.data(), header.size(), sink);
  for (size_t left = n; left > 0;) {
    size_t k = std::min(left, chunk.size());
    p.feed(chunk.data(), k, sink);
    left -= k;
    EXPECT_TRUE(p.mid_frame());
  }
  p.feed("\r\n+OK\r\n", 7, sink);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
  EXPECT_EQ(frames, 2);
  EXPECT_EQ(p.offset(), header.size() + n + 7);
  EXPECT_LT(ms, 500);  // skipped, not scanned (~1 ms when optimised)
}

TEST(ReplyParser, MidFrame) {
  ReplyParser p;
  int n = 0;
  auto sink = [&](const ReplyFrame&) { ++n; };
  p.feed("+OK\r\n*2\r\n:1", 11, sink);
  EXPECT_TRUE(p.mid_frame());
  EXPECT_EQ(p.frame_start(), 5u);
  p.feed("\r\n:2\r\n", 6, sink);
  EXPECT_FALSE(p.mid_frame());
  EXPECT_EQ(p.frame_start(), 17u);
  EXPECT_EQ(n, 2);
  p.feed("|1\r\n+a\r\n+b\r\n", 12, sink);  // a lone attribute is not a frame yet
  EXPECT_TRUE(p.mid_frame());
  EXPECT_EQ(n, 2);
}

struct BadCase {
  std::string in;
  uint64_t offset;
};

TEST(ReplyParser, MalformedIsStickyWithOffset) {
  const BadCase cases[] = {
      {"+OK\r\n?\r\n", 5},                 // unknown type byte
      {"+OK\n", 3},                        // LF without CR
      {"$3\r\nabcd\r\n", 7},               // payload longer than announced
      {"$-2\r\n", 4},                      // negative bulk length
      {"*-2\r\n", 4},                      // negative aggregate length
      {"%-1\r\n", 4},                      // only arrays may be null
      {"#x\r\n", 3},                       // boolean must be t or f
      {"_x\r\n", 3},                       // null line must be empty
      {".\r\n", 2},                        // end outside a streamed aggregate
      {"*1\r\n.\r\n", 6},                  // end inside a counted aggregate
      {"$?\r\n+x\r\n", 4},                 // streamed string expects ';'
      {":12a\r\n", 3},                     // bad integer
      {",\r\n", 2},                        // empty double
      {"\r\n", 0},                         // empty line
  };
  for (const auto& c : cases) {
    auto r = replies(c.in);
    EXPECT_TRUE(r.failed) << c.in;
    EXPECT_EQ(r.error.offset, c.offset) << c.in;
    EXPECT_EQ(replies(c.in, bytewise(c.in.size())), r) << c.in;
  }
  ReplyParser p;
  int n = 0;
  auto sink = [&](const ReplyFrame&) { ++n; };
  EXPECT_EQ(p.feed("+OK\r\n@", 6, sink), Status::Error);
  EXPECT_EQ(p.feed("+OK\r\n", 5, sink), Status::Error);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(p.error().offset, 5u);
  EXPECT_STREQ(p.error().reason, "invalid reply type byte");
}

TEST(ReplyParser, Limits) {
  Limits l;
  l.max_depth = 3;
  EXPECT_FALSE(replies("*1\r\n*1\r\n*1\r\n:1\r\n", {}, l).failed);
  auto deep = replies("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", {}, l);
  EXPECT_TRUE(deep.failed);
  EXPECT_EQ(deep.error.offset, 15u);
  EXPECT_STREQ(deep.error.reason, "nesting too deep");
  l = {};
  l.max_elements = 2;
  EXPECT_TRUE(replies("*3\r\n", {}, l).failed);
  EXPECT_TRUE(replies("%3\r\n", {}, l).failed);
  EXPECT_FALSE(replies("%2\r\n", {}, l).failed);
  l = {};
  l.max_bulk_len = 3;
  EXPECT_TRUE(replies("$4\r\n", {}, l).failed);
  EXPECT_TRUE(replies("$?\r\n;4\r\n", {}, l).failed);
  l = {};
  l.max_line_len = 4;
  EXPECT_FALSE(replies("+1234\r\n", {}, l).failed);
  auto longline = replies("+12345\r\n", {}, l);
  EXPECT_TRUE(longline.failed);
  EXPECT_EQ(longline.error.offset, 6u);
  EXPECT_EQ(replies("+12345\r\n", bytewise(8), l), longline);
  // Default depth bound holds against a hostile nesting.
  std::string hostile;
  for (int i = 0; i < 1000; ++i) hostile += "*1\r\n";
  EXPECT_TRUE(replies(hostile).failed);
}

// A sink with on_simple_reply() is offered each top-level non-error scalar before its frame is
// built; errors, aggregates and declined scalars come as frames, every reply once, in order.
TEST(ReplyParser, SimpleRepliesAreOfferedFirst) {
  std::string in;
  for (int i = 0; i < 30; ++i) {
    in += "+OK\r\n$3\r\nabc\r\n:" + std::to_string(i * 1000 - 7) + "\r\n$-1\r\n";
    if (i % 4 == 0) in += "-ERR no\r\n*2\r\n$1\r\na\r\n:1\r\n";
    if (i % 6 == 0) in += "+QUEUED\r\n$200\r\n" + std::string(200, 'x') + "\r\n";
  }
  auto whole = replies(in);
  ASSERT_FALSE(whole.failed);
  for (size_t chunk : {in.size(), size_t(1), size_t(5), size_t(33)}) {
    for (int decline_every : {0, 2}) {
      struct Sink {
        std::vector<std::tuple<uint64_t, uint64_t, Type, bool>> seen;
        int decline_every;
        int offers = 0;
        bool on_simple_reply(const SimpleReply& r) {
          EXPECT_NE(r.type, Type::Error);
          if (decline_every && ++offers % decline_every == 0) return false;
          seen.emplace_back(r.start, r.end, r.type, true);
          return true;
        }
        void on_reply(const ReplyFrame& f) { seen.emplace_back(f.start, f.end, f.type, false); }
      } sink{{}, decline_every};
      ReplyParser p;
      for (size_t at = 0; at < in.size(); at += chunk) {
        std::string piece = in.substr(at, chunk);
        ASSERT_EQ(p.feed(piece, sink), Status::Ok);
      }
      ASSERT_EQ(sink.seen.size(), whole.frames.size()) << "chunk " << chunk;
      size_t offered = 0;
      for (size_t i = 0; i < sink.seen.size(); ++i) {
        const auto& [start, end, type, was_offered] = sink.seen[i];
        EXPECT_EQ(start, whole.frames[i].start) << i;
        EXPECT_EQ(end, whole.frames[i].end) << i;
        EXPECT_EQ(type, whole.frames[i].type) << i;
        if (was_offered) ++offered;
      }
      if (kFastPaths && chunk == in.size() && decline_every == 0) { // (offers: a fast path's)
        EXPECT_GE(offered, 120u);
      }
    }
  }
}

// A sink with on_simple_reply_run() is offered the replies laid out like the one it just took
// (the same first line and size) as one run, and takes as many as it likes from the first; the
// rest come one by one. Bulks of one length with other payloads are alike, integers of one
// width with other digits are not, lines over 8 bytes make no runs.
TEST(ReplyParser, SimpleReplyRunsAgreeWithFrames) {
  std::string in;
  for (int i = 0; i < 12; ++i) {
    for (int k = 0; k < 9; ++k) in += "+OK\r\n";
    for (int k = 0; k < 6; ++k) in += "$-1\r\n";
    for (int k = 0; k < 7; ++k) in += "$3\r\n" + std::string(1, char('a' + k)) + "\r\n\r\n";
    in += "$3\r\n+OK\r\n";  // a payload like a reply: still a 3-byte bulk
    for (int k = 0; k < 5; ++k) in += ":" + std::to_string(k % 2 ? 5 : 6) + "\r\n";
    for (int k = 0; k < 4; ++k) in += ":77\r\n";
    for (int k = 0; k < 3; ++k) in += "+QUEUED\r\n";
    for (int k = 0; k < 3; ++k) in += "$12\r\n" + std::string(12, 'x') + "\r\n";
    if (i % 3 == 0) in += "-ERR no\r\n*2\r\n$1\r\na\r\n:1\r\n%1\r\n+a\r\n+b\r\n";
  }
  auto whole = replies(in);
  ASSERT_FALSE(whole.failed);
  for (size_t chunk : {in.size(), size_t(1), size_t(5), size_t(33), size_t(200)}) {
    for (uint32_t take_at_most : {1000u, 2u, 0u}) {
      struct Sink {
        std::vector<std::tuple<uint64_t, uint64_t, Type>> seen;
        uint32_t take_at_most;
        size_t in_runs = 0;
        bool on_simple_reply(const SimpleReply& r) {
          seen.emplace_back(r.start, r.end, r.type);
          return true;
        }
        size_t on_simple_reply_run(const SimpleReplyRun& r) {
          EXPECT_GE(r.count, 1u);
          const uint32_t n = std::min(r.count, take_at_most);
          for (uint32_t i = 0; i < n; ++i)
            seen.emplace_back(r.start + uint64_t(i) * r.size, r.start + uint64_t(i + 1) * r.size,
                              r.type);
          in_runs += n;
          return n;
        }
        void on_reply(const ReplyFrame& f) { seen.emplace_back(f.start, f.end, f.type); }
      } sink{{}, take_at_most};
      ReplyParser p;
      for (size_t at = 0; at < in.size(); at += chunk) {
        std::string piece = in.substr(at, chunk);
        ASSERT_EQ(p.feed(piece, sink), Status::Ok);
      }
      ASSERT_EQ(sink.seen.size(), whole.frames.size()) << "chunk " << chunk;
      for (size_t i = 0; i < sink.seen.size(); ++i) {
        const auto& [start, end, type] = sink.seen[i];
        EXPECT_EQ(start, whole.frames[i].start) << chunk << " " << i;
        EXPECT_EQ(end, whole.frames[i].end) << chunk << " " << i;
        EXPECT_EQ(type, whole.frames[i].type) << chunk << " " << i;
      }
      if (kFastPaths && chunk == in.size() && take_at_most == 1000) { // (runs: a fast path's)
        // +OK, $-1, the 3-byte bulks, :77 and the 12-byte bulks after their first; not :5/:6
        // (alternating), not +QUEUED (a 9-byte line).
        EXPECT_EQ(sink.in_runs, 12u * (8 + 5 + 7 + 3 + 2));
      }
    }
  }
}

// A frame that starts like the run before it but is not RESP ends the run: the parser reports
// the error at the byte the state machine finds, after the good frames.
TEST(ReplyParser, ReplyRunStopsAtABrokenFrame) {
  for (const std::string bad : {"$3\r\nabc\rX", "$3\r\nabcXY", "+OK\nXY"}) {
    std::string good = bad[0] == '$' ? "$3\r\nxyz\r\n" : "+OK\r\n";
    std::string in = good + good + good + bad + good + good;
    struct Sink {
      size_t frames = 0;
      bool on_simple_reply(const SimpleReply&) { return ++frames, true; }
      size_t on_simple_reply_run(const SimpleReplyRun& r) { return frames += r.count, r.count; }
      void on_reply(const ReplyFrame&) { ++frames; }
    } sink;
    ReplyParser p;
    EXPECT_EQ(p.feed(in, sink), Status::Error) << bad;
    EXPECT_EQ(sink.frames, 3u) << bad;
    ReplyParser q;
    EXPECT_EQ(q.feed(in, [](const ReplyFrame&) {}), Status::Error);
    EXPECT_EQ(p.error().offset, q.error().offset) << bad;
  }
}

} // namespace
} // namespace faultline::resp
