// Issue 5 end to end: the RESP-aware toxics, set through the Toxiproxy-compatible API on a real
// faultline in front of a real redis-server, seen by raw sockets and by redis-py
// (tests/clients/resp_toxics/redis_py_checks.py, run with Debian's /usr/bin/python3).

#include <cerrno>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"
#include "toxics/resp_rule.h"
#include "toxics/slot.h"

namespace fltest {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

std::vector<std::string> read_replies(Conn& c, size_t n, Ms timeout = 5s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    auto r = c.read_reply(timeout);
    if (!r)
      break;
    out.push_back(*r);
  }
  return out;
}

// Elements of a flat RESP2 array of bulk strings (KEYS' reply).
std::set<std::string> bulk_array(const std::string& reply) {
  std::set<std::string> out;
  size_t pos = reply.find("\r\n") + 2;
  while (pos < reply.size() && reply[pos] == '$') {
    size_t eol = reply.find("\r\n", pos);
    size_t len = std::stoul(reply.substr(pos + 1, eol - pos - 1));
    out.insert(reply.substr(eol + 2, len));
    pos = eol + 2 + len + 2;
  }
  return out;
}

class RespToxics : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    redis_ = new Redis;
    ASSERT_TRUE(redis_->start());
  }
  static void TearDownTestSuite() {
    delete redis_;
    redis_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(fl_.start(redis_->port(), {"--seed", "42"}));
    ASSERT_TRUE(wait_port(fl_.api_port()));
    api_ = std::make_unique<faultline::control::HttpClient>("127.0.0.1", fl_.api_port());
    Conn d(redis_->port());
    ASSERT_EQ(call(d, {"FLUSHALL"}), "+OK\r\n");
  }

  // A clean exit after all that (0, and no LeakSanitizer report in the ASan build).
  void TearDown() override {
    int code = fl_.stop();
    EXPECT_EQ(code, 0) << fl_.process().log();
  }

  static json add(faultline::control::HttpClient& api, const std::string& name,
                  const std::string& type, const json& attrs) {
    json body = {{"name", name},
                 {"type", type},
                 {"stream", "upstream"},
                 {"toxicity", 1},
                 {"attributes", attrs}};
    auto r = api.request("POST", "/proxies/redis/toxics", body.dump());
    EXPECT_EQ(r.status, 200) << name << ": " << r.body << r.error;
    return r.status == 200 ? json::parse(r.body) : json();
  }
  json add(const std::string& name, const std::string& type, const json& attrs) {
    return add(*api_, name, type, attrs);
  }
  void del(const std::string& name) {
    auto r = api_->request("DELETE", "/proxies/redis/toxics/" + name);
    EXPECT_EQ(r.status, 204) << name << ": " << r.body << r.error;
  }
  json show(const std::string& name) {
    auto r = api_->request("GET", "/proxies/redis/toxics/" + name);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json();
  }
  std::string direct(const std::vector<std::string>& args) {
    Conn d(redis_->port());
    return call(d, args);
  }
  std::string python(const std::string& check) {
    int status = -1;
    std::string out = run_cmd("/usr/bin/python3 " FAULTLINE_SOURCE_DIR
                              "/tests/clients/resp_toxics/redis_py_checks.py " +
                                  check + " " + std::to_string(fl_.port()) + " " +
                                  std::to_string(fl_.api_port()) + " 2>&1",
                              &status);
    EXPECT_EQ(status, 0) << out;
    return out;
  }

  static Redis* redis_;
  Faultline fl_;
  std::unique_ptr<faultline::control::HttpClient> api_;
};

Redis* RespToxics::redis_ = nullptr;

// ---- resp_error ----

