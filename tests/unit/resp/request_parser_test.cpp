#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <tuple>

#include "resp/parser.h"
#include "resp_test_util.h"

namespace faultline::resp {
namespace {

using test::bytewise;
using test::requests;

std::string mb(std::initializer_list<std::string_view> args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) s += "$" + std::to_string(a.size()) + "\r\n" + std::string(a) + "\r\n";
  return s;
}

// Checks that every split point and byte-at-a-time feeding give the same frames as one chunk.
void expect_split_invariant(const std::string& in, const Limits& l = {},
                            const CaptureOptions& c = {}) {
  auto whole = requests(in, {}, l, c);
  for (size_t i = 1; i < in.size(); ++i)
    ASSERT_EQ(requests(in, {i}, l, c), whole) << "split at " << i;
  for (size_t i = 1; i + 2 < in.size(); i += 3)
    ASSERT_EQ(requests(in, {i, 2}, l, c), whole) << "splits at " << i << "," << i + 2;
  ASSERT_EQ(requests(in, bytewise(in.size()), l, c), whole) << "byte by byte";
}

TEST(RequestParser, MultibulkGet) {
  auto r = requests("*2\r\n$3\r\nget\r\n$3\r\nfoo\r\n");
  ASSERT_FALSE(r.failed);
  ASSERT_EQ(r.frames.size(), 1u);
  auto& f = r.frames[0];
  EXPECT_EQ(f.start, 0u);
  EXPECT_EQ(f.end, 22u);
  EXPECT_EQ(f.name, "GET");
  EXPECT_EQ(f.argc, 2u);
  EXPECT_TRUE(f.has_key);
  EXPECT_EQ(f.key, "foo");
  ASSERT_EQ(f.args.size(), 2u);
  EXPECT_EQ(f.args[0].first, "get");
  EXPECT_NE(f.cmd_id, -1);
  EXPECT_FALSE(f.is_inline);
}

TEST(RequestParser, PipelineOffsetsAreAbsolute) {
  std::string a = mb({"SET", "k", "v"}), b = mb({"GET", "k"}), c = mb({"PING"});
  auto r = requests(a + b + c, {5, 30});
  ASSERT_EQ(r.frames.size(), 3u);
  EXPECT_EQ(r.frames[0].start, 0u);
  EXPECT_EQ(r.frames[0].end, a.size());
  EXPECT_EQ(r.frames[1].start, a.size());
  EXPECT_EQ(r.frames[1].end, a.size() + b.size());
  EXPECT_EQ(r.frames[2].end, a.size() + b.size() + c.size());
  EXPECT_EQ(r.frames[2].name, "PING");
  EXPECT_FALSE(r.frames[2].has_key);
}

TEST(RequestParser, SubcommandsAndKeys) {
  auto r = requests(mb({"client", "setname", "x"}) + mb({"object", "encoding", "mykey"}) +
                    mb({"CONFIG", "GET", "maxmemory"}) + mb({"client"}) +
                    mb({"client", "nosuchsub"}));
  ASSERT_EQ(r.frames.size(), 5u);
  EXPECT_EQ(r.frames[0].name, "CLIENT");
  EXPECT_EQ(r.frames[0].sub, "SETNAME");
  EXPECT_FALSE(r.frames[0].has_key);
  EXPECT_EQ(r.frames[1].sub, "ENCODING");
  EXPECT_EQ(r.frames[1].key, "mykey");
  EXPECT_EQ(r.frames[2].sub, "GET");
  EXPECT_EQ(r.frames[3].sub, "");
  EXPECT_EQ(r.frames[3].cmd_id, lookup("CLIENT")->id);
  EXPECT_EQ(r.frames[4].cmd_id, lookup("CLIENT")->id);  // unknown sub: the container
}

TEST(RequestParser, MovableKeys) {
  auto r = requests(mb({"EVAL", "return 1", "2", "k1", "k2", "a"}) +
                    mb({"EVAL", "return 1", "0", "a"}) +
                    mb({"XREAD", "COUNT", "2", "streams", "s1", "s2", "0", "0"}) +
                    mb({"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"}) +
                    mb({"MIGRATE", "h", "6379", "k", "0", "100"}) +
                    mb({"ZUNIONSTORE", "dst", "2", "a", "b"}) + mb({"LMPOP", "2", "l1", "l2", "LEFT"}) +
                    mb({"FCALL", "f", "1", "fk"}) + mb({"MSET", "a", "1", "b", "2"}));
  ASSERT_EQ(r.frames.size(), 9u);
  EXPECT_EQ(r.frames[0].key, "k1");
  EXPECT_FALSE(r.frames[1].has_key);
  EXPECT_EQ(r.frames[2].key, "s1");
  EXPECT_EQ(r.frames[3].key, "s");
  EXPECT_EQ(r.frames[4].key, "k");
  EXPECT_EQ(r.frames[5].key, "dst");
  EXPECT_EQ(r.frames[6].key, "l1");
  EXPECT_EQ(r.frames[7].key, "fk");
  EXPECT_EQ(r.frames[8].key, "a");
}

TEST(RequestParser, FirstKeyIndexMatchesParser) {
  std::vector<std::string_view> argv = {"XREAD", "BLOCK", "0", "STREAMS", "a", "$"};
  EXPECT_EQ(first_key_index(*lookup("XREAD"), argv), 4);
  std::vector<std::string_view> eval = {"EVAL", "s", "1", "k"};
  EXPECT_EQ(first_key_index(*lookup("EVAL"), eval), 3);
  std::vector<std::string_view> ping = {"PING"};
  EXPECT_EQ(first_key_index(*lookup("PING"), ping), -1);
}

TEST(RequestParser, UnknownAndLongNames) {
  std::string longname(40, 'x');
  auto r = requests(mb({"nosuchcmd", "a"}) + mb({longname, "b"}));
  ASSERT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.frames[0].name, "NOSUCHCMD");
  EXPECT_EQ(r.frames[0].cmd_id, -1);
  EXPECT_EQ(r.frames[1].name, std::string(32, 'X'));
  EXPECT_EQ(r.frames[1].cmd_id, -1);
  EXPECT_EQ(r.frames[1].args[0].second, 40u);
}

