// The pure parts of the RESP-aware toxics: Redis's glob, the cluster hash slot, the shared
// filter (commands, categories, keys, first/every/after/probability) and each type's decision
// for a request in a given session mode. No sockets: frames come from the real request parser.

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "resp/parser.h"
#include "toxics/resp_rule.h"
#include "toxics/slot.h"
#include "toxics/toxic.h"

namespace faultline::toxics {
namespace {

using nlohmann::json;

std::string encode(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args)
    out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

// Calls fn with the parsed frame of one command (frames are views: valid inside fn only).
template <class F> void with_frame(const std::vector<std::string>& args, F&& fn) {
  resp::RequestParser p;
  int frames = 0;
  std::string wire = encode(args);
  p.feed(wire.data(), wire.size(), [&](const resp::RequestFrame& f) {
    ++frames;
    fn(f);
  });
  ASSERT_EQ(frames, 1) << wire;
}

bool filter_matches(RespFilter& filter, const std::vector<std::string>& args,
                    std::mt19937_64& rng) {
  bool m = false;
  with_frame(args, [&](const resp::RequestFrame& f) { m = filter.matches(f, rng); });
  return m;
}

bool filter_matches(const json& attrs, const std::vector<std::string>& args) {
  RespFilter filter(attrs);
  std::mt19937_64 rng(1);
  return filter_matches(filter, args, rng);
}

// ---- glob_match: the cases of Redis's stringmatchlen (util.c) and KEYS tests ----

TEST(GlobMatch, RedisStringmatchCases) {
  struct Case {
    const char* pattern;
    const char* text;
    bool match;
  } cases[] = {
      {"*", "anything", true},
      {"*", "", true},   // KEYS and SCAN: a lone "*" is every key
      {"**", "", false}, // stringmatchlen: an empty string only matches the empty pattern
      {"?*", "", false},
      {"", "", true},
      {"", "a", false},
      {"h?llo", "hello", true},
      {"h?llo", "hallo", true},
      {"h?llo", "hllo", false},
      {"h*llo", "hllo", true},
      {"h*llo", "heeeello", true},
      {"h*llo", "heeeelo", false},
      {"h[ae]llo", "hello", true},
      {"h[ae]llo", "hallo", true},
      {"h[ae]llo", "hillo", false},
      {"h[^e]llo", "hallo", true},
      {"h[^e]llo", "hello", false},
      {"h[a-b]llo", "hallo", true},
      {"h[a-b]llo", "hbllo", true},
      {"h[a-b]llo", "hcllo", false},
      {"h[b-a]llo", "hallo", true}, // reversed ranges are swapped
      {"h\\*llo", "h*llo", true},
      {"h\\*llo", "hello", false},
      {"h\\?llo", "hello", false},
      {"[\\]]", "]", true},
      {"[\\-]", "-", true},
      {"[a-]", "]", true}, // "a-]" is a range up to ']', the class unterminated
      {"[abc", "b", true}, // unterminated class: the rest of the pattern is the class
      {"[abc", "d", false},
      {"a*b*c", "aXXbYYc", true},
      {"a*b*c", "aXXbYY", false},
      {"a*", "a", true},
      {"a**", "a", true},
      {"*a", "a", true},
      {"*a*", "bab", true},
      {"user:*", "user:1000", true},
      {"user:*", "users:1000", false},
      {"cache:*:v?", "cache:x:y:v1", true},
      {"a\\", "a\\", true}, // a trailing backslash is literal
      {"?", "", false},
      {"??", "a", false},
      {"[^a]", "a", false},
      {"[^a]", "b", true},
  };
  for (const auto& c : cases)
    EXPECT_EQ(glob_match(c.pattern, c.text), c.match) << c.pattern << " vs " << c.text;
}

TEST(GlobMatch, NoCase) {
  EXPECT_TRUE(glob_match("HELLO", "hello", true));
  EXPECT_FALSE(glob_match("HELLO", "hello", false));
  EXPECT_TRUE(glob_match("[A-C]x", "bx", true));
}

TEST(GlobMatch, ManyStarsStayFast) {
  // Redis's regression case for nested stars: exponential in a naive backtracker.
  std::string key(50, 'a');
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(glob_match("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", key));
  EXPECT_TRUE(glob_match("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a", key));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
}

// ---- key_hash_slot: Redis Cluster's published values ----

TEST(KeyHashSlot, PublishedValues) {
  EXPECT_EQ(crc16("123456789"), 0x31C3); // CRC16-XMODEM check value (cluster spec)
  EXPECT_EQ(key_hash_slot("foo"), 12182u);
  EXPECT_EQ(key_hash_slot("bar"), 5061u);
  EXPECT_EQ(key_hash_slot(""), 0u);
  EXPECT_EQ(key_hash_slot("{user1000}.following"), key_hash_slot("{user1000}.followers"));
  EXPECT_EQ(key_hash_slot("{user1000}.following"), key_hash_slot("user1000"));
  EXPECT_EQ(key_hash_slot("foo{bar}{zap}"), key_hash_slot("bar")); // first tag only
  EXPECT_EQ(key_hash_slot("foo{{bar}}zap"), key_hash_slot("{bar"));
  // An empty first tag hashes the whole key: not "bar" (a later tag), not "foo" (the text
  // before it). 8363 is what CLUSTER KEYSLOT foo{}{bar} answers (Redis 7).
  EXPECT_EQ(key_hash_slot("foo{}{bar}"), 8363u);
  EXPECT_EQ(key_hash_slot("foo{}{bar}"), crc16("foo{}{bar}") & 16383);
  EXPECT_NE(key_hash_slot("foo{}{bar}"), key_hash_slot("bar"));
  EXPECT_EQ(key_hash_slot("{}"), crc16("{}") & 16383);
  EXPECT_EQ(key_hash_slot("a{b"), crc16("a{b") & 16383); // no closing brace
}

// ---- RespFilter ----

TEST(RespFilter, CommandNamesAreCaseInsensitiveAndAcceptStringsOrArrays) {
  EXPECT_TRUE(filter_matches({{"commands", {"get"}}}, {"GET", "k"}));
  EXPECT_TRUE(filter_matches({{"commands", {"GET"}}}, {"get", "k"}));
  EXPECT_FALSE(filter_matches({{"commands", {"GET"}}}, {"SET", "k", "v"}));
  EXPECT_TRUE(filter_matches({{"commands", "get, set"}}, {"SET", "k", "v"}));
  EXPECT_TRUE(filter_matches(json::object(), {"ANYTHING"})); // no commands: every command
}

TEST(RespFilter, Subcommands) {
  EXPECT_TRUE(filter_matches({{"commands", {"CLIENT|SETNAME"}}}, {"CLIENT", "SETNAME", "x"}));
  EXPECT_TRUE(filter_matches({{"commands", {"client setname"}}}, {"client", "setname", "x"}));
  EXPECT_FALSE(filter_matches({{"commands", {"CLIENT|SETNAME"}}}, {"CLIENT", "GETNAME"}));
  EXPECT_TRUE(filter_matches({{"commands", {"CLIENT"}}}, {"CLIENT", "GETNAME"}));
  EXPECT_TRUE(filter_matches({{"commands", {"CONFIG|GET"}}}, {"CONFIG", "GET", "maxmemory"}));
}

TEST(RespFilter, Categories) {
  json w = {{"commands", {"@write"}}}, r = {{"commands", {"@read"}}};
  EXPECT_TRUE(filter_matches(w, {"SET", "k", "v"}));
  EXPECT_TRUE(filter_matches(w, {"DEL", "k"}));
  EXPECT_FALSE(filter_matches(w, {"GET", "k"}));
  EXPECT_TRUE(filter_matches(r, {"GET", "k"}));
  EXPECT_FALSE(filter_matches(r, {"SET", "k", "v"}));
  EXPECT_TRUE(filter_matches({{"commands", {"@blocking"}}}, {"BLPOP", "q", "0"}));
  EXPECT_FALSE(filter_matches({{"commands", {"@blocking"}}}, {"LPOP", "q"}));
  EXPECT_TRUE(filter_matches({{"commands", {"@pubsub"}}}, {"PUBLISH", "ch", "m"}));
  EXPECT_TRUE(filter_matches({{"commands", {"@pubsub"}}}, {"SUBSCRIBE", "ch"}));
  EXPECT_TRUE(filter_matches({{"commands", {"@admin"}}}, {"CONFIG", "SET", "x", "y"}));
  EXPECT_FALSE(filter_matches({{"commands", {"@admin"}}}, {"GET", "k"}));
  // @denyoom: what Redis refuses under maxmemory (SET may grow memory, DEL may not).
  EXPECT_TRUE(filter_matches({{"commands", {"@denyoom"}}}, {"SET", "k", "v"}));
  EXPECT_FALSE(filter_matches({{"commands", {"@denyoom"}}}, {"DEL", "k"}));
  EXPECT_FALSE(filter_matches({{"commands", {"@denyoom"}}}, {"GET", "k"}));
  EXPECT_FALSE(filter_matches({{"commands", {"@write"}}}, {"NOSUCHCOMMAND", "k"}));
  EXPECT_THROW(RespFilter(json{{"commands", {"@nonsense"}}}), ToxicError);
  EXPECT_THROW(RespFilter(json{{"commands", 5}}), ToxicError);
  EXPECT_THROW(RespFilter(json{{"keys", 5}}), ToxicError);
}

TEST(RespFilter, KeysGlobOnTheFirstKey) {
  json a = {{"keys", "cache:*"}};
  EXPECT_TRUE(filter_matches(a, {"GET", "cache:1"}));
  EXPECT_FALSE(filter_matches(a, {"GET", "user:1"}));
  EXPECT_FALSE(filter_matches(a, {"PING"})); // no key, no match
  EXPECT_TRUE(filter_matches(a, {"MGET", "cache:1", "user:1"}));
  EXPECT_FALSE(filter_matches(a, {"MGET", "user:1", "cache:1"}));
  // The key of a command whose key is not its first argument.
  EXPECT_TRUE(filter_matches(a, {"EVAL", "return 1", "1", "cache:z"}));
}

std::vector<int> matched_indices(const json& attrs, int n, uint64_t seed = 1) {
  RespFilter f(attrs);
  std::mt19937_64 rng(seed);
  std::vector<int> out;
  for (int i = 0; i < n; ++i)
    if (filter_matches(f, {"GET", "k"}, rng))
      out.push_back(i);
  return out;
}

TEST(RespFilter, FirstEveryAfterAreExact) {
  EXPECT_EQ(matched_indices({{"first", 3}}, 10), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(matched_indices({{"every", 3}}, 10), (std::vector<int>{2, 5, 8}));
  EXPECT_EQ(matched_indices({{"after", 7}}, 10), (std::vector<int>{7, 8, 9}));
  EXPECT_EQ(matched_indices({{"after", 2}, {"every", 2}, {"first", 3}}, 20),
            (std::vector<int>{3, 5, 7}));
  EXPECT_EQ(matched_indices({{"every", 1}}, 3), (std::vector<int>{0, 1, 2}));
  // Only commands passing commands/keys count.
  RespFilter f(json{{"commands", {"GET"}}, {"every", 2}});
  std::mt19937_64 rng(1);
  EXPECT_FALSE(filter_matches(f, {"GET", "a"}, rng));
  EXPECT_FALSE(filter_matches(f, {"SET", "a", "b"}, rng));
  EXPECT_TRUE(filter_matches(f, {"GET", "a"}, rng));
  EXPECT_EQ(f.matched(), 1u);
}

TEST(RespFilter, ProbabilityIsRepeatableWithASeed) {
  auto a = matched_indices({{"probability", 0.3}}, 200, 42);
  auto b = matched_indices({{"probability", 0.3}}, 200, 42);
  EXPECT_EQ(a, b);
  EXPECT_GT(a.size(), 30u);
  EXPECT_LT(a.size(), 90u);
  EXPECT_NE(a, matched_indices({{"probability", 0.3}}, 200, 43));
  EXPECT_TRUE(matched_indices({{"probability", 0}}, 50).empty());
  EXPECT_EQ(matched_indices({{"probability", 1}}, 5).size(), 5u);
  EXPECT_THROW(RespFilter(json{{"probability", 1.5}}), ToxicError);
}

TEST(RespFilter, ToJson) {
  RespFilter f(json{{"commands", {"GET", "@write"}}, {"keys", "a:*"}, {"every", 2}});
  json out = json::object();
  f.to_json(out);
  EXPECT_EQ(out["commands"], json({"GET", "@write"}));
  EXPECT_EQ(out["keys"], "a:*");
  EXPECT_EQ(out["every"], 2);
  EXPECT_EQ(out["probability"], 1.0);
  EXPECT_FALSE(out.contains("first"));
}

// ---- RespRule::decide, through the registered types ----

RespAction decide(const std::shared_ptr<const ToxicImpl>& impl,
                  const std::vector<std::string>& args, const RespContext& ctx = {}) {
  RespAction a;
  with_frame(args, [&](const resp::RequestFrame& f) { a = impl->resp_rule()->decide(f, ctx); });
  return a;
}

TEST(RespRule, HandshakeIsLeftAloneUnlessNamed) {
  auto all = make_impl("resp_error", {{"preset", "loading"}});
  for (const auto& cmd :
       std::vector<std::vector<std::string>>{{"AUTH", "pw"},
                                             {"HELLO", "3"},
                                             {"SELECT", "1"},
                                             {"CLIENT", "SETNAME", "x"},
                                             {"CLIENT", "SETINFO", "LIB-NAME", "x"}})
    EXPECT_EQ(decide(all, cmd).kind, RespActionKind::Forward) << cmd[0];
  EXPECT_EQ(decide(all, {"GET", "k"}).kind, RespActionKind::Inject);
  EXPECT_EQ(decide(all, {"CLIENT", "GETNAME"}).kind, RespActionKind::Inject);
  auto hello = make_impl("resp_error", {{"preset", "noauth"}, {"commands", {"HELLO"}}});
  EXPECT_EQ(decide(hello, {"HELLO", "3"}).kind, RespActionKind::Inject);
  auto setname = make_impl("resp_error", {{"preset", "noauth"}, {"commands", {"CLIENT|SETNAME"}}});
  EXPECT_EQ(decide(setname, {"CLIENT", "SETNAME", "x"}).kind, RespActionKind::Inject);
  // A category naming them is not naming them.
  auto conn = make_impl("resp_error", {{"preset", "noauth"}, {"commands", {"@connection"}}});
  EXPECT_EQ(decide(conn, {"AUTH", "pw"}).kind, RespActionKind::Forward);
  EXPECT_EQ(decide(conn, {"PING"}).kind, RespActionKind::Inject);
}

TEST(RespRule, PresetsUseRedisWording) {
  struct P {
    const char* preset;
    const char* text;
  } presets[] = {
      {"loading", "-LOADING Redis is loading the dataset in memory\r\n"},
      {"busy", "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN "
               "NOSAVE.\r\n"},
      {"masterdown", "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set "
                     "to 'no'.\r\n"},
      {"tryagain", "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"},
      {"clusterdown", "-CLUSTERDOWN The cluster is down\r\n"},
      {"noauth", "-NOAUTH Authentication required.\r\n"},
      {"wrongpass", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
      {"max_clients", "-ERR max number of clients reached\r\n"},
      {"moved", "-MOVED 12182 127.0.0.1:6381\r\n"},
      {"ask", "-ASK 12182 127.0.0.1:6381\r\n"},
  };
  for (const auto& p : presets) {
    auto a = decide(make_impl("resp_error", {{"preset", p.preset}}), {"GET", "foo"});
    EXPECT_EQ(a.kind, RespActionKind::Inject) << p.preset;
    EXPECT_EQ(a.reply, p.text) << p.preset;
  }
  // Presets with Redis's own default commands.
  auto ro = make_impl("resp_error", {{"preset", "readonly"}});
  EXPECT_EQ(decide(ro, {"GET", "k"}).kind, RespActionKind::Forward);
  EXPECT_EQ(decide(ro, {"SET", "k", "v"}).reply,
            "-READONLY You can't write against a read only replica.\r\n");
  auto oom = make_impl("resp_error", {{"preset", "oom"}});
  EXPECT_EQ(decide(oom, {"DEL", "k"}).kind, RespActionKind::Forward);
  EXPECT_EQ(decide(oom, {"SET", "k", "v"}).reply,
            "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
  auto noscript = make_impl("resp_error", {{"preset", "noscript"}});
  EXPECT_EQ(decide(noscript, {"GET", "k"}).kind, RespActionKind::Forward);
  EXPECT_EQ(decide(noscript, {"EVALSHA", "abc", "0"}).reply,
            "-NOSCRIPT No matching script. Please use EVAL.\r\n");
  auto unblocked = make_impl("resp_error", {{"preset", "unblocked"}});
  EXPECT_EQ(decide(unblocked, {"BLPOP", "q", "0"}).reply,
            "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n");
  EXPECT_EQ(decide(unblocked, {"LPOP", "q"}).kind, RespActionKind::Forward);
  // Free text, with or without the leading '-'.
  EXPECT_EQ(decide(make_impl("resp_error", {{"error", "ERR boom"}}), {"GET", "k"}).reply,
            "-ERR boom\r\n");
  EXPECT_EQ(decide(make_impl("resp_error", {{"error", "-ERR boom"}}), {"GET", "k"}).reply,
            "-ERR boom\r\n");
  EXPECT_THROW(make_impl("resp_error", {{"preset", "nope"}}), ToxicError);
  EXPECT_THROW(make_impl("resp_error", {{"error", "a\r\nb"}}), ToxicError);
  EXPECT_THROW(make_impl("resp_error", json::object()), ToxicError);
}

TEST(RespRule, MovedAndAskCarryTheKeysSlotAndSkipKeylessCommands) {
  auto moved = make_impl("resp_error", {{"preset", "moved"}, {"address", "10.0.0.7:7001"}});
  EXPECT_EQ(decide(moved, {"SET", "{user1000}.following", "x"}).reply,
            "-MOVED " + std::to_string(key_hash_slot("user1000")) + " 10.0.0.7:7001\r\n");
  EXPECT_EQ(decide(moved, {"PING"}).kind, RespActionKind::Forward);
  EXPECT_EQ(moved->attributes()["address"], "10.0.0.7:7001");
}

TEST(RespRule, ReplyFormsFollowTheSessionProtocol) {
  RespContext r2, r3;
  r3.protocol = resp::Protocol::Resp3;
  auto nil = make_impl("resp_reply", {{"reply", "nil"}});
  EXPECT_EQ(decide(nil, {"GET", "k"}, r2).reply, "$-1\r\n");
  EXPECT_EQ(decide(nil, {"GET", "k"}, r3).reply, "_\r\n");
  EXPECT_EQ(decide(make_impl("resp_reply", {{"reply", "int:42"}}), {"GET", "k"}).reply, ":42\r\n");
  EXPECT_EQ(decide(make_impl("resp_reply", {{"reply", "bulk:hello"}}), {"GET", "k"}).reply,
            "$5\r\nhello\r\n");
  EXPECT_EQ(decide(make_impl("resp_reply", {{"reply", "ok"}}), {"GET", "k"}).reply, "+OK\r\n");
  EXPECT_EQ(decide(make_impl("resp_reply", {{"reply", "*2\r\n:1\r\n:2\r\n"}}), {"GET", "k"}).reply,
            "*2\r\n:1\r\n:2\r\n");
  EXPECT_THROW(make_impl("resp_reply", {{"reply", "*2\r\n:1\r\n"}}), ToxicError);
  EXPECT_THROW(make_impl("resp_reply", {{"reply", "int:x"}}), ToxicError);
  EXPECT_THROW(make_impl("resp_reply", json::object()), ToxicError);
}

TEST(RespRule, ModesGetOnlyTheFaultsThatMakeSenseThere) {
  RespContext monitor, pubsub, off, multi;
  monitor.monitoring = true;
  pubsub.subscribed = true;
  off.reply_off = true;
  multi.in_multi = true;
  auto err = make_impl("resp_error", {{"preset", "loading"}});
  auto nil = make_impl("resp_reply", {{"reply", "nil"}});
  auto hang = make_impl("resp_hang", json::object());
  auto trunc = make_impl("truncate", {{"bytes", 1}});
  auto delay_rep = make_impl("resp_delay", {{"phase", "reply"}, {"delay", 5}});
  auto delay_req = make_impl("resp_delay", {{"phase", "request"}, {"delay", 5}});
  auto reset_after = make_impl("resp_reset", {{"phase", "after"}});
  auto reset_before = make_impl("resp_reset", {{"phase", "before"}});
  auto close_after = make_impl("resp_close", {{"phase", "after"}});
  using K = RespActionKind;
  // MONITOR: no injected replies and no reply-side actions; request-side ones apply.
  EXPECT_EQ(decide(err, {"PING"}, monitor).kind, K::Forward);
  EXPECT_EQ(decide(nil, {"PING"}, monitor).kind, K::Forward);
  EXPECT_EQ(decide(hang, {"PING"}, monitor).kind, K::Forward);
  EXPECT_EQ(decide(delay_req, {"PING"}, monitor).kind, K::DelayRequest);
  EXPECT_EQ(decide(reset_before, {"PING"}, monitor).kind, K::ResetBefore);
  // RESP2 pub/sub: errors are answered there, made-up values and reply-side actions are not.
  EXPECT_EQ(decide(err, {"PING"}, pubsub).kind, K::Inject);
  EXPECT_EQ(decide(nil, {"PING"}, pubsub).kind, K::Forward);
  EXPECT_EQ(decide(trunc, {"PING"}, pubsub).kind, K::Forward);
  EXPECT_EQ(decide(delay_rep, {"PING"}, pubsub).kind, K::Forward);
  EXPECT_EQ(decide(reset_after, {"PING"}, pubsub).kind, K::Forward);
  EXPECT_EQ(decide(delay_req, {"PING"}, pubsub).kind, K::DelayRequest);
  // CLIENT REPLY OFF: no reply to act on; refusing (nothing sent) and request-side apply.
  EXPECT_EQ(decide(err, {"SET", "k", "v"}, off).kind, K::Inject);
  EXPECT_EQ(decide(hang, {"SET", "k", "v"}, off).kind, K::Forward);
  EXPECT_EQ(decide(close_after, {"SET", "k", "v"}, off).kind, K::Forward);
  EXPECT_EQ(decide(reset_before, {"SET", "k", "v"}, off).kind, K::ResetBefore);
  // MULTI: a made-up value cannot be queued; an error can (EXEC then aborts).
  EXPECT_EQ(decide(nil, {"GET", "k"}, multi).kind, K::Forward);
  EXPECT_EQ(decide(err, {"GET", "k"}, multi).kind, K::Inject);
  // resp_reply never answers commands that change the connection's mode.
  for (const auto& cmd : std::vector<std::vector<std::string>>{{"SUBSCRIBE", "ch"},
                                                               {"MONITOR"},
                                                               {"MULTI"},
                                                               {"EXEC"},
                                                               {"CLIENT", "REPLY", "OFF"},
                                                               {"RESET"},
                                                               {"QUIT"}})
    EXPECT_EQ(decide(nil, cmd).kind, K::Forward) << cmd[0];
}

TEST(RespRule, IgnoredCommandsDoNotConsumeCounts) {
  auto first = make_impl("resp_hang", {{"first", 1}});
  RespContext off;
  off.reply_off = true;
  EXPECT_EQ(decide(first, {"GET", "k"}, off).kind, RespActionKind::Forward);
  EXPECT_EQ(decide(first, {"GET", "k"}).kind, RespActionKind::Hang);
  EXPECT_EQ(decide(first, {"GET", "k"}).kind, RespActionKind::Forward);
}

TEST(RespRule, CountersAppearInTheAttributes) {
  auto t = make_impl("resp_error", {{"preset", "loading"}, {"commands", {"GET"}}, {"every", 2}});
  for (int i = 0; i < 5; ++i)
    decide(t, {"GET", "k"});
  decide(t, {"SET", "k", "v"});
  json a = t->attributes();
  EXPECT_EQ(a["preset"], "loading");
  EXPECT_EQ(a["matched"], 5);  // GETs the filter selected
  EXPECT_EQ(a["injected"], 2); // every second one faulted
  EXPECT_EQ(a["commands"], json({"GET"}));
}

TEST(RespRule, DelayJitterStaysInRange) {
  auto d = make_impl("resp_delay", {{"delay", 100}, {"jitter", 20}});
  std::mt19937_64 rng(3);
  RespContext ctx;
  ctx.rng = &rng;
  for (int i = 0; i < 50; ++i) {
    auto a = decide(d, {"GET", "k"}, ctx);
    EXPECT_EQ(a.kind, RespActionKind::DelayRequest);
    EXPECT_GE(a.delay_ms, 80u);
    EXPECT_LE(a.delay_ms, 120u);
  }
  EXPECT_THROW(make_impl("resp_delay", {{"phase", "later"}}), ToxicError);
}

} // namespace
} // namespace faultline::toxics