TEST_F(RespToxics, PresetsAnswerWithRedisOwnWording) {
  struct P {
    const char* preset;
    std::string reply;
  } presets[] = {
      {"loading", "-LOADING Redis is loading the dataset in memory\r\n"},
      {"readonly", "-READONLY You can't write against a read only replica.\r\n"},
      {"oom", "-OOM command not allowed when used memory > 'maxmemory'.\r\n"},
      {"busy", "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN "
               "NOSAVE.\r\n"},
      {"noscript", "-NOSCRIPT No matching script. Please use EVAL.\r\n"},
      {"masterdown", "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set "
                     "to 'no'.\r\n"},
      {"tryagain", "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"},
      {"clusterdown", "-CLUSTERDOWN The cluster is down\r\n"},
      {"noauth", "-NOAUTH Authentication required.\r\n"},
      {"wrongpass", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
      {"max_clients", "-ERR max number of clients reached\r\n"},
      {"unblocked", "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"},
      {"moved", "-MOVED 12182 127.0.0.1:" + std::to_string(fl_.port()) + "\r\n"},
      {"ask", "-ASK 12182 127.0.0.1:" + std::to_string(fl_.port()) + "\r\n"},
  };
  direct({"SET", "foo", "bar"});
  for (const auto& p : presets) {
    add("err", "resp_error", {{"preset", p.preset}, {"commands", {"GET"}}});
    Conn c(fl_.port());
    EXPECT_EQ(call(c, {"GET", "foo"}), p.reply) << p.preset;
    EXPECT_EQ(call(c, {"STRLEN", "foo"}), ":3\r\n") << p.preset; // other commands untouched
    del("err");
  }
  Conn c(fl_.port());
  EXPECT_EQ(call(c, {"GET", "foo"}), "$3\r\nbar\r\n"); // gone with the toxic
}

// An update rolls a toxic again against its toxicity, on connections already open, as Toxiproxy
// restarts a changed chain: 1 -> 0 takes the rule off an open connection, 0 -> 1 puts it on.
TEST_F(RespToxics, UpdatedToxicityIsRolledAgainOnOpenConnections) {
  direct({"SET", "foo", "bar"});
  const std::string loading = "-LOADING Redis is loading the dataset in memory\r\n";
  add("err", "resp_error", {{"preset", "loading"}, {"commands", {"GET"}}});
  Conn c(fl_.port());
  EXPECT_EQ(call(c, {"GET", "foo"}), loading);
  auto patch = [&](double toxicity) {
    auto r = api_->request("POST", "/proxies/redis/toxics/err",
                           json{{"toxicity", toxicity}}.dump());
    ASSERT_EQ(r.status, 200) << r.body << r.error;
  };
  patch(0);
  EXPECT_EQ(call(c, {"GET", "foo"}), "$3\r\nbar\r\n");
  patch(1);
  EXPECT_EQ(call(c, {"GET", "foo"}), loading);
}

TEST_F(RespToxics, RedisPyRaisesTheMatchingExceptionClasses) {
  std::string out = python("exceptions");
  EXPECT_NE(out.find("PASS"), std::string::npos) << out;
}

TEST_F(RespToxics, PipelineOfHundredWithEveryThirdFaulted) {
  direct({"SET", "pipe:fixed", "abcdef"});
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 100; ++i) {
    std::string n = std::to_string(i);
    switch (i % 4) {
    case 0:
      cmds.push_back({"ECHO", "e" + n});
      break;
    case 1:
      cmds.push_back({"SET", "pipe:" + n, "v" + n});
      break;
    case 2:
      cmds.push_back({"STRLEN", "pipe:fixed"});
      break;
    default:
      cmds.push_back({"PING"});
      break;
    }
  }
  std::string wire;
  for (const auto& c : cmds)
    wire += cmd(c);
  Conn d(redis_->port());
  ASSERT_TRUE(d.send_all(wire));
  auto expected = read_replies(d, cmds.size());
  ASSERT_EQ(expected.size(), cmds.size());
  ASSERT_EQ(call(d, {"FLUSHALL"}), "+OK\r\n");
  ASSERT_EQ(call(d, {"SET", "pipe:fixed", "abcdef"}), "+OK\r\n");

  // Twice: the whole pipeline in one write, then in 7-byte pieces (frames split everywhere).
  for (size_t piece : {wire.size(), size_t{7}}) {
    add("every3", "resp_error", {{"error", "ERR injected"}, {"every", 3}});
    Conn c(fl_.port());
    for (size_t off = 0; off < wire.size(); off += piece)
      ASSERT_TRUE(c.send_all(wire.substr(off, piece)));
    auto got = read_replies(c, cmds.size());
    ASSERT_EQ(got.size(), cmds.size()) << "piece " << piece;
    for (size_t i = 0; i < cmds.size(); ++i) {
      if ((i + 1) % 3 == 0)
        EXPECT_EQ(got[i], "-ERR injected\r\n") << i;
      else
        EXPECT_EQ(got[i], expected[i]) << i;
    }
    // Faulted SETs never reached Redis; the others did.
    for (size_t i = 1; i < cmds.size(); i += 4)
      EXPECT_EQ(direct({"EXISTS", "pipe:" + std::to_string(i)}),
                (i + 1) % 3 == 0 ? ":0\r\n" : ":1\r\n")
          << i;
    json t = show("every3");
    EXPECT_EQ(t["attributes"]["matched"], 100);
    EXPECT_EQ(t["attributes"]["injected"], 33);
    del("every3");
    direct({"FLUSHALL"});
    direct({"SET", "pipe:fixed", "abcdef"});
  }
}