TEST(RequestParser, EmptyMultibulkAndEmptyInline) {
  auto r = requests("*0\r\n*-1\r\n\r\n   \r\nPING\r\n");
  ASSERT_EQ(r.frames.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.frames[size_t(i)].argc, 0u) << i;
  EXPECT_EQ(r.frames[4].name, "PING");
  EXPECT_TRUE(r.frames[4].is_inline);
  EXPECT_EQ(r.frames[4].start, 16u);
}

TEST(RequestParser, InlineQuotesLikeSdssplitargs) {
  auto r = requests("set \"a b\" 'c\\'d' \"\\x41\\n\\t\\\\\"\r\nget  k\nPING\r\n");
  ASSERT_FALSE(r.failed);
  ASSERT_EQ(r.frames.size(), 3u);
  auto& f = r.frames[0];
  EXPECT_TRUE(f.is_inline);
  EXPECT_EQ(f.name, "SET");
  EXPECT_EQ(f.argc, 4u);
  EXPECT_EQ(f.key, "a b");
  EXPECT_EQ(f.args[2].first, "c'd");
  EXPECT_EQ(f.args[3].first, "A\n\t\\");
  EXPECT_EQ(r.frames[1].key, "k");
  EXPECT_EQ(r.frames[1].end, r.frames[2].start);
}

TEST(RequestParser, InlineUnbalancedQuotesIsStickyError) {
  auto r = requests("PING\r\nset \"abc\r\nPING\r\n");
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_TRUE(r.failed);
  EXPECT_EQ(r.error.offset, 6u);
  auto r2 = requests("set \"a\"b\r\n");
  EXPECT_TRUE(r2.failed);
  auto r3 = requests("set 'a'b\r\n");
  EXPECT_TRUE(r3.failed);
}

TEST(RequestParser, InlineLimit) {
  Limits l;
  l.max_inline_len = 10;
  auto ok = requests("0123456789\nPING\r\n", {}, l);  // exactly 10 bytes before '\n'
  EXPECT_FALSE(ok.failed);
  EXPECT_EQ(ok.frames.size(), 2u);
  auto bad = requests("PING\r\n0123456789A\n", {}, l);
  EXPECT_TRUE(bad.failed);
  EXPECT_EQ(bad.error.offset, 16u);
  EXPECT_EQ(requests("PING\r\n0123456789A\n", bytewise(20), l), bad);
  EXPECT_EQ(requests("PING\r\n0123456789A", {}, l), bad);  // no newline yet, still too long
  EXPECT_FALSE(requests("PING\r\n0123456789", {}, l).failed);
}

