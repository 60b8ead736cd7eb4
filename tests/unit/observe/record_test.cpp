#include "observe/record.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <climits>
#include <cstdio>
#include <ctime>
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

// The formatting as it was before the raw-pointer writers (std::string appends, one piece at a
// time): the writers must produce the same bytes, since the log's format must not change.
namespace before {

void repr(std::string& out, std::string_view s, bool json) {
  for (unsigned char c : s) {
    if (c >= 0x20 && c <= 0x7e && c != '\\' && c != '"') {
      out += static_cast<char>(c);
      continue;
    }
    out += json ? "\\\\" : "\\";
    switch (c) {
    case '\\': out += json ? "\\\\" : "\\"; break;
    case '"': out += json ? "\\\"" : "\""; break;
    case '\n': out += 'n'; break;
    case '\r': out += 'r'; break;
    case '\t': out += 't'; break;
    case '\a': out += 'a'; break;
    case '\b': out += 'b'; break;
    default: {
      char hex[4];
      std::snprintf(hex, sizeof hex, "x%02x", c);
      out += hex;
    }
    }
  }
}

void repr_truncated(std::string& out, std::string_view s, uint64_t full, size_t max, bool json) {
  bool cut = s.size() > max;
  if (cut) s = s.substr(0, max);
  repr(out, s, json);
  if (cut || full > s.size()) out += "... (" + std::to_string(full) + " bytes)";
}

std::string timestamp(uint64_t us) {
  time_t t = static_cast<time_t>(us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char b[64];
  std::snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<unsigned>(us % 1000000));
  return b;
}

std::string reply_json(const ReplySummary& r, size_t max) {
  using resp::Type;
  std::string out = "{\"type\":\"" + std::string(reply_type_name(r)) + "\"";
  if (r.is_null) return out + "}";
  auto text = [&](uint64_t full) {
    out += ",\"text\":\"";
    repr_truncated(out, r.text, full, max, true);
    out += '"';
  };
  switch (r.type) {
  case Type::SimpleString:
  case Type::Error:
  case Type::Double:
  case Type::BigNumber: text(r.text.size()); break;
  case Type::Bulk:
  case Type::BlobError:
  case Type::Verbatim:
    if (r.streamed) {
      out += ",\"streamed\":true";
    } else {
      out += ",\"len\":" + std::to_string(r.size);
      text(static_cast<uint64_t>(r.size));
    }
    break;
  case Type::Integer: out += ",\"value\":" + std::to_string(r.integer); break;
  case Type::Boolean: out += r.integer ? ",\"value\":true" : ",\"value\":false"; break;
  case Type::Array:
  case Type::Map:
  case Type::Set:
  case Type::Push:
    out += r.streamed ? ",\"streamed\":true" : ",\"count\":" + std::to_string(r.size);
    if (!r.head.empty()) {
      out += ",\"head\":\"";
      repr(out, r.head, true);
      out += '"';
    }
    break;
  default: break;
  }
  return out + "}";
}

} // namespace before

// Runs a writer into a buffer of exactly `bound` bytes (ASan sees any write past it) and checks
// that it stayed inside.
template <class F> std::string written(size_t bound, F&& write) {
  std::vector<char> buf(bound);
  char* end = write(buf.data());
  EXPECT_LE(end - buf.data(), static_cast<ptrdiff_t>(bound));
  return std::string(buf.data(), end);
}

std::string json_repr(std::string_view s) {
  return written(kJsonReprMaxPerByte * s.size(), [&](char* p) { return write_json_repr(p, s); });
}
std::string plain_repr(std::string_view s) {
  return written(kReprMaxPerByte * s.size(), [&](char* p) { return write_repr(p, s); });
}

TEST(Writers, EveryByteValueEscapesAsBefore) {
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const char two[2] = {static_cast<char>(a), static_cast<char>(b)};
      std::string_view s(two, 2);
      std::string want_json, want_plain;
      before::repr(want_json, s, true);
      before::repr(want_plain, s, false);
      ASSERT_EQ(json_repr(s), want_json) << a << " " << b;
      ASSERT_EQ(plain_repr(s), want_plain) << a << " " << b;
    }
    // Every byte value in every lane of the eight-byte path, among plain bytes on both sides
    // (the neighbours 0x1f/0x20 and 0x7e/0x7f too, which a word test could get wrong).
    for (size_t at = 0; at < 17; ++at) {
      for (char fill : {'k', ' ', '~'}) {
        std::string run(17, fill);
        run[at] = static_cast<char>(a);
        std::string want_json, want_plain;
        before::repr(want_json, run, true);
        before::repr(want_plain, run, false);
        ASSERT_EQ(json_repr(run), want_json) << a << " at " << at;
        ASSERT_EQ(plain_repr(run), want_plain) << a << " at " << at;
      }
    }
    // The worst case is the bound: every byte at its longest.
    std::string run(7, static_cast<char>(a));
    EXPECT_LE(json_repr(run).size(), kJsonReprMaxPerByte * run.size());
  }
  std::string o;
  append_json_repr(o, std::string("a\0\xff\"\\", 5));
  EXPECT_EQ(o, "a\\\\x00\\\\xff\\\\\\\"\\\\\\\\");
  RecordBuf rb;
  append_json_repr(rb, std::string("a\0\xff\"\\", 5));
  EXPECT_EQ(rb.view(), o);
}