TEST_F(RespToxics, MovedAndAskCarryTheSlotRedisComputes) {
  // CLUSTER KEYSLOT needs cluster mode ("This instance has cluster support disabled" otherwise).
  // The cluster bus gets a port of its own (picked, and picked again if taken, by the harness):
  // the default (port + 10000) may be taken, or past 65535 for an ephemeral port (the node then
  // dies just after it started listening).
  Redis cluster;
  ASSERT_TRUE(
      cluster.start(0, {"--cluster-enabled", "yes", "--cluster-port", Redis::kUnusedPort}));
  Conn cl(cluster.port());
  add("moved", "resp_error",
      {{"preset", "moved"}, {"commands", {"GET"}}, {"address", "127.0.0.1:7001"}});
  add("ask", "resp_error", {{"preset", "ask"}, {"commands", {"SET"}}});
  Conn c(fl_.port());
  const char* keys[] = {
      "foo", "bar", "{user1000}.following", "{user1000}.followers", "a{}b",     "x{y}z",
      "{}",  "{",   "key:with:colons",      "\xff\x01binary",       "123456789"};
  for (const char* k : keys) {
    std::string slot_reply = call(cl, {"CLUSTER", "KEYSLOT", k});
    ASSERT_EQ(slot_reply[0], ':') << slot_reply;
    std::string slot = slot_reply.substr(1, slot_reply.size() - 3);
    EXPECT_EQ(slot, std::to_string(faultline::toxics::key_hash_slot(k))) << k;
    EXPECT_EQ(call(c, {"GET", k}), "-MOVED " + slot + " 127.0.0.1:7001\r\n") << k;
    // Without an address: this proxy's own listener, so a client that follows stays behind it.
    EXPECT_EQ(call(c, {"SET", k, "v"}), "-ASK " + slot + " 127.0.0.1:" + std::to_string(fl_.port()) + "\r\n") << k;
  }
  EXPECT_EQ(call(cl, {"CLUSTER", "KEYSLOT", "foo"}), ":12182\r\n"); // the published value
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");                        // keyless: not redirected
}