TEST(RequestParser, SplitInvariance) {
  std::string in = mb({"SET", "key", "value"}) + mb({"client", "reply", "skip"}) +
                   "get \"x y\" 'z'\r\n" + mb({"EVAL", "s", "1", "k"}) + "\r\n" +
                   mb({"XREAD", "STREAMS", "s", "0"}) + mb({}) + mb({"", ""}) +
                   mb({"OBJECT", "FREQ", "kk"}) + "PING\n";
  expect_split_invariant(in);
  CaptureOptions small;
  small.max_args = 3;
  small.arg_cap_bytes = 16;
  expect_split_invariant(in + mb({"MSET", std::string(40, 'k'), std::string(40, 'v')}), {},
                         small);
}

TEST(RequestParser, LargeBulkSpanningChunks) {
  std::string big(1 << 20, 'v');
  std::string key(300, 'k');
  std::string in = mb({"SET", key, big}) + mb({"GET", "x"});
  auto r = requests(in, std::vector<size_t>(in.size() / 4096 + 1, 4096));
  ASSERT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.frames[0].key_len, 300u);
  EXPECT_EQ(r.frames[0].key, std::string(256, 'k'));
  EXPECT_EQ(r.frames[0].args[2].second, big.size());
  EXPECT_EQ(r.frames[0].args[2].first.size(), 256u);
  EXPECT_EQ(r.frames[1].start, r.frames[0].end);
}

TEST(RequestParser, ViewsWhenWholeFrameInChunkCopiesOtherwise) {
  RequestParser p;
  std::string in = mb({"SET", "k", std::string(1000, 'v')});
  bool seen = false;
  p.feed(in.data(), in.size(), [&](const RequestFrame& f) {
    seen = true;
    EXPECT_GE(f.args[2].data.data(), in.data());
    EXPECT_EQ(f.args[2].data.size(), 1000u);
    EXPECT_FALSE(f.args[2].truncated());
  });
  EXPECT_TRUE(seen);
  RequestParser q;
  seen = false;
  auto sink = [&](const RequestFrame& f) {
    seen = true;
    EXPECT_EQ(f.args[2].data.size(), 256u);
    EXPECT_TRUE(f.args[2].truncated());
    EXPECT_EQ(f.key.data, "k");
  };
  q.feed(in.data(), 30, sink);  // the value starts in the first chunk
  q.feed(in.data() + 30, in.size() - 30, sink);
  EXPECT_TRUE(seen);
}

TEST(RequestParser, CaptureBoundedButArgcExact) {
  std::vector<std::string> many(100, "m");
  std::string in = "*101\r\n$4\r\nSADD\r\n";
  for (auto& m : many) in += "$1\r\n" + m + "\r\n";
  auto r = requests(in);
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.frames[0].argc, 101u);
  EXPECT_EQ(r.frames[0].args.size(), 64u);
  CaptureOptions off;
  off.max_args = 0;  // clamped to 3
  auto r2 = requests(in, {}, {}, off);
  EXPECT_EQ(r2.frames[0].args.size(), 3u);
  EXPECT_EQ(r2.frames[0].key, "m");
}

TEST(RequestParser, MidFrameAndFrameStart) {
  RequestParser p;
  int n = 0;
  auto sink = [&](const RequestFrame&) { ++n; };
  std::string a = mb({"GET", "a"});
  p.feed(a.data(), a.size(), sink);
  EXPECT_FALSE(p.mid_frame());
  EXPECT_EQ(p.frame_start(), a.size());
  p.feed("*2\r\n$3", 6, sink);
  EXPECT_TRUE(p.mid_frame());
  EXPECT_EQ(p.frame_start(), a.size());
  p.feed("\r\nGET\r\n$1\r\nb\r\n", 14, sink);
  EXPECT_FALSE(p.mid_frame());
  EXPECT_EQ(n, 2);
  EXPECT_EQ(p.offset(), a.size() + 20);
}

struct BadCase {
  const char* in;
  uint64_t offset;
};

