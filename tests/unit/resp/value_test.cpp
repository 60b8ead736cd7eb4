#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "resp/value.h"

namespace faultline::resp {
namespace {

// Replies captured from real Redis 7.0 (tests/unit/resp/data/README.md).
const std::filesystem::path kData =
    std::filesystem::path(FAULTLINE_SOURCE_DIR) / "tests/unit/resp/data";

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::filesystem::path> captures() {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(kData)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".resp2" || ext == ".resp3")) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// decode -> encode of every frame of s gives back s, frame by frame; the frame count.
size_t expect_round_trip(const std::string& s, const std::string& what) {
  size_t at = 0, frames = 0;
  while (at < s.size()) {
    size_t used = 0;
    auto v = decode(std::string_view(s).substr(at), &used);
    EXPECT_TRUE(v.has_value()) << what << " at " << at;
    if (!v) return frames;
    EXPECT_EQ(encode(*v), s.substr(at, used)) << what << " at " << at;
    at += used;
    ++frames;
  }
  return frames;
}

TEST(Value, CapturesRoundTripByteExact) {
  auto files = captures();
  ASSERT_GE(files.size(), 100u) << kData;
  for (const auto& f : files) {
    const std::string s = slurp(f);
    ASSERT_FALSE(s.empty()) << f;
    const size_t frames = expect_round_trip(s, f.filename().string());
    if (f.filename().string().rfind("sentinel_events_", 0) == 0)
      EXPECT_GT(frames, 10u) << f;  // a stream of messages
    else
      EXPECT_EQ(frames, 1u) << f;
  }
}

TEST(Value, EveryTypeRoundTrips) {
  const char* samples[] = {
      "+OK\r\n",
      "+\r\n",
      "-ERR unknown command\r\n",
      ":0\r\n",
      ":-42\r\n",
      ":9223372036854775807\r\n",
      ":-9223372036854775808\r\n",
      "$5\r\nhello\r\n",
      "$0\r\n\r\n",
      "$4\r\na\r\nb\r\n",  // CRLF inside a bulk
      "$-1\r\n",
      "*-1\r\n",
      "*0\r\n",
      "*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n",
      "_\r\n",
      ",1.5\r\n",
      ",-inf\r\n",
      ",nan\r\n",
      ",3.0e10\r\n",
      "#t\r\n",
      "#f\r\n",
      "!21\r\nSYNTAX invalid syntax\r\n",
      "=15\r\ntxt:Some string\r\n",
      "=4\r\nmkd:\r\n",
      "(3492890328409238509324850943850943825024385\r\n",
      "(-1\r\n",
      "%2\r\n+first\r\n:1\r\n+second\r\n%0\r\n",
      "~3\r\n+a\r\n:1\r\n_\r\n",
      ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n",
      "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
      "*2\r\n:2039123\r\n:9543892\r\n",
      "*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n|0\r\n:7\r\n",
  };
  for (const char* s : samples) expect_round_trip(s, s);
}

TEST(Value, DecodesFields) {
  auto v = decode("=15\r\ntxt:Some string\r\n");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type, Type::Verbatim);
  EXPECT_EQ(v->format, "txt");
  EXPECT_EQ(v->str, "Some string");
  ASSERT_NE(v->text(), nullptr);

  v = decode("*2\r\n$-1\r\n_\r\n");
  ASSERT_TRUE(v);
  ASSERT_EQ(v->elems.size(), 2u);
  EXPECT_TRUE(v->elems[0].is_null);
  EXPECT_EQ(v->elems[0].type, Type::Bulk);
  EXPECT_EQ(v->elems[0].text(), nullptr);
  EXPECT_EQ(v->elems[1].type, Type::Null);