TEST_F(RespToxics, MultiWithRefusedCommandEndsInExecAbortAndNothingRuns) {
  add("oom", "resp_error", {{"preset", "oom"}, {"commands", {"SET"}}});
  {
    Conn c(fl_.port());
    EXPECT_EQ(call(c, {"MULTI"}), "+OK\r\n");
    EXPECT_EQ(call(c, {"INCR", "tx:c"}), "+QUEUED\r\n");
    EXPECT_EQ(call(c, {"SET", "tx:k", "v"}),
              "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
    EXPECT_EQ(call(c, {"INCR", "tx:c"}), "+QUEUED\r\n");
    EXPECT_EQ(call(c, {"EXEC"}),
              "-EXECABORT Transaction discarded because of previous errors.\r\n");
    // Redis is out of the transaction (a PING inside one would be +QUEUED), and the +OK of the
    // DISCARD faultline sent is not the client's.
    EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
    EXPECT_EQ(call(c, {"INCR", "tx:other"}), ":1\r\n");
  }
  EXPECT_EQ(direct({"GET", "tx:c"}), "$-1\r\n");
  {
    // The same, pipelined in one write.
    Conn c(fl_.port());
    ASSERT_TRUE(c.send_all(cmd({"MULTI"}) + cmd({"INCR", "tx:c"}) + cmd({"SET", "tx:k", "v"}) +
                           cmd({"EXEC"}) + cmd({"PING"})));
    auto got = read_replies(c, 5);
    ASSERT_EQ(got.size(), 5u);
    EXPECT_EQ(got[1], "+QUEUED\r\n");
    EXPECT_EQ(got[3], "-EXECABORT Transaction discarded because of previous errors.\r\n");
    EXPECT_EQ(got[4], "+PONG\r\n");
  }
  EXPECT_EQ(direct({"GET", "tx:c"}), "$-1\r\n");
  del("oom");
  // EXEC itself refused: Redis words it "EXECABORT Transaction discarded because of: <error>".
  add("exec", "resp_error", {{"preset", "loading"}, {"commands", {"EXEC"}}});
  Conn c(fl_.port());
  EXPECT_EQ(call(c, {"MULTI"}), "+OK\r\n");
  EXPECT_EQ(call(c, {"INCR", "tx:c2"}), "+QUEUED\r\n");
  EXPECT_EQ(call(c, {"EXEC"}), "-EXECABORT Transaction discarded because of: LOADING Redis is "
                               "loading the dataset in memory\r\n");
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(direct({"GET", "tx:c2"}), "$-1\r\n");
}

// ---- resp_reset / resp_close ----

TEST_F(RespToxics, ResetAndCloseBeforeAndAfter) {
  struct Case {
    const char* type;
    const char* phase;
    bool reset;
    bool executed;
  } cases[] = {
      {"resp_reset", "after", true, true},
      {"resp_reset", "before", true, false},
      {"resp_close", "after", false, true},
      {"resp_close", "before", false, false},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(std::string(k.type) + " " + k.phase);
    direct({"SET", "counter", "10"});
    add("end", k.type, {{"phase", k.phase}, {"commands", {"INCR"}}});
    Conn c(fl_.port());
    EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
    // A pipeline: the reply before the faulted INCR arrives; nothing after it does.
    ASSERT_TRUE(
        c.send_all(cmd({"ECHO", "before"}) + cmd({"INCR", "counter"}) + cmd({"ECHO", "after"})));
    int end_errno = -1;
    std::string got = c.read_to_end(5s, &end_errno);
    EXPECT_EQ(got, "$6\r\nbefore\r\n");
    EXPECT_EQ(end_errno, k.reset ? ECONNRESET : 0) << strerror(end_errno);
    EXPECT_EQ(direct({"GET", "counter"}), k.executed ? "$2\r\n11\r\n" : "$2\r\n10\r\n");
    del("end");
  }
}

// ---- resp_hang ----

TEST_F(RespToxics, HangTimesOutInRedisPyOnThatKeyOnly) {
  std::string out = python("hang");
  EXPECT_NE(out.find("PASS"), std::string::npos) << out;
}

TEST_F(RespToxics, HangSwallowsThatReplyAndEveryLaterOne) {
  add("hang", "resp_hang", {{"keys", "slow:*"}});
  Conn c(fl_.port());
  ASSERT_TRUE(c.send_all(cmd({"PING"}) + cmd({"GET", "slow:1"}) + cmd({"PING"})));
  EXPECT_EQ(c.read_reply(2s).value_or("<none>"), "+PONG\r\n");
  EXPECT_FALSE(c.read_reply(300ms).has_value());
  Conn other(fl_.port());
  EXPECT_EQ(call(other, {"GET", "fast:1"}), "$-1\r\n");
}

// ---- resp_delay ----

TEST_F(RespToxics, DelayRequestAndReplyKeepOrderAndTiming) {
  // Load only adds time: a delayed reply comes at least kDelay late and, delayed once, less than
  // 2 x kDelay; one not held comes before kDelay.
  constexpr long kDelay = 300, kSlack = kDelay - 10;
  for (const char* phase : {"request", "reply"}) {
    SCOPED_TRACE(phase);
    add("slow", "resp_delay", {{"phase", phase}, {"delay", kDelay}, {"keys", "slow:*"}});
    Conn c(fl_.port());
    EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
    auto t0 = Clock::now();
    ASSERT_TRUE(c.send_all(cmd({"ECHO", "first"}) + cmd({"GET", "slow:1"}) + cmd({"PING"})));
    EXPECT_EQ(c.read_reply(2s).value_or("<none>"), "$5\r\nfirst\r\n");
    EXPECT_LT(ms_since(t0), kDelay - 5); // before the delayed command: not held
    EXPECT_EQ(c.read_reply(2s).value_or("<none>"), "$-1\r\n");
    long delayed = ms_since(t0);
    EXPECT_EQ(c.read_reply(2s).value_or("<none>"), "+PONG\r\n");
    long behind = ms_since(t0);
    EXPECT_GE(delayed, kDelay - 5);
    EXPECT_LT(delayed, kDelay + kSlack);
    EXPECT_GE(behind, kDelay - 5); // the PING after it waited behind
    EXPECT_LT(behind, kDelay + kSlack);
    // Other commands on other connections are not held.
    Conn other(fl_.port());
    auto t1 = Clock::now();
    EXPECT_EQ(call(other, {"GET", "fast:1"}), "$-1\r\n");
    EXPECT_LT(ms_since(t1), kDelay - 5);
    del("slow");
  }
}

// ---- resp_reply ----

TEST_F(RespToxics, ReplyFormsAndRedisPyNil) {
  std::string out = python("nil");
  EXPECT_NE(out.find("PASS"), std::string::npos) << out;
  direct({"SET", "cache:1", "real"});
  struct F {
    const char* spec;
    const char* reply;
  } forms[] = {
      {"nil", "$-1\r\n"},
      {"int:42", ":42\r\n"},
      {"bulk:hello", "$5\r\nhello\r\n"},
      {"empty", "*0\r\n"},
      {"ok", "+OK\r\n"},
      {"*2\r\n:1\r\n$1\r\nx\r\n", "*2\r\n:1\r\n$1\r\nx\r\n"},
  };
  for (const auto& f : forms) {
    add("r", "resp_reply", {{"reply", f.spec}, {"commands", {"GET"}}, {"keys", "cache:*"}});
    Conn c(fl_.port());
    EXPECT_EQ(call(c, {"GET", "cache:1"}), f.reply) << f.spec;
    EXPECT_EQ(call(c, {"GET", "other"}), "$-1\r\n") << f.spec;
    del("r");
  }
  // A RESP3 session (HELLO 3) gets RESP3's null.
  add("r", "resp_reply", {{"reply", "nil"}, {"commands", {"GET"}}, {"keys", "cache:*"}});
  Conn c(fl_.port());
  std::string hello = call(c, {"HELLO", "3"});
  ASSERT_EQ(hello[0], '%') << hello;
  EXPECT_EQ(call(c, {"GET", "cache:1"}), "_\r\n");
  Conn c2(fl_.port());
  EXPECT_EQ(call(c2, {"GET", "cache:1"}), "$-1\r\n");
}

// ---- truncate ----

TEST_F(RespToxics, TruncateDeliversTheFirstBytesThenResets) {
  direct({"SET", "big", std::string(1000, 'x')});
  add("cut", "truncate", {{"bytes", 9}, {"commands", {"GET"}}});
  Conn c(fl_.port());
  ASSERT_TRUE(c.send_all(cmd({"GET", "big"}) + cmd({"PING"})));
  int end_errno = -1;
  std::string got = c.read_to_end(5s, &end_errno);
  EXPECT_EQ(got, "$1000\r\nxx");
  EXPECT_EQ(end_errno, ECONNRESET) << strerror(end_errno);
}

// ---- filter: first / every / after / probability, seeded ----

std::vector<int> faulted_indices(uint16_t port, int n) {
  Conn c(port);
  std::string wire;
  for (int i = 0; i < n; ++i)
    wire += cmd({"ECHO", std::to_string(i)});
  c.send_all(wire);
  auto got = read_replies(c, static_cast<size_t>(n));
  std::vector<int> out;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i][0] == '-')
      out.push_back(static_cast<int>(i));
  EXPECT_EQ(got.size(), static_cast<size_t>(n));
  return out;
}