TEST(RequestParser, MalformedIsStickyWithOffset) {
  const BadCase cases[] = {
      {"*2\r\n$3\r\nGET\r\n:3\r\n", 13},      // expected '$'
      {"*2\r\n$3\r\nGETX\r\n", 11},          // missing CRLF after bulk
      {"*2\r\n$3\r\nGET\rX", 12},            // CR not followed by LF
      {"*x\r\n", 1},                         // bad count
      {"*1\r\n$-3\r\n", 8},                  // negative bulk length (at its LF)
      {"*\r\n", 1},                          // empty count
      {"*1\r\n$1\nx\r\n", 6},                // LF without CR in the length line
      {"*99999999999999999999\r\n", 20},     // too many digits
  };
  for (const auto& c : cases) {
    std::string in = c.in;
    auto r = requests(in);
    EXPECT_TRUE(r.failed) << in;
    EXPECT_EQ(r.error.offset, c.offset) << in;
    EXPECT_EQ(requests(in, bytewise(in.size())), r) << in;
  }
  RequestParser p;
  int n = 0;
  auto sink = [&](const RequestFrame&) { ++n; };
  EXPECT_EQ(p.feed("*1\r\n$4\r\nPING\r\n*1", 16, sink), Status::Ok);
  EXPECT_EQ(p.feed("\r\n$z", 4, sink), Status::Error);
  EXPECT_EQ(p.feed("*1\r\n$4\r\nPING\r\n", 14, sink), Status::Error);
  EXPECT_EQ(n, 1);
}

TEST(RequestParser, Limits) {
  Limits l;
  l.max_bulk_len = 5;
  l.max_elements = 3;
  EXPECT_FALSE(requests(mb({"GET", "12345"}), {}, l).failed);
  auto r = requests(mb({"GET", "123456"}), {}, l);
  EXPECT_TRUE(r.failed);
  EXPECT_STREQ(r.error.reason, "invalid bulk length");
  EXPECT_EQ(r.error.offset, 16u);
  auto r2 = requests(mb({"DEL", "a", "b", "c"}), {}, l);
  EXPECT_TRUE(r2.failed);
  EXPECT_EQ(r2.error.offset, 3u);
  // Defaults: 512 MB bulk is accepted as a header (payload not needed to check).
  EXPECT_FALSE(requests("*1\r\n$536870912\r\n").failed);
  EXPECT_TRUE(requests("*1\r\n$536870913\r\n").failed);
}

// The fast path finds names through a per-parser cache of raw bytes: every case, every length
// around the 8- and 16-byte words, names at the very end of a chunk, and repeats (cache hits)
// must give what the state machine gives byte by byte.
TEST(RequestParser, NameCacheAgreesWithStateMachine) {
  std::string in;
  const char* names[] = {"get", "GET", "GeT", "set", "incr", "hset", "expire", "pexpireat",
                         "incrbyfloat", "zrangebyscore", "zrevrangebyscore", "georadius_ro",
                         "georadiusbymember_ro", "getx", "ge", "g", "client", "eval",
                         "xread", "nosuchcommand1234", "GETDEL", "getdel", "Lpush"};
  for (int round = 0; round < 3; ++round)
    for (const char* n : names) in += mb({n, "k", "v", "w"}) + mb({n}) + mb({n, "key2"});
  expect_split_invariant(in);
  auto r = requests(in);
  ASSERT_FALSE(r.failed);
  for (const auto& f : r.frames) {
    if (f.name == "GET" || f.name == "GETDEL" || f.name == "ZREVRANGEBYSCORE") {
      EXPECT_NE(f.cmd_id, -1) << f;
    }
    if (f.name == "GETX" || f.name == "GE" || f.name == "G") {
      EXPECT_EQ(f.cmd_id, -1) << f;
    }
  }
  // A name right at the end of a chunk, with fewer than a word of bytes after it.
  for (const char* tail : {"*1\r\n$3\r\nGET\r\n", "*1\r\n$4\r\nPING\r\n",
                           "*2\r\n$3\r\nget\r\n$1\r\nk\r\n"}) {
    auto one = requests(std::string(tail));
    ASSERT_EQ(one.frames.size(), 1u);
    EXPECT_NE(one.frames[0].cmd_id, -1);
    EXPECT_EQ(requests(in + tail), requests(in + tail, bytewise(in.size() + strlen(tail))));
  }
}