TEST(Writers, TruncationAsBefore) {
  std::mt19937 rng(11);
  for (int n = 0; n < 2000; ++n) {
    std::string s(rng() % 80, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 3 ? 'a' + rng() % 26 : rng());
    size_t max = 1 + rng() % 70;
    uint64_t full = s.size() + (rng() % 4 == 0 ? rng() : 0);
    if (n % 50 == 0) full = UINT64_MAX;
    std::string want_json, want_plain;
    before::repr_truncated(want_json, s, full, max, true);
    before::repr_truncated(want_plain, s, full, max, false);
    size_t shown = std::min(s.size(), max);
    ASSERT_EQ(written(kJsonReprMaxPerByte * shown + kTruncationMaxChars,
                      [&](char* p) { return write_json_repr_truncated(p, s, full, max); }),
              want_json);
    ASSERT_EQ(written(kReprMaxPerByte * shown + kTruncationMaxChars,
                      [&](char* p) { return write_repr_truncated(p, s, full, max); }),
              want_plain);
    // After what a buffer already holds.
    std::string o1(1, 'x'), o2(1, 'y');
    append_json_repr_truncated(o1, s, full, max);
    append_repr_truncated(o2, s, full, max);
    ASSERT_EQ(o1.substr(1), want_json);
    ASSERT_EQ(o2.substr(1), want_plain);
  }
}

TEST(Writers, NumbersAtEveryWidth) {
  std::vector<uint64_t> us = {0, UINT64_MAX, UINT64_MAX - 1, uint64_t(INT64_MAX),
                              uint64_t(INT64_MAX) + 1};
  for (uint64_t p = 1; p <= UINT64_MAX / 10; p *= 10) {
    us.push_back(p - 1);
    us.push_back(p);
    us.push_back(p + 1);
    us.push_back(p * 5);
  }
  std::mt19937_64 rng(5);
  for (int i = 0; i < 1000; ++i) us.push_back(rng() >> (rng() % 64));
  for (uint64_t v : us) {
    ASSERT_EQ(written(kUintMaxChars, [&](char* p) { return write_uint(p, v); }),
              std::to_string(v));
    std::string o(2, '=');
    append_uint(o, v);
    ASSERT_EQ(o.substr(2), std::to_string(v));
    // 0 - v in uint64_t, then converted: defined for v = 2^63 too (C++20).
    for (int64_t s : {static_cast<int64_t>(v), static_cast<int64_t>(uint64_t(0) - v)}) {
      ASSERT_EQ(written(kIntMaxChars, [&](char* p) { return write_int(p, s); }),
                std::to_string(s));
    }
  }
  for (int64_t s : {INT64_MIN, INT64_MIN + 1, INT64_MAX, int64_t(-1), int64_t(0)}) {
    ASSERT_EQ(written(kIntMaxChars, [&](char* p) { return write_int(p, s); }),
              std::to_string(s));
    std::string o;
    append_int(o, s);
    ASSERT_EQ(o, std::to_string(s));
  }
}

TEST(Writers, TimestampsAsBefore) {
  std::mt19937_64 rng(3);
  TimestampFormatter f;
  uint64_t t = 1795929000123456ULL;
  for (int i = 0; i < 5000; ++i) {
    // Mostly within the same second (the cached prefix), sometimes across days and years.
    t += i % 100 == 0 ? rng() % (400ULL * 86400 * 1000000) : rng() % 300000;
    if (i % 997 == 0) t = t / 1000000 * 1000000;       // .000000
    if (i % 991 == 0) t = t / 1000000 * 1000000 + 999999; // .999999
    ASSERT_EQ(written(kTimestampChars, [&](char* p) { return f.write(p, t); }),
              before::timestamp(t));
  }
}

TEST(Writers, ReplyObjectsAsBefore) {
  using resp::Type;
  std::mt19937 rng(9);
  const Type types[] = {Type::None,     Type::SimpleString, Type::Error,     Type::Integer,
                        Type::Bulk,     Type::Array,        Type::Null,      Type::Double,
                        Type::Boolean,  Type::BlobError,    Type::Verbatim,  Type::BigNumber,
                        Type::Map,      Type::Set,          Type::Push};
  for (int n = 0; n < 3000; ++n) {
    std::string text(rng() % 90, '\0'), head(rng() % 3 ? 0 : rng() % 33, '\0');
    for (auto& c : text) c = static_cast<char>(rng() % 4 ? 'a' + rng() % 26 : rng());
    for (auto& c : head) c = static_cast<char>(rng());
    ReplySummary r;
    r.type = types[rng() % std::size(types)];
    r.is_null = rng() % 10 == 0;
    r.streamed = rng() % 10 == 0;
    r.text = text;
    r.head = head;
    r.size = rng() % 5 == 0 ? -1 : static_cast<int64_t>(text.size() + rng() % 3 * (rng() % 1000));
    r.integer = rng() % 3 == 0 ? INT64_MIN + static_cast<int64_t>(rng() % 2)
                               : static_cast<int64_t>(rng()) - INT32_MAX;
    size_t max = 1 + rng() % 80;
    std::string want = before::reply_json(r, max);
    ASSERT_EQ(written(reply_json_bound(r, max),
                      [&](char* p) { return write_reply_json(p, r, max); }),
              want);
    std::string o;
    append_reply_json(o, r, max);
    ASSERT_EQ(o, want);
  }
}

TEST(Writers, RecordBufKeepsItsBytesAcrossGrowth) {
  RecordBuf b;
  std::string want;
  for (int i = 0; i < 2000; ++i) {
    std::string piece(static_cast<size_t>(i % 37), static_cast<char>('a' + i % 26));
    if (i % 3 == 0) {
      char* p = b.room(piece.size() + 64); // more room than used: set_end says what was
      b.set_end(write_bytes(p, piece));
    } else {
      b += piece;
    }
    b += '|';
    want += piece + "|";
  }
  EXPECT_EQ(b.view(), want);
  b.erase_front(100);
  EXPECT_EQ(b.view(), want.substr(100));
  b.clear();
  EXPECT_TRUE(b.empty());
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