TEST_F(RespToxics, FirstEveryAfterAreExactAndProbabilityRepeatsWithASeed) {
  struct Case {
    json attrs;
    std::vector<int> want;
  } cases[] = {
      {{{"first", 3}}, {0, 1, 2}},
      {{{"every", 4}}, {3, 7, 11, 15, 19}},
      {{{"after", 17}}, {17, 18, 19}},
      {{{"after", 2}, {"every", 3}, {"first", 2}}, {4, 7}},
  };
  for (auto& k : cases) {
    json attrs = k.attrs;
    attrs["error"] = "ERR f";
    add("f", "resp_error", attrs);
    EXPECT_EQ(faulted_indices(fl_.port(), 20), k.want) << attrs.dump();
    del("f");
  }
  // Probability: two faultlines with the same seed fault the same commands; another seed not.
  auto run = [&](Faultline& f) {
    faultline::control::HttpClient api("127.0.0.1", f.api_port());
    add(api, "p", "resp_error", {{"error", "ERR p"}, {"probability", 0.3}});
    return faulted_indices(f.port(), 80);
  };
  Faultline a, b, other;
  ASSERT_TRUE(a.start(redis_->port(), {"--seed", "7"}));
  ASSERT_TRUE(b.start(redis_->port(), {"--seed", "7"}));
  ASSERT_TRUE(other.start(redis_->port(), {"--seed", "8"}));
  for (Faultline* f : {&a, &b, &other})
    ASSERT_TRUE(wait_port(f->api_port()));
  auto ra = run(a), rb = run(b), ro = run(other);
  EXPECT_EQ(ra, rb);
  EXPECT_NE(ra, ro);
  EXPECT_GT(ra.size(), 10u);
  EXPECT_LT(ra.size(), 40u);
}