// RequestFrame::simple: a command the table names exactly that changes no connection state.
TEST(RequestParser, SimpleMarksPlainCommands) {
  struct Case {
    std::string bytes;
    bool simple;
  };
  const std::vector<Case> cases = {
      {mb({"GET", "k"}), true},
      {mb({"set", "k", "v"}), true},
      {mb({"CONFIG", "GET", "maxmemory"}), true},      // a known subcommand
      {mb({"EVAL", "return 1", "1", "k"}), true},      // key-count spec, roles path
      {mb({"XREAD", "STREAMS", "s", "0"}), true},      // keyword spec, roles path
      {mb({"CLIENT", "NOSUCHSUB"}), false},            // container, unknown subcommand
      {mb({"CLIENT", "REPLY", "OFF"}), false},         // changes how many replies follow
      {mb({"PING"}), false},
      {mb({"SELECT", "1"}), false},
      {mb({"MULTI"}), false},
      {mb({"SUBSCRIBE", "a"}), false},
      {mb({"HELLO", "3"}), false},
      {mb({"NOSUCHCOMMAND", "x"}), false},
      {"*0\r\n", false},
      {"GET k\r\n", true},                                // inline
      {"PING\r\n", false},
  };
  for (const auto& c : cases) {
    for (int copies : {1, 3}) {  // repeats: the name and prefix caches
      std::string in;
      for (int i = 0; i < copies; ++i) in += c.bytes;
      auto r = requests(in);
      ASSERT_EQ(r.frames.size(), size_t(copies)) << c.bytes;
      for (const auto& f : r.frames) EXPECT_EQ(f.simple, c.simple) << c.bytes;
      expect_split_invariant(in);
    }
  }
}

// The prefix cache takes a frame's argument count and command from its first 16 bytes: frames
// that share some of a prefix and differ after it, or differ only in what follows the name,
// must come out as the state machine reads them.
TEST(RequestParser, PrefixCacheAgreesWithStateMachine) {
  std::string in;
  for (int round = 0; round < 4; ++round) {
    in += mb({"GET", "key:" + std::to_string(round)});
    in += mb({"GET", "k", "extra"});                  // same name, other count
    in += mb({"GEX", "k"});                           // a letter off: unknown
    in += mb({"get", "k"});                           // lower case: other bytes, same command
    in += mb({"GETDEL", "k"}) + mb({"GETEX", "k"});  // name lengths around the words
    in += mb({"EXPIRE", "k", "10"}) + mb({"PEXPIREAT", "k", "10"});  // 16 and 19 bytes
    in += mb({"SET", std::string(120, 'k'), "v"});    // a three-digit key length
    in += mb({"HSET", "h", "f", "v", "f2", "v2"});
    in += mb({"SELECT", "0"}) + mb({"PING"});         // not simple, cached alike
    in += mb({"CLIENT", "SETNAME", "x"}) + mb({"CLIENT"});  // container with and without args
  }
  expect_split_invariant(in);
  auto r = requests(in);
  ASSERT_FALSE(r.failed);
  ASSERT_EQ(r.frames.size(), 4u * 14);
  EXPECT_EQ(r.frames[1].argc, 3u);
  EXPECT_EQ(r.frames[2].cmd_id, -1);
  EXPECT_EQ(r.frames[3].name, "GET");
  EXPECT_EQ(r.frames[3].key, "k");
  EXPECT_EQ(r.frames[12].sub, "SETNAME");
  EXPECT_TRUE(r.frames[13].sub.empty());
}

// A sink with on_simple_request() is offered each simple request before its frame is built;
// what it declines comes as a frame. Between them it sees every request once, in order, with
// the facts the frame carries.
TEST(RequestParser, SimpleRequestsAreOfferedFirst) {
  std::string in;
  for (int i = 0; i < 40; ++i) {
    in += mb({"GET", "k" + std::to_string(i)});
    if (i % 5 == 0) in += mb({"PING"});
    if (i % 7 == 0) in += mb({"SET", "key", std::string(300, 'v')});
    if (i % 11 == 0) in += "GET inline\r\n";
    if (i % 13 == 0) in += mb({"EVAL", "s", "1", "ek"});
  }
  auto whole = requests(in);
  ASSERT_FALSE(whole.failed);
  struct Seen {
    uint64_t start, end;
    int cmd_id;
    std::string key;
    bool simple, offered;
    bool operator==(const Seen&) const = default;
  };
  std::vector<Seen> want;
  for (const auto& f : whole.frames)
    want.push_back({f.start, f.end, f.cmd_id, f.has_key ? f.key : "", f.simple, false});
  for (size_t chunk : {in.size(), size_t(1), size_t(7), size_t(64), size_t(1000)}) {
    for (int decline_every : {0, 2, 3}) {
      struct Sink {
        std::vector<Seen>& seen;
        int decline_every;
        int offers = 0;
        bool on_simple_request(const SimpleRequest& r) {
          ++offers;
          if (decline_every && offers % decline_every == 0) return false;
          seen.push_back({r.start, r.end, int(r.cmd->id), r.has_key ? std::string(r.key) : "",
                          true, true});
          return true;
        }
        void on_request(const RequestFrame& f) {
          seen.push_back({f.start, f.end, f.cmd ? int(f.cmd->id) : -1,
                          f.has_key ? std::string(f.key.data) : "", f.simple, false});
        }
      };
      std::vector<Seen> seen;
      Sink sink{seen, decline_every};
      RequestParser p;
      for (size_t at = 0; at < in.size(); at += chunk) {
        std::string piece = in.substr(at, chunk);
        ASSERT_EQ(p.feed(piece, sink), Status::Ok);
      }
      ASSERT_EQ(seen.size(), want.size()) << "chunk " << chunk;
      size_t offered = 0;
      for (size_t i = 0; i < seen.size(); ++i) {
        Seen s = seen[i];
        if (s.offered) {
          ++offered;
          EXPECT_TRUE(want[i].simple) << i;
        }
        s.offered = false;
        EXPECT_EQ(s, want[i]) << "chunk " << chunk << " frame " << i;
      }
      if (kFastPaths && chunk == in.size() && decline_every == 0) { // (offers: a fast path's)
        EXPECT_GT(offered, 40u);
      }
    }
  }
}

