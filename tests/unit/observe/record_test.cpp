#include "observe/record.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <vector>

namespace faultline::observe {
namespace {

std::string repr(std::string_view s) {
  std::string o;
  append_repr(o, s);
  return o;
}

// Undoes append_repr (what a reader of the log does).
std::string unrepr(std::string_view s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      o += s[i];
      continue;
    }
    char c = s[++i];
    switch (c) {
    case 'n': o += '\n'; break;
    case 'r': o += '\r'; break;
    case 't': o += '\t'; break;
    case 'a': o += '\a'; break;
    case 'b': o += '\b'; break;
    case 'x': o += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)); i += 2; break;
    default: o += c;
    }
  }
  return o;
}

TEST(Repr, LikeRedisCli) {
  EXPECT_EQ(repr("plain key:1"), "plain key:1");
  EXPECT_EQ(repr(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(repr("\xff\x80"), "\\xff\\x80");
  EXPECT_EQ(repr("q\"b\\"), "q\\\"b\\\\");
  EXPECT_EQ(repr("\r\n\t\a\b"), "\\r\\n\\t\\a\\b");
}

TEST(Repr, JsonVariantDecodesToTheReprText) {
  std::mt19937 rng(7);
  for (int n = 0; n < 500; ++n) {
    std::string s(rng() % 40, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    std::string j = "\"";
    append_json_repr(j, s);
    j += '"';
    auto parsed = nlohmann::json::parse(j);
    EXPECT_EQ(parsed.get<std::string>(), repr(s));
    EXPECT_EQ(unrepr(repr(s)), s);
  }
}

TEST(Repr, TruncationShowsTheOriginalLength) {
  std::string o;
  append_repr_truncated(o, std::string(100, 'x'), 100, 8);
  EXPECT_EQ(o, "xxxxxxxx... (100 bytes)");
  o.clear();
  // The parser kept only a prefix (the argument spanned chunks): the full length still shows.
  append_repr_truncated(o, "abc", 5000, 64);
  EXPECT_EQ(o, "abc... (5000 bytes)");
  o.clear();
  append_repr_truncated(o, "abc", 3, 64);
  EXPECT_EQ(o, "abc");
}

TEST(Timestamp, Rfc3339WithMicrosecondsRoundTrips) {
  TimestampFormatter f;
  std::string o;
  f.append(o, 1795929000123456ULL);
  EXPECT_EQ(o, "2026-11-29T05:10:00.123456Z");
  uint64_t back = 0;
  ASSERT_TRUE(parse_timestamp(o, back));
  EXPECT_EQ(back, 1795929000123456ULL);
  o.clear();
  f.append(o, 1795929001000001ULL); // the next second: the cached prefix is refreshed
  EXPECT_EQ(o, "2026-11-29T05:10:01.000001Z");
  o.clear();
  f.append_time_of_day(o, 1795929001000001ULL);
  EXPECT_EQ(o, "05:10:01.000001");
  ASSERT_TRUE(parse_timestamp("2026-11-29T06:10:00.5+01:00", back));
  EXPECT_EQ(back, 1795929000500000ULL);
  EXPECT_FALSE(parse_timestamp("2026-11-29 nonsense", back));
  EXPECT_FALSE(parse_timestamp("2026-11-29T05:10:00.123456", back)); // no zone
}

uint64_t mask(std::vector<std::string_view> argv) {
  std::string name(argv[0]), sub(argv.size() > 1 ? argv[1] : "");
  for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (auto& c : sub) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  bool container = name == "CONFIG" || name == "ACL" || name == "SENTINEL";
  return secret_args(name, container ? sub : "", argv);
}

TEST(Redaction, EverySecretCarryingForm) {
  EXPECT_EQ(mask({"AUTH", "pw"}), 0b10u);
  EXPECT_EQ(mask({"AUTH", "user", "pw"}), 0b110u);
  EXPECT_EQ(mask({"HELLO", "3", "AUTH", "user", "pw"}), 1u << 4);
  EXPECT_EQ(mask({"HELLO", "3", "SETNAME", "auth", "AUTH", "u", "pw"}), 1u << 6);
  EXPECT_EQ(mask({"HELLO", "3"}), 0u);
  EXPECT_EQ(mask({"MIGRATE", "h", "6379", "", "0", "5000", "COPY", "AUTH", "pw", "KEYS", "a"}),
            1u << 8);
  EXPECT_EQ(mask({"MIGRATE", "h", "6379", "k", "0", "5000", "AUTH2", "u", "pw"}),
            (1u << 7) | (1u << 8));
  EXPECT_EQ(mask({"MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "AUTH", "x"}), 0u);
  EXPECT_EQ(mask({"CONFIG", "SET", "requirepass", "pw"}), 1u << 3);
  EXPECT_EQ(mask({"config", "set", "maxmemory", "1mb", "MASTERAUTH", "pw"}), 1u << 5);
  EXPECT_EQ(mask({"CONFIG", "SET", "maxmemory", "1mb"}), 0u);
  EXPECT_EQ(mask({"CONFIG", "GET", "requirepass"}), 0u);
  EXPECT_EQ(mask({"ACL", "SETUSER", "bob", "on", ">pw1", "<pw2", "#abc", "!def", "~*"}),
            (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7));
  EXPECT_EQ(mask({"SENTINEL", "SET", "m", "auth-pass", "pw"}), 1u << 4);
  EXPECT_EQ(mask({"GET", "AUTH"}), 0u);
}

TEST(ReplySummary, InjectedBytesAreSummarisedLikeFrames) {
  auto j = [](std::string_view bytes) {
    std::string o;
    append_reply_json(o, summarize_injected(bytes), 64);
    return o;
  };
  EXPECT_EQ(j("-LOADING Redis is loading\r\n"),
            R"({"type":"error","text":"LOADING Redis is loading"})");
  EXPECT_EQ(summarize_injected("-LOADING Redis is loading\r\n").error_prefix(), "LOADING");
  EXPECT_EQ(j("$-1\r\n"), R"({"type":"null"})");
  EXPECT_EQ(j("_\r\n"), R"({"type":"null"})");
  EXPECT_EQ(j("$3\r\nbar\r\n"), R"({"type":"bulk","len":3,"text":"bar"})");
  EXPECT_EQ(j(":42\r\n"), R"({"type":"integer","value":42})");
  EXPECT_EQ(j("*2\r\n$1\r\na\r\n$1\r\nb\r\n"), R"({"type":"array","count":2})");
  EXPECT_EQ(j("+OK\r\n"), R"({"type":"simple","text":"OK"})");
  EXPECT_EQ(j(""), R"({"type":"none"})");
  std::string t;
  append_reply_text(t, summarize_injected("-ERR x\r\n"), 64);
  EXPECT_EQ(t, "(error) ERR x");
}

} // namespace
} // namespace faultline::observe