// ---- sessions in pub/sub, MONITOR and CLIENT REPLY OFF ----

TEST_F(RespToxics, PubSubSessionsGetOnlyTheFaultsThatFit) {
  add("hang", "resp_hang", {{"commands", {"PING"}}});
  add("fake", "resp_reply", {{"reply", "bulk:fake"}, {"commands", {"PING", "SUBSCRIBE"}}});
  Conn sub(fl_.port());
  EXPECT_EQ(call(sub, {"SUBSCRIBE", "ch"}), "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  // RESP2 pub/sub: neither hang nor a made-up value applies; Redis's own pong arrives.
  EXPECT_EQ(call(sub, {"PING"}), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
  Conn pub(fl_.port());
  EXPECT_EQ(call(pub, {"PUBLISH", "ch", "hi"}), ":1\r\n");
  EXPECT_EQ(sub.read_reply(2s).value_or("<none>"),
            "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
  // An error is what Redis could answer there: it applies.
  add("err", "resp_error", {{"preset", "loading"}, {"commands", {"PING"}}});
  del("hang");
  del("fake");
  EXPECT_EQ(call(sub, {"PING"}), "-LOADING Redis is loading the dataset in memory\r\n");
  EXPECT_EQ(call(pub, {"PUBLISH", "ch", "again"}), ":1\r\n");
  EXPECT_EQ(sub.read_reply(2s).value_or("<none>"),
            "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nagain\r\n");
  // Outside pub/sub the same toxics do apply.
  Conn plain(fl_.port());
  EXPECT_EQ(call(plain, {"PING"}), "-LOADING Redis is loading the dataset in memory\r\n");
}

TEST_F(RespToxics, MonitorSessionsAreLeftToRedis) {
  add("err", "resp_error", {{"preset", "loading"}, {"commands", {"PING"}}});
  add("hang", "resp_hang", {{"commands", {"PING"}}});
  Conn mon(fl_.port());
  // MONITOR itself is not PING: it goes through.
  EXPECT_EQ(call(mon, {"MONITOR"}), "+OK\r\n");
  ASSERT_TRUE(mon.send_all(cmd({"PING"})));
  Conn other(fl_.port());
  EXPECT_EQ(call(other, {"SET", "mon:k", "v"}), "+OK\r\n");
  bool pong = false, line = false;
  for (int i = 0; i < 4 && !(pong && line); ++i) {
    auto r = mon.read_reply(2s);
    if (!r)
      break;
    if (*r == "+PONG\r\n")
      pong = true;
    if (r->find("\"mon:k\"") != std::string::npos)
      line = true;
  }
  EXPECT_TRUE(pong) << "the monitoring client's PING got Redis's reply";
  EXPECT_TRUE(line) << "the MONITOR stream kept flowing";
  EXPECT_EQ(call(other, {"PING"}), "-LOADING Redis is loading the dataset in memory\r\n");
}

TEST_F(RespToxics, ReplyOffSessionsGetNoRepliesAndNoReplySideFaults) {
  add("oom", "resp_error", {{"preset", "oom"}, {"commands", {"SET"}}});
  add("hang", "resp_hang", {{"commands", {"GET"}}});
  Conn c(fl_.port());
  ASSERT_TRUE(c.send_all(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "off:k", "v"}) +
                         cmd({"GET", "off:k"}) + cmd({"INCR", "off:n"}) +
                         cmd({"CLIENT", "REPLY", "ON"})));
  // Nothing before CLIENT REPLY ON's +OK: no injected error, and no hang of GET.
  EXPECT_EQ(c.read_reply(2s).value_or("<none>"), "+OK\r\n");
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(direct({"GET", "off:k"}), "$-1\r\n"); // the refused SET did not run
  EXPECT_EQ(direct({"GET", "off:n"}), "$1\r\n1\r\n");
  EXPECT_EQ(show("hang")["attributes"]["matched"], 0);
  EXPECT_EQ(show("oom")["attributes"]["injected"], 1);
}

// ---- handshake and counters ----

TEST_F(RespToxics, HandshakeCommandsAreNotMatchedByDefault) {
  add("all", "resp_error", {{"preset", "loading"}});
  Conn c(fl_.port());
  std::string hello = call(c, {"HELLO", "3"});
  EXPECT_EQ(hello[0], '%') << hello;
  EXPECT_EQ(call(c, {"CLIENT", "SETNAME", "app"}), "+OK\r\n");
  EXPECT_EQ(call(c, {"SELECT", "0"}), "+OK\r\n");
  std::string auth = call(c, {"AUTH", "pw"});
  EXPECT_EQ(auth.find("LOADING"), std::string::npos) << auth; // Redis's own answer
  EXPECT_EQ(call(c, {"GET", "k"}), "-LOADING Redis is loading the dataset in memory\r\n");
  del("all");
  add("hello", "resp_error", {{"preset", "noauth"}, {"commands", {"HELLO"}}});
  Conn c2(fl_.port());
  EXPECT_EQ(call(c2, {"HELLO", "3"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(call(c2, {"GET", "k"}), "$-1\r\n"); // still RESP2: the HELLO never ran
}

TEST_F(RespToxics, CountersAreInTheToxicsJson) {
  json created =
      add("cnt", "resp_error", {{"preset", "loading"}, {"commands", {"GET"}}, {"every", 2}});
  EXPECT_EQ(created["attributes"]["matched"], 0);
  EXPECT_EQ(created["attributes"]["preset"], "loading");
  Conn c(fl_.port());
  for (int i = 0; i < 5; ++i)
    call(c, {"GET", "k"});
  call(c, {"SET", "k", "v"});
  json t = show("cnt");
  EXPECT_EQ(t["type"], "resp_error");
  EXPECT_EQ(t["attributes"]["matched"], 5);
  EXPECT_EQ(t["attributes"]["injected"], 2);
  EXPECT_EQ(t["attributes"]["commands"], json({"GET"}));
  EXPECT_EQ(t["attributes"]["every"], 2);
  auto list = api_->request("GET", "/proxies/redis/toxics");
  EXPECT_NE(list.body.find("\"injected\":2"), std::string::npos) << list.body;
}

// ---- glob_match against Redis's own KEYS ----

TEST_F(RespToxics, GlobAgreesWithRedisKeys) {
  const char* keys[] = {
      "hello", "hallo",        "hillo", "hllo", "heeeello", "h*llo", "user:1000", "users:1",
      "a]b",   "cache:x:y:v1", "-",     "]",    "abc",      "a\\b",  "[x",        ""};
  for (const char* k : keys)
    direct({"SET", k, "1"});
  const char* patterns[] = {"h?llo",   "h*llo",  "h[ae]llo", "h[^e]llo", "h[a-b]llo", "h[b-a]llo",
                            "h\\*llo", "user:*", "*:*",      "a[]]b",    "[\\-]",     "*]*",
                            "a\\\\b",  "[x",     "\\[x",     "[^a-z]",   "*e*l*o",    "???",
                            "*",       "**",     "*o"};
  for (const char* p : patterns) {
    auto in_redis = bulk_array(direct({"KEYS", p}));
    for (const char* k : keys)
      EXPECT_EQ(faultline::toxics::glob_match(p, k), in_redis.count(k) == 1)
          << "pattern " << p << " key " << k;
  }
}

} // namespace
} // namespace fltest

namespace fltest {
namespace {

// A rule added while a large request is on its way: its head already reached Redis, so the
// request can only go on untouched (found by tools/soak: a refused tail left Redis inside a bulk).
TEST_F(RespToxics, ARuleAddedInTheMiddleOfARequestLetsItThrough) {
  Conn c(fl_.port());
  const std::string value(20000, 'm');
  const std::string req = cmd({"SET", "mid:added", value});
  const size_t head = req.find(value) + 1000;  // the header and 1,000 bytes of the value
  ASSERT_TRUE(c.send_all(req.substr(0, head)));
  // Redis holds the value's first 1,000 bytes in its query buffer (the header is parsed).
  ASSERT_TRUE(wait_until(
      [&] { return direct({"CLIENT", "LIST"}).find("qbuf=1000 ") != std::string::npos; }, 5s));
  add("late", "resp_error", {{"commands", json::array({"SET"})}, {"preset", "readonly"}});
  ASSERT_TRUE(c.send_all(req.substr(head)));
  EXPECT_EQ(c.read_reply(5s).value_or("none"), "+OK\r\n");
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(direct({"STRLEN", "mid:added"}), ":20000\r\n");
  EXPECT_EQ(call(c, {"SET", "mid:next", "1"}), "-READONLY You can't write against a read only replica.\r\n");
}

// A request decided on its head (refused) whose rule goes away before its body ends: the rest of
// the body is still dropped, never forwarded without its head.
TEST_F(RespToxics, ARuleRemovedInTheMiddleOfARefusedRequestStillDropsItsBody) {
  Conn c(fl_.port());
  add("refuse", "resp_error", {{"commands", json::array({"SET"})}, {"preset", "readonly"}});
  const std::string req = cmd({"SET", "mid:removed", std::string(4 << 20, 'r')});
  const size_t head = 200000;  // past the 64 KiB head limit
  ASSERT_TRUE(c.send_all(req.substr(0, head)));
  ASSERT_TRUE(wait_until([&] { return show("refuse")["attributes"]["matched"] == 1; }, 5s));
  del("refuse");
  ASSERT_TRUE(c.send_all(req.substr(head)));
  EXPECT_EQ(c.read_reply(5s).value_or("none"),
            "-READONLY You can't write against a read only replica.\r\n");
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(direct({"EXISTS", "mid:removed"}), ":0\r\n");
}

} // namespace
} // namespace fltest