// The shape cache takes a frame whose header lines sit where a recent frame's did, with the
// same bytes, as laid out like it. Frames that differ only in payload bytes (even bytes that
// look like headers) must match; a different length anywhere must not be taken for the shape.
TEST(RequestParser, ShapeCacheAgreesWithFrames) {
  std::string in;
  const std::string odd = "a\r\n$3\r\nxy";  // payload bytes that look like structure
  for (int i = 0; i < 50; ++i) {
    std::string k = "key:" + std::to_string(100000 + i);  // one length
    in += mb({"SET", k, i % 2 ? "vvv" : "www"});
    in += mb({"GET", k});
    if (i % 10 == 3) in += mb({"SET", k, "a longer value"});  // same prefix, other shape
    if (i % 10 == 5) in += mb({"GET", k + "x"});
    if (i % 10 == 7) in += mb({"SET", odd, odd});
    if (i % 10 == 8) in += mb({"SET", std::string(11, '\n'), ""});
  }
  auto whole = requests(in);
  ASSERT_FALSE(whole.failed);
  struct Sink {
    std::vector<std::tuple<uint64_t, uint64_t, std::string>> seen;
    bool on_simple_request(const SimpleRequest& r) {
      seen.emplace_back(r.start, r.end, std::string(r.key));
      return true;
    }
    void on_request(const RequestFrame& f) {
      seen.emplace_back(f.start, f.end, std::string(f.key.data));
    }
  };
  for (size_t chunk : {in.size(), size_t(45), size_t(100), size_t(997)}) {
    Sink sink;
    RequestParser p;
    for (size_t at = 0; at < in.size(); at += chunk) {
      std::string piece = in.substr(at, chunk);
      ASSERT_EQ(p.feed(piece, sink), Status::Ok);
    }
    ASSERT_EQ(sink.seen.size(), whole.frames.size());
    for (size_t i = 0; i < sink.seen.size(); ++i) {
      EXPECT_EQ(std::get<0>(sink.seen[i]), whole.frames[i].start) << chunk << " " << i;
      EXPECT_EQ(std::get<1>(sink.seen[i]), whole.frames[i].end) << chunk << " " << i;
      EXPECT_EQ(std::get<2>(sink.seen[i]), whole.frames[i].key) << chunk << " " << i;
    }
  }
}