  v = decode("%1\r\n$2\r\nip\r\n:7\r\n");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type, Type::Map);
  ASSERT_EQ(v->elems.size(), 2u);
  EXPECT_EQ(v->elems[1].integer, 7);

  v = decode("|1\r\n+a\r\n:1\r\n#t\r\n");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type, Type::Boolean);
  EXPECT_EQ(v->integer, 1);
  EXPECT_TRUE(v->has_attribute);
  EXPECT_EQ(v->attribute.size(), 2u);
}

TEST(Value, UsedIsTheFirstFrame) {
  size_t used = 0;
  auto v = decode("*1\r\n:1\r\n+OK\r\n", &used);
  ASSERT_TRUE(v);
  EXPECT_EQ(used, 8u);
}

TEST(Value, EncodeWritesChangedLengths) {
  auto v = decode("*2\r\n$9\r\n127.0.0.1\r\n=8\r\ntxt:abcd\r\n");
  ASSERT_TRUE(v);
  v->elems[0].str = "10.0.0.1";
  v->elems[1].str = "abcdef";
  EXPECT_EQ(encode(*v), "*2\r\n$8\r\n10.0.0.1\r\n=10\r\ntxt:abcdef\r\n");
}

TEST(Value, RefusesIncompleteInput) {
  const std::string s = slurp(kData / "cluster_shards_ip_hostname.resp3");
  ASSERT_FALSE(s.empty());
  for (size_t n = 0; n < s.size(); ++n)
    ASSERT_FALSE(decode(std::string_view(s).substr(0, n))) << n;
  EXPECT_TRUE(decode(s));
}

TEST(Value, RefusesMalformedOrNonCanonicalInput) {
  const char* bad[] = {
      "",
      "x\r\n",
      "+OK\n",
      "+OK\r",
      ":+1\r\n",
      ":01\r\n",
      ":-0\r\n",
      ":\r\n",
      ":1a\r\n",
      ":9223372036854775808\r\n",
      ":-9223372036854775809\r\n",
      "$3\r\nab\r\n",
      "$2\r\nabc\r\n",
      "$2\r\nabXY",
      "$-2\r\n",
      "$02\r\nab\r\n",
      "$+2\r\nab\r\n",
      "!-1\r\n",
      "*-2\r\n",
      "*1\r\n",
      "*01\r\n:1\r\n",
      "%1\r\n:1\r\n",
      "~-1\r\n",
      "#x\r\n",
      "#\r\n",
      "_x\r\n",
      ",\r\n",
      "(\r\n",
      "=3\r\ntxt\r\n",
      "=5\r\ntxt-x\r\n",
      "$?\r\n;4\r\nabcd\r\n;0\r\n",  // streamed: Redis never replies so
      "*?\r\n:1\r\n.\r\n",
      "|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n:2\r\n:3\r\n",  // two attributes on one value
      "*999999999\r\n:1\r\n",
      "$999999999999999999999\r\n",
  };
  for (const char* s : bad) EXPECT_FALSE(decode(s)) << s;
}

TEST(Value, RefusesDeepNesting) {
  auto nested = [](int levels, const char* open) {
    std::string s;
    for (int i = 0; i < levels; ++i) s += open;
    return s + ":1\r\n";
  };
  EXPECT_TRUE(decode(nested(kMaxDepth, "*1\r\n")));
  EXPECT_FALSE(decode(nested(kMaxDepth + 1, "*1\r\n")));
  EXPECT_FALSE(decode(nested(100000, "*1\r\n")));  // no stack overflow either
  EXPECT_FALSE(decode(nested(kMaxDepth + 1, ">1\r\n")));
  // An attribute's contents are a level too.
  std::string attr;
  for (int i = 0; i < kMaxDepth - 1; ++i) attr += "*1\r\n";
  EXPECT_TRUE(decode(attr + "|1\r\n+k\r\n:1\r\n:2\r\n"));
  EXPECT_FALSE(decode(attr + "|1\r\n+k\r\n*1\r\n:1\r\n:2\r\n"));
}

} // namespace
} // namespace faultline::resp