// A sink with on_simple_run() is offered the frames laid out like the simple request it just
// took as one run. Runs end where the layout changes: another argument length (even one that
// leaves the frame's size the same), another command; payload bytes (even ones that look like
// headers) do not end them. Every frame is seen once, in order, with the facts the whole parse
// gives, whether the sink takes runs, declines some, or the chunks cut them.
TEST(RequestParser, SimpleRunsAgreeWithFrames) {
  std::string in;
  const std::string odd = "a\r\n$3\r\nxy";  // 9 bytes that look like structure
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 20; ++i) in += mb({"GET", "key:" + std::to_string(10000 + i)});  // 9-byte keys
    in += mb({"GET", odd});
    in += mb({"GET", "key:1"});
    for (int i = 0; i < 10; ++i) in += mb({"SET", "key:" + std::to_string(20000 + i), "vvv"});
    in += mb({"SET", "key:2000", "vvvv"});  // the same size, other argument lengths
    in += mb({"SET", odd, odd.substr(0, 3)});
    for (int i = 0; i < 5; ++i) in += mb({"TIME"});  // no key, shorter than a prefix
    for (int i = 0; i < 5; ++i) in += mb({"DBSIZE"});
    if (round % 2) in += "GET inline\r\n";
    in += mb({"CLIENT", "SETNAME", "x"});
  }
  auto whole = requests(in);
  ASSERT_FALSE(whole.failed);
  using Seen = std::tuple<uint64_t, uint64_t, int, std::string>;
  std::vector<Seen> want;
  for (const auto& f : whole.frames) want.emplace_back(f.start, f.end, f.cmd_id, f.has_key ? f.key : "");
  for (size_t chunk : {in.size(), size_t(1), size_t(7), size_t(64), size_t(1000)}) {
    for (int decline_every : {0, 2}) {
      struct Sink {
        std::vector<Seen>& seen;
        int decline_every;
        int runs = 0;
        size_t in_runs = 0;
        bool on_simple_request(const SimpleRequest& r) {
          seen.emplace_back(r.start, r.end, int(r.cmd->id), r.has_key ? std::string(r.key) : "");
          return true;
        }
        bool on_simple_run(const SimpleRun& r) {
          EXPECT_GE(r.count, 1u);
          if (decline_every && ++runs % decline_every == 0) return false;
          for (size_t i = 0; i < r.count; ++i) on_simple_request(r.frame(i));
          EXPECT_EQ(r.frame(r.count - 1).end, r.end());
          in_runs += r.count;
          return true;
        }
        void on_request(const RequestFrame& f) {
          seen.emplace_back(f.start, f.end, f.cmd ? int(f.cmd->id) : -1,
                            f.has_key ? std::string(f.key.data) : "");
        }
      };
      std::vector<Seen> seen;
      Sink sink{seen, decline_every};
      RequestParser p;
      for (size_t at = 0; at < in.size(); at += chunk) {
        std::string piece = in.substr(at, chunk);
        ASSERT_EQ(p.feed(piece, sink), Status::Ok);
      }
      ASSERT_EQ(seen.size(), want.size()) << "chunk " << chunk;
      for (size_t i = 0; i < seen.size(); ++i)
        EXPECT_EQ(seen[i], want[i]) << "chunk " << chunk << " frame " << i;
      if (kFastPaths && chunk == in.size() && decline_every == 0) { // (runs: a fast path's)
        // Most frames of each group of alike ones (216 of them), all but the few the prefix
        // and shape caches learn from first.
        EXPECT_GE(sink.in_runs, 150u);
      }
    }
  }
}

// The same for a frame laid out like the run before it up to a broken byte: the run ends
// before it and the error is where the state machine finds it.
TEST(RequestParser, RunStopsAtABrokenFrame) {
  const std::string good = mb({"GET", "key:10000"});
  for (size_t at : {size_t(2), size_t(3), size_t(11), size_t(15), good.size() - 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] = 'X';
    std::string in = good + good + good + good + bad + good + good;
    struct Sink {
      size_t frames = 0;
      bool on_simple_request(const SimpleRequest&) { return ++frames, true; }
      bool on_simple_run(const SimpleRun& r) { return frames += r.count, true; }
      void on_request(const RequestFrame&) { ++frames; }
    } sink;
    RequestParser p;
    EXPECT_EQ(p.feed(in, sink), Status::Error) << at;
    EXPECT_EQ(sink.frames, 4u) << at;
    RequestParser q;
    EXPECT_EQ(q.feed(in, [](const RequestFrame&) {}), Status::Error);
    EXPECT_EQ(p.error().offset, q.error().offset) << at;
  }
}

// Where each request starts and ends, taking every simple request it is offered.
struct SpanSink {
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  bool on_simple_request(const SimpleRequest& r) {
    seen.emplace_back(r.start, r.end);
    return true;
  }
  void on_request(const RequestFrame& f) { seen.emplace_back(f.start, f.end); }
};

// A frame of the name alone is all prefix: its shape has no window, and nothing the shape
// cache learns or checks reaches past the frame. Each frame here comes in a heap chunk of its
// exact size, so a read past it is a heap overflow under AddressSanitizer (tools/test runs the
// unit tests under it); a fuzzer found one.
TEST(RequestParser, ShapeCacheReadsNothingPastAOneArgumentFrame) {
  std::vector<std::string> frames;
  for (const char* name : {"DBSIZE", "OBJECT", "RANDOMKEY", "TIME", "LASTSAVE", "GET"})
    for (int i = 0; i < 4; ++i) frames.push_back(mb({name}));
  frames.push_back(mb({"GET", "k"}));
  frames.push_back(mb({"DBSIZE"}));
  std::string in;
  for (const auto& f : frames) in += f;
  auto whole = requests(in);
  ASSERT_FALSE(whole.failed);
  for (int round = 0; round < 2; ++round) {
    SpanSink sink;
    RequestParser p;
    for (const auto& f : frames) {
      auto chunk = std::make_unique<char[]>(f.size());
      std::memcpy(chunk.get(), f.data(), f.size());
      ASSERT_EQ(p.feed(chunk.get(), f.size(), sink), Status::Ok);
    }
    ASSERT_EQ(sink.seen.size(), whole.frames.size());
    for (size_t i = 0; i < sink.seen.size(); ++i) {
      EXPECT_EQ(sink.seen[i].first, whole.frames[i].start) << i;
      EXPECT_EQ(sink.seen[i].second, whole.frames[i].end) << i;
    }
  }
}

// A prefix cache entry taken over by another prefix starts with no shape: the last one's
// would describe frames of another command. "*3 SET" and "*2 TTL" share a slot; with SET's
// shape kept, a TTL frame followed by bytes that look like SET's last argument (here an inline
// command "$1" and another "v") was taken as one 27-byte frame.
TEST(RequestParser, ShapeIsForgottenWithItsPrefix) {
  std::string in;
  for (int i = 0; i < 3; ++i) in += mb({"SET", "k", "v"});
  in += mb({"TTL", "k"}) + mb({"TTL", "k"}) + "$1\r\nv\r\n" + mb({"GET", "k"});
  auto whole = requests(in);
  ASSERT_FALSE(whole.failed);
  ASSERT_EQ(whole.frames.size(), 8u);
  SpanSink sink;
  RequestParser p;
  ASSERT_EQ(p.feed(in, sink), Status::Ok);
  ASSERT_EQ(sink.seen.size(), whole.frames.size());
  for (size_t i = 0; i < sink.seen.size(); ++i) {
    EXPECT_EQ(sink.seen[i].first, whole.frames[i].start) << i;
    EXPECT_EQ(sink.seen[i].second, whole.frames[i].end) << i;
  }
}

} // namespace
} // namespace faultline::resp

namespace faultline::resp {
namespace {

// A large request is decided on its head: partial_frame() tells what has arrived of the request
// in progress, whatever the chunking, and nothing between frames or inside an inline request.
TEST(RequestParser, PartialFrameTellsTheHeadOfARequestInProgress) {
  const std::string value(100000, 'v');
  const std::string in = mb({"GET", "a"}) + mb({"set", "big:key", value, "EX", "10"});
  const size_t second = mb({"GET", "a"}).size();
  for (size_t cut : {second + 3, second + 20, second + 40, second + 5000, in.size() - 3}) {
    RequestParser p;
    RequestFrame f;
    int frames = 0;
    // Everything up to the cut, in chunks of 7 bytes: the parser's own copies, not views.
    for (size_t at = 0; at < cut; at += 7)
      p.feed(in.data() + at, std::min<size_t>(7, cut - at), [&](const RequestFrame&) { ++frames; });
    EXPECT_EQ(frames, 1) << cut;
    ASSERT_TRUE(p.partial_frame(f)) << cut;
    EXPECT_EQ(f.start, second);
    EXPECT_EQ(f.end, 0u);
    if (cut >= second + 4) {
      EXPECT_EQ(f.argc, 5u) << cut;
    }
    if (cut >= second + 40) {
      EXPECT_EQ(f.name, "SET") << cut;
      ASSERT_NE(f.cmd, nullptr);
      ASSERT_TRUE(f.has_key) << cut;
      EXPECT_EQ(f.key.data, "big:key");
      // Whole arguments only: the value is whole at the last cut, inside "10" of EX 10.
      EXPECT_EQ(f.args.size(), cut == in.size() - 3 ? 4u : 2u) << cut;
    } else if (cut == second + 3) {
      EXPECT_TRUE(f.name.empty());
      EXPECT_FALSE(f.has_key);
    }
  }
  RequestParser p;
  RequestFrame f;
  p.feed(mb({"GET", "a"}), [](const RequestFrame&) {});
  EXPECT_FALSE(p.partial_frame(f)) << "between frames";
  p.feed(std::string_view("GET a"), [](const RequestFrame&) {});
  EXPECT_FALSE(p.partial_frame(f)) << "inline";
}

} // namespace
} // namespace faultline::resp
