// Request/reply pairing through the running proxy, against a real redis-server, seen from
// outside: the JSON traffic log (one record per completed request, events of their own for
// pushes, pub/sub messages, MONITOR lines, unmatched replies and raw mode), the per-proxy stats
// and the connections list. Clients are raw sockets and redis-cli; every wait is bounded and
// waits on an event.
//
// Each test opens its own redis-server and faultline, so the stats counters are exact.

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"

using namespace fltest;
using faultline::control::HttpClient;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

int64_t us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
}

struct PairingFixture : ::testing::Test {
  Redis redis;
  Faultline fl;
  std::string log_path;
  std::unique_ptr<HttpClient> http;

  void SetUp() override {
    ASSERT_TRUE(redis.start());
    log_path = temp_path("traffic", ".jsonl");
    ASSERT_TRUE(fl.start(redis.port(), {"--log", log_path, "--log-format", "json"}))
        << fl.process().log();
    http = std::make_unique<HttpClient>("127.0.0.1", fl.api_port());
  }
  void TearDown() override {
    http.reset();
    if (fl.process().running()) {
      EXPECT_EQ(fl.stop(), 0) << fl.process().log();
    }
  }

  std::string log_text() const {
    std::ifstream f(log_path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  // Every record written so far (a partly written last line is left for the next read).
  std::vector<json> records() const {
    std::vector<json> out;
    std::string text = log_text();
    size_t pos = 0;
    while (true) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos)
        break;
      std::string line = text.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.empty())
        continue;
      json j = json::parse(line, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << line;
      if (!j.is_discarded())
        out.push_back(std::move(j));
    }
    return out;
  }
  // Request records (no "event" field) of one session, in log order.
  std::vector<json> requests(uint64_t session) const {
    std::vector<json> out;
    for (auto& r : records())
      if (!r.contains("event") && r["session"] == session)
        out.push_back(std::move(r));
    return out;
  }
  // Event records of one session; `name` empty: every event.
  std::vector<json> events(uint64_t session, const std::string& name = "") const {
    std::vector<json> out;
    for (auto& r : records())
      if (r.contains("event") && r["session"] == session && (name.empty() || r["event"] == name))
        out.push_back(std::move(r));
    return out;
  }
  std::vector<json> wait_requests(uint64_t session, size_t n) const {
    std::vector<json> out;
    wait_until([&] {
      out = requests(session);
      return out.size() >= n;
    });
    return out;
  }
  std::vector<json> wait_events(uint64_t session, const std::string& name, size_t n) const {
    std::vector<json> out;
    wait_until([&] {
      out = events(session, name);
      return out.size() >= n;
    });
    return out;
  }
  // The session faultline gave this connection, from its "open" event.
  uint64_t session_of(const Conn& c) const {
    const std::string client = "127.0.0.1:" + std::to_string(c.local_port());
    uint64_t id = 0;
    wait_until([&] {
      for (const auto& r : records())
        if (r.value("event", "") == "open" && r["client"] == client) {
          id = r["session"].get<uint64_t>();
          return true;
        }
      return false;
    });
    EXPECT_NE(id, 0u) << "no open event for " << client << "\n" << log_text();
    return id;
  }
  // The session of the one request record with this command (e.g. redis-cli's).
  uint64_t session_with(const std::string& cmd) const {
    uint64_t id = 0;
    wait_until([&] {
      for (const auto& r : records())
        if (!r.contains("event") && r["cmd"] == cmd) {
          id = r["session"].get<uint64_t>();
          return true;
        }
      return false;
    });
    return id;
  }
  json stats() const {
    auto r = http->request("GET", "/proxies/redis/stats");
    EXPECT_EQ(r.status, 200) << r.body << r.error;
    return json::parse(r.body, nullptr, false);
  }
  json connection(const Conn& c) const {
    const std::string client = "127.0.0.1:" + std::to_string(c.local_port());
    auto r = http->request("GET", "/proxies/redis/connections");
    EXPECT_EQ(r.status, 200) << r.body << r.error;
    for (const auto& e : json::parse(r.body, nullptr, false))
      if (e["client"] == client)
        return e;
    ADD_FAILURE() << "no connection " << client << " in " << r.body;
    return json::object();
  }
  std::string cli(const std::string& args) const {
    int status = -1;
    std::string out =
        run_cmd("redis-cli -p " + std::to_string(fl.port()) + " " + args + " 2>&1", &status);
    EXPECT_EQ(status, 0) << out;
    return out;
  }
  // The request record's command, arguments and reply summary, exactly; plus what holds for
  // every paired request.
  static void expect_record(const json& r, const std::string& cmd, const json& args,
                            const json& reply) {
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["cmd"], cmd);
    EXPECT_EQ(r["args"], args);
    EXPECT_EQ(r["reply"], reply);
    EXPECT_TRUE(r["latency_us"].is_number_unsigned());
    EXPECT_TRUE(r["fault"].is_null());
  }
};

const json kOk = {{"type", "simple"}, {"text", "OK"}};
const json kQueued = {{"type", "simple"}, {"text", "QUEUED"}};
const json kPong = {{"type", "simple"}, {"text", "PONG"}};
const json kNull = {{"type", "null"}};
json bulk_reply(const std::string& s) {
  return {{"type", "bulk"}, {"len", s.size()}, {"text", s}};
}
json int_reply(int64_t v) {
  return {{"type", "integer"}, {"value", v}};
}
json agg_reply(const std::string& type, int64_t count, const std::string& head) {
  json j = {{"type", type}, {"count", count}};
  if (!head.empty())
    j["head"] = head;
  return j;
}

// ---- a 1,000-command pipeline ----

struct Expect {
  std::vector<std::string> cmd;
  std::string wire; // the reply's bytes, as Redis sends them
  json reply;
};

// Six kinds of reply in turn, so a reply paired one request off can never look right:
// simple, bulk, integer, null, error, array.
std::vector<Expect> thousand_commands() {
  std::vector<Expect> ex;
  const int n = 1000;
  for (int i = 0; ex.size() < size_t(n); ++i) {
    const std::string k = "p:" + std::to_string(i), v = "v:" + std::to_string(i);
    const std::string none = "none:" + std::to_string(i);
    ex.push_back({{"SET", k, v}, "+OK\r\n", kOk});
    ex.push_back({{"GET", k}, bulk(v), bulk_reply(v)});
    ex.push_back({{"INCR", "ctr"}, ":" + std::to_string(i + 1) + "\r\n", int_reply(i + 1)});
    ex.push_back({{"GET", none}, "$-1\r\n", kNull});
    const std::string err = "ERR value is not an integer or out of range";
    ex.push_back({{"INCR", k}, "-" + err + "\r\n", {{"type", "error"}, {"text", err}}});
    ex.push_back({{"MGET", k, none}, "*2\r\n" + bulk(v) + "$-1\r\n", agg_reply("array", 2, v)});
  }
  ex.resize(n);
  return ex;
}

TEST_F(PairingFixture, AThousandCommandPipelinePairsInOrder) {
  Conn c(fl.port());
  ASSERT_TRUE(c.ok());
  const uint64_t sid = session_of(c);
  const std::vector<Expect> ex = thousand_commands();
  const int n = int(ex.size());
  std::string pipeline;
  for (const auto& e : ex)
    pipeline += cmd(e.cmd);
  ASSERT_TRUE(c.send_all(pipeline)); // one write: the proxy sees it in a few large chunks
  for (int i = 0; i < n; ++i) {
    auto got = c.read_reply(10s);
    ASSERT_TRUE(got) << "reply " << i;
    ASSERT_EQ(*got, ex[i].wire) << "reply " << i;
  }

  auto recs = wait_requests(sid, n);
  ASSERT_EQ(recs.size(), size_t(n)) << log_text().substr(0, 2000);
  std::string last_ts;
  for (int i = 0; i < n; ++i) {
    const json& r = recs[i];
    SCOPED_TRACE("record " + std::to_string(i));
    expect_record(r, ex[i].cmd[0],
                  json(std::vector<std::string>(ex[i].cmd.begin() + 1, ex[i].cmd.end())),
                  ex[i].reply);
    EXPECT_EQ(r["db"], 0);
    EXPECT_EQ(r["bytes_in"], cmd(ex[i].cmd).size());
    EXPECT_EQ(r["bytes_out"], ex[i].wire.size());
    EXPECT_FALSE(r.contains("replies")); // one reply each
    // Timestamps are the requests' send times: in request order.
    EXPECT_LE(last_ts, r["ts"].get<std::string>());
    last_ts = r["ts"].get<std::string>();
  }
  // No reply left unpaired, nothing out of band: the session's only event is its opening.
  auto evs = events(sid);
  ASSERT_EQ(evs.size(), 1u) << json(evs).dump();
  EXPECT_EQ(evs[0]["event"], "open");
  json st = stats();
  EXPECT_EQ(st["total"]["calls"], n);
  EXPECT_EQ(st["commands"]["SET"]["calls"], 167);
  EXPECT_EQ(st["commands"]["GET"]["calls"], 334);
  EXPECT_EQ(st["commands"]["INCR"]["calls"], 333);
  EXPECT_EQ(st["commands"]["INCR"]["errors"], 166);
  EXPECT_EQ(st["commands"]["MGET"]["calls"], 166);
  EXPECT_EQ(st["out_of_band"],
            json({{"push", 0}, {"message", 0}, {"monitor", 0}, {"unmatched", 0}}));
  EXPECT_EQ(st["raw_mode_sessions"], 0);
  EXPECT_EQ(connection(c)["commands"], n);
}

// The same pipeline with no traffic log: metrics and client verdicts then take the plain
// requests and replies in runs (a call per chunk, not per frame), and must count exactly as
// when they saw each frame. The replies still reach the client byte for byte.
struct PlainRunsFixture : PairingFixture {
  void SetUp() override {
    ASSERT_TRUE(redis.start());
    ASSERT_TRUE(fl.start(redis.port(), {})) << fl.process().log();
    http = std::make_unique<HttpClient>("127.0.0.1", fl.api_port());
  }
  json clients() const {
    auto r = http->request("GET", "/proxies/redis/clients");
    EXPECT_EQ(r.status, 200) << r.body << r.error;
    return json::parse(r.body, nullptr, false);
  }
};

TEST_F(PlainRunsFixture, AThousandCommandPipelineIsCountedExactly) {
  Conn c(fl.port());
  ASSERT_TRUE(c.ok());
  const std::vector<Expect> ex = thousand_commands();
  const int n = int(ex.size());
  std::string pipeline;
  for (const auto& e : ex)
    pipeline += cmd(e.cmd);
  uint64_t reply_bytes = 0;
  for (int round = 1; round <= 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_TRUE(c.send_all(pipeline));
    for (int i = 0; i < n; ++i) {
      auto got = c.read_reply(10s);
      ASSERT_TRUE(got) << "reply " << i;
      if (round == 1) {
        ASSERT_EQ(*got, ex[i].wire) << "reply " << i;
      }
      reply_bytes += got->size();
    }
    json st = stats();
    EXPECT_EQ(st["total"]["calls"], round * n);
    EXPECT_EQ(st["total"]["latency_us"]["count"], round * n);
    EXPECT_EQ(st["total"]["bytes_in"], round * pipeline.size());
    EXPECT_EQ(st["total"]["bytes_out"], reply_bytes);
    EXPECT_EQ(st["commands"]["SET"]["calls"], round * 167);
    EXPECT_EQ(st["commands"]["GET"]["calls"], round * 334);
    EXPECT_EQ(st["commands"]["GET"]["latency_us"]["count"], round * 334);
    EXPECT_EQ(st["commands"]["INCR"]["calls"], round * 333);
    EXPECT_EQ(st["commands"]["INCR"]["errors"], round * 166);
    EXPECT_EQ(st["total"]["errors"], round * 166);
    EXPECT_EQ(st["commands"]["MGET"]["calls"], round * 166);
    json cl = clients();
    EXPECT_EQ(cl["commands"], round * n) << cl.dump();
    EXPECT_EQ(cl["successful_replies"], round * n) << cl.dump();
  }
  EXPECT_EQ(connection(c)["commands"], 2 * n);
}

// ---- MULTI/EXEC ----

TEST_F(PairingFixture, MultiExecQueuedRepliesAndTheExecArray) {
  Conn c(fl.port());
  const uint64_t sid = session_of(c);
  // A transaction, pipelined: QUEUED for each queued command, EXEC's array with one element
  // per queued command, and the SELECT inside it applies only at EXEC (the next command, sent
  // once EXEC answered, runs in db 5; pipelined after EXEC, see
  // PipelinedCommandsAfterSelectAreRecordedInTheSelectedDb).
  ASSERT_TRUE(c.send_all(cmd({"MULTI"}) + cmd({"SET", "tx:a", "1"}) + cmd({"INCR", "tx:a"}) +
                         cmd({"GET", "tx:a"}) + cmd({"SELECT", "5"}) + cmd({"EXEC"})));
  for (const char* want : {"+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n",
                           "*4\r\n+OK\r\n:2\r\n$1\r\n2\r\n+OK\r\n"})
    ASSERT_EQ(c.read_reply(), want);
  ASSERT_EQ(call(c, {"SET", "in5", "x"}), "+OK\r\n");
  // WATCH, then another client changes the key: EXEC answers nil. Then DISCARD.
  ASSERT_EQ(call(c, {"WATCH", "w"}), "+OK\r\n");
  EXPECT_EQ(cli("-n 5 SET w changed"), "OK\n");
  ASSERT_TRUE(c.send_all(cmd({"MULTI"}) + cmd({"GET", "w"}) + cmd({"EXEC"}) + cmd({"MULTI"}) +
                         cmd({"SET", "d", "1"}) + cmd({"DISCARD"}) + cmd({"GET", "d"})));
  for (const char* want :
       {"+OK\r\n", "+QUEUED\r\n", "*-1\r\n", "+OK\r\n", "+QUEUED\r\n", "+OK\r\n", "$-1\r\n"})
    ASSERT_EQ(c.read_reply(), want);
  // A command Redis refuses while queueing: its error pairs, and EXEC answers EXECABORT.
  ASSERT_TRUE(c.send_all(cmd({"MULTI"}) + cmd({"NOSUCHCMD"}) + cmd({"EXEC"}) + cmd({"PING"})));
  ASSERT_EQ(c.read_reply(), "+OK\r\n");
  auto unknown = c.read_reply();
  ASSERT_TRUE(unknown);
  ASSERT_EQ(unknown->rfind("-ERR unknown command", 0), 0u) << *unknown;
  ASSERT_EQ(c.read_reply(), "-EXECABORT Transaction discarded because of previous errors.\r\n");
  ASSERT_EQ(c.read_reply(), "+PONG\r\n");

  auto recs = wait_requests(sid, 19);
  ASSERT_EQ(recs.size(), 19u) << log_text();
  struct Want {
    std::string cmd;
    json args;
    json reply;
    int db;
  };
  const json execabort = {{"type", "error"},
                          {"text", "EXECABORT Transaction discarded because of previous errors."}};
  std::vector<Want> want = {
      {"MULTI", json::array(), kOk, 0},
      {"SET", {"tx:a", "1"}, kQueued, 0},
      {"INCR", {"tx:a"}, kQueued, 0},
      {"GET", {"tx:a"}, kQueued, 0},
      {"SELECT", {"5"}, kQueued, 0},
      {"EXEC", json::array(), agg_reply("array", 4, "OK"), 0},
      {"SET", {"in5", "x"}, kOk, 5},
      {"WATCH", {"w"}, kOk, 5},
      {"MULTI", json::array(), kOk, 5},
      {"GET", {"w"}, kQueued, 5},
      {"EXEC", json::array(), kNull, 5},
      {"MULTI", json::array(), kOk, 5},
      {"SET", {"d", "1"}, kQueued, 5},
      {"DISCARD", json::array(), kOk, 5},
      {"GET", {"d"}, kNull, 5},
      {"MULTI", json::array(), kOk, 5},
      {"NOSUCHCMD", json::array(), {}, 5},
      {"EXEC", json::array(), execabort, 5},
      {"PING", json::array(), kPong, 5},
  };
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    if (want[i].reply.is_null()) { // the unknown command's error text comes from Redis
      EXPECT_EQ(recs[i]["cmd"], want[i].cmd);
      EXPECT_EQ(recs[i]["reply"]["type"], "error");
    } else {
      expect_record(recs[i], want[i].cmd, want[i].args, want[i].reply);
    }
    EXPECT_EQ(recs[i]["db"], want[i].db);
  }
  EXPECT_EQ(events(sid).size(), 1u) << log_text(); // "open" only
  EXPECT_EQ(stats()["out_of_band"]["unmatched"], 0);
}

// A command runs in the db that the SELECTs before it in the stream chose, whether or not
// their replies are back when it is sent: pipelined after SELECT (or after an EXEC holding
// one), its record names the new db.
TEST_F(PairingFixture, PipelinedCommandsAfterSelectAreRecordedInTheSelectedDb) {
  Conn c(fl.port());
  const uint64_t sid = session_of(c);
  ASSERT_TRUE(c.send_all(cmd({"SELECT", "2"}) + cmd({"SET", "in2", "x"}) + cmd({"MULTI"}) +
                         cmd({"SELECT", "4"}) + cmd({"EXEC"}) + cmd({"SET", "in4", "x"})));
  for (const char* want :
       {"+OK\r\n", "+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n", "+OK\r\n"})
    ASSERT_EQ(c.read_reply(), want);
  Conn direct(redis.port()); // where Redis really ran them
  ASSERT_EQ(call(direct, {"SELECT", "2"}), "+OK\r\n");
  ASSERT_EQ(call(direct, {"EXISTS", "in2"}), ":1\r\n");
  ASSERT_EQ(call(direct, {"SELECT", "4"}), "+OK\r\n");
  ASSERT_EQ(call(direct, {"EXISTS", "in4"}), ":1\r\n");
  auto recs = wait_requests(sid, 6);
  ASSERT_EQ(recs.size(), 6u) << log_text();
  expect_record(recs[1], "SET", {"in2", "x"}, kOk);
  EXPECT_EQ(recs[1]["db"], 2);
  expect_record(recs[5], "SET", {"in4", "x"}, kOk);
  EXPECT_EQ(recs[5]["db"], 4);
}

// What a transaction changes takes effect at EXEC, and only what succeeded in it: a SELECT that
// Redis refuses inside EXEC (its error is an element of EXEC's array) leaves the db as it was.
// Each command waits for the previous reply, so only EXEC's outcome decides.
// KNOWN LIMITATION, disabled: pairing sees EXEC's array as one frame (type and size), not its
// elements, so it cannot tell that the queued SELECT failed; the records after it carry the
// db the SELECT asked for. Enable once the reply parser reports errors inside EXEC's array.
TEST_F(PairingFixture, DISABLED_ASelectRefusedInsideExecLeavesTheDb) {
  Conn c(fl.port());
  const uint64_t sid = session_of(c);
  const std::vector<std::pair<std::vector<std::string>, std::string>> steps = {
      {{"MULTI"}, "+OK\r\n"},
      {{"SELECT", "3"}, "+QUEUED\r\n"},
      {{"EXEC"}, "*1\r\n+OK\r\n"},
      {{"MULTI"}, "+OK\r\n"},
      {{"SELECT", "99"}, "+QUEUED\r\n"},
      {{"EXEC"}, "*1\r\n-ERR DB index is out of range\r\n"},
      {{"SET", "where", "x"}, "+OK\r\n"},
  };
  for (const auto& [args, want] : steps)
    ASSERT_EQ(call(c, args), want);
  Conn direct(redis.port());
  ASSERT_EQ(call(direct, {"SELECT", "3"}), "+OK\r\n");
  ASSERT_EQ(call(direct, {"GET", "where"}), bulk("x")); // Redis ran the SET in db 3
  auto recs = wait_requests(sid, 7);
  ASSERT_EQ(recs.size(), 7u) << log_text();
  EXPECT_EQ(recs[3]["db"], 3);
  expect_record(recs[6], "SET", {"where", "x"}, kOk);
  EXPECT_EQ(recs[6]["db"], 3) << "the record names a db Redis refused to select";
}

// ---- RESP2 pub/sub ----

TEST_F(PairingFixture, SubscribeRepliesPairAndPublishedMessagesDoNot) {
  Conn sub(fl.port());
  const uint64_t sid = session_of(sub);
  // Three channels: three replies, one request.
  ASSERT_TRUE(sub.send_all(cmd({"SUBSCRIBE", "a", "b", "c"})));
  int i = 1;
  size_t subscribe_bytes = 0;
  for (const char* ch : {"a", "b", "c"}) {
    const std::string want =
        "*3\r\n" + bulk("subscribe") + bulk(ch) + ":" + std::to_string(i++) + "\r\n";
    ASSERT_EQ(sub.read_reply(), want);
    subscribe_bytes += want.size();
  }
  // A message from another client (redis-cli, through the proxy) is not a reply to anything.
  EXPECT_EQ(cli("PUBLISH b hello"), "1\n");
  ASSERT_EQ(sub.read_reply(), "*3\r\n" + bulk("message") + bulk("b") + bulk("hello"));
  // PING in subscribed mode answers ["pong", ""], and pairs.
  ASSERT_EQ(call(sub, {"PING"}), "*2\r\n" + bulk("pong") + bulk(""));
  // A pattern, and a message through it.
  ASSERT_EQ(call(sub, {"PSUBSCRIBE", "n*"}), "*3\r\n" + bulk("psubscribe") + bulk("n*") + ":4\r\n");
  EXPECT_EQ(cli("PUBLISH news extra"), "1\n");
  ASSERT_EQ(sub.read_reply(),
            "*4\r\n" + bulk("pmessage") + bulk("n*") + bulk("news") + bulk("extra"));
  // UNSUBSCRIBE without arguments: one reply per channel subscribed (3), counted from the
  // subscriptions the proxy followed; then the pattern goes; then a plain command.
  ASSERT_TRUE(sub.send_all(cmd({"UNSUBSCRIBE"}) + cmd({"PUNSUBSCRIBE"}) + cmd({"GET", "x"})));
  std::set<std::string> gone;
  for (int left : {3, 2, 1}) {
    auto r = sub.read_reply();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->rfind("*3\r\n" + bulk("unsubscribe"), 0), 0u) << *r;
    ASSERT_EQ(r->substr(r->size() - 4), ":" + std::to_string(left) + "\r\n") << *r;
    gone.insert(r->substr(("*3\r\n" + bulk("unsubscribe") + "$1\r\n").size(), 1));
  }
  EXPECT_EQ(gone, (std::set<std::string>{"a", "b", "c"}));
  ASSERT_EQ(sub.read_reply(), "*3\r\n" + bulk("punsubscribe") + bulk("n*") + ":0\r\n");
  ASSERT_EQ(sub.read_reply(), "$-1\r\n");

  auto recs = wait_requests(sid, 6);
  ASSERT_EQ(recs.size(), 6u) << log_text();
  expect_record(recs[0], "SUBSCRIBE", {"a", "b", "c"}, agg_reply("array", 3, "subscribe"));
  EXPECT_EQ(recs[0]["replies"], 3);
  EXPECT_EQ(recs[0]["bytes_out"], subscribe_bytes); // all three replies
  expect_record(recs[1], "PING", json::array(), agg_reply("array", 2, "pong"));
  expect_record(recs[2], "PSUBSCRIBE", {"n*"}, agg_reply("array", 3, "psubscribe"));
  expect_record(recs[3], "UNSUBSCRIBE", json::array(), agg_reply("array", 3, "unsubscribe"));
  EXPECT_EQ(recs[3]["replies"], 3);
  expect_record(recs[4], "PUNSUBSCRIBE", json::array(), agg_reply("array", 3, "punsubscribe"));
  expect_record(recs[5], "GET", {"x"}, kNull);
  for (size_t k : {1, 2, 4, 5})
    EXPECT_FALSE(recs[k].contains("replies")) << k;

  auto msgs = events(sid, "message");
  ASSERT_EQ(msgs.size(), 2u) << log_text();
  EXPECT_EQ(msgs[0]["reply"], agg_reply("array", 3, "message"));
  EXPECT_EQ(msgs[1]["reply"], agg_reply("array", 4, "pmessage"));
  // Only these two (and the opening) are out of band.
  EXPECT_EQ(events(sid).size(), 3u) << log_text();
  // The publishers' sessions pair PUBLISH with its receiver count.
  uint64_t pub = session_with("PUBLISH");
  ASSERT_NE(pub, 0u);
  auto pubs = requests(pub);
  ASSERT_EQ(pubs.size(), 1u);
  expect_record(pubs[0], "PUBLISH", {"b", "hello"}, int_reply(1));
  json st = stats();
  EXPECT_EQ(st["out_of_band"],
            json({{"push", 0}, {"message", 2}, {"monitor", 0}, {"unmatched", 0}}));
  EXPECT_EQ(st["commands"]["PUBLISH"]["calls"], 2);
  // The metrics count the bytes of all three SUBSCRIBE replies, as the record does.
  EXPECT_EQ(st["commands"]["SUBSCRIBE"]["bytes_out"], subscribe_bytes);
}

// SUBSCRIBE queued in a transaction subscribes at EXEC: EXEC's array holds the first
// confirmation, the others follow it as replies of their own (Redis 7 does this), and from then
// on the connection is in pub/sub mode.
// KNOWN LIMITATION, disabled: pairing does not follow (P|S)SUBSCRIBE queued inside MULTI, so
// after such an EXEC the extra confirmations pair with later commands. Redis clients do not
// subscribe inside transactions; enable once pairing expands queued subscriptions at EXEC.
TEST_F(PairingFixture, DISABLED_SubscribeInsideMultiEntersPubSubModeAtExec) {
  Conn sub(fl.port());
  const uint64_t sid = session_of(sub);
  ASSERT_TRUE(
      sub.send_all(cmd({"MULTI"}) + cmd({"SUBSCRIBE", "a", "b"}) + cmd({"EXEC"}) + cmd({"PING"})));
  ASSERT_EQ(sub.read_reply(), "+OK\r\n");
  ASSERT_EQ(sub.read_reply(), "+QUEUED\r\n");
  ASSERT_EQ(sub.read_reply(), "*1\r\n*3\r\n" + bulk("subscribe") + bulk("a") + ":1\r\n");
  ASSERT_EQ(sub.read_reply(), "*3\r\n" + bulk("subscribe") + bulk("b") + ":2\r\n");
  ASSERT_EQ(sub.read_reply(), "*2\r\n" + bulk("pong") + bulk(""));
  EXPECT_EQ(cli("PUBLISH a hello"), "1\n");
  ASSERT_EQ(sub.read_reply(), "*3\r\n" + bulk("message") + bulk("a") + bulk("hello"));
  ASSERT_EQ(call(sub, {"PING", "again"}), "*2\r\n" + bulk("pong") + bulk("again"));

  auto recs = wait_requests(sid, 5);
  ASSERT_EQ(recs.size(), 5u) << log_text();
  expect_record(recs[0], "MULTI", json::array(), kOk);
  expect_record(recs[1], "SUBSCRIBE", {"a", "b"}, kQueued);
  expect_record(recs[2], "EXEC", json::array(), agg_reply("array", 1, ""));
  expect_record(recs[3], "PING", json::array(), agg_reply("array", 2, "pong"));
  expect_record(recs[4], "PING", {"again"}, agg_reply("array", 2, "pong"));
  // The published message is a pub/sub message, not a reply.
  auto msgs = events(sid, "message");
  ASSERT_EQ(msgs.size(), 1u) << log_text();
  EXPECT_EQ(msgs[0]["reply"], agg_reply("array", 3, "message"));
  EXPECT_EQ(stats()["out_of_band"]["message"], 1);
}

// ---- MONITOR ----

TEST_F(PairingFixture, MonitorOkPairsAndItsStreamIsOutOfBand) {
  Conn mon(fl.port()), other(fl.port());
  const uint64_t mid = session_of(mon), oid = session_of(other);
  ASSERT_EQ(call(mon, {"MONITOR"}), "+OK\r\n");
  ASSERT_EQ(call(other, {"SET", "mk", "1"}), "+OK\r\n");
  ASSERT_EQ(call(other, {"GET", "mk"}), "$1\r\n1\r\n");
  std::vector<std::string> lines;
  for (int k = 0; k < 2; ++k) {
    auto l = mon.read_reply();
    ASSERT_TRUE(l);
    ASSERT_EQ(l->front(), '+') << *l;
    lines.push_back(*l);
  }
  EXPECT_NE(lines[0].find("\"SET\" \"mk\" \"1\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"GET\" \"mk\""), std::string::npos) << lines[1];
  // The monitoring client's own commands: their replies pair even with MONITOR lines (of the
  // command itself, depending on the Redis version) around them. RESET ends monitoring.
  auto until = [&](const std::string& reply) {
    while (true) {
      auto l = mon.read_reply();
      if (!l)
        return false;
      if (*l == reply)
        return true;
      EXPECT_EQ(l->front(), '+') << *l;
      lines.push_back(*l);
    }
  };
  ASSERT_TRUE(mon.send_all(cmd({"PING"})));
  ASSERT_TRUE(until("+PONG\r\n"));
  ASSERT_TRUE(mon.send_all(cmd({"RESET"})));
  ASSERT_TRUE(until("+RESET\r\n"));
  ASSERT_EQ(call(other, {"SET", "after", "1"}), "+OK\r\n"); // no longer monitored
  ASSERT_EQ(call(mon, {"PING"}), "+PONG\r\n");

  auto recs = wait_requests(mid, 4);
  ASSERT_EQ(recs.size(), 4u) << log_text();
  expect_record(recs[0], "MONITOR", json::array(), kOk);
  expect_record(recs[1], "PING", json::array(), kPong);
  expect_record(recs[2], "RESET", json::array(), {{"type", "simple"}, {"text", "RESET"}});
  expect_record(recs[3], "PING", json::array(), kPong);
  // One monitor event per line the client got, in the same order and with the same text.
  auto evs = events(mid, "monitor");
  ASSERT_EQ(evs.size(), lines.size()) << log_text();
  for (size_t k = 0; k < lines.size(); ++k) {
    std::string text = lines[k].substr(1, lines[k].size() - 3);
    std::string shown;
    for (char ch : text)
      shown += ch == '"' ? std::string("\\\"") : std::string(1, ch);
    EXPECT_EQ(evs[k]["reply"], json({{"type", "simple"}, {"text", shown}})) << k;
    EXPECT_EQ(evs[k]["bytes_out"], lines[k].size());
  }
  EXPECT_EQ(events(mid).size(), 1 + lines.size()) << log_text(); // plus the opening
  EXPECT_EQ(requests(oid).size(), 3u);
  json st = stats();
  EXPECT_EQ(st["out_of_band"]["monitor"], lines.size());
  EXPECT_EQ(st["out_of_band"]["unmatched"], 0);
}

// ---- CLIENT REPLY ----

TEST_F(PairingFixture, ClientReplySkipAndOffLeaveNoHoleInThePairing) {
  Conn c(fl.port());
  const uint64_t sid = session_of(c);
  // Pipelined: SKIP, a SET that gets no reply, a GET whose reply is the first thing back.
  ASSERT_TRUE(
      c.send_all(cmd({"CLIENT", "REPLY", "SKIP"}) + cmd({"SET", "s", "1"}) + cmd({"GET", "s"})));
  ASSERT_EQ(c.read_reply(), "$1\r\n1\r\n");
  // OFF: nothing until ON answers +OK.
  ASSERT_TRUE(c.send_all(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "s", "2"}) +
                         cmd({"INCR", "n"}) + cmd({"NOSUCHCMD"}) + cmd({"CLIENT", "REPLY", "ON"}) +
                         cmd({"GET", "s"})));
  ASSERT_EQ(c.read_reply(), "+OK\r\n");
  ASSERT_EQ(c.read_reply(), "$1\r\n2\r\n");
  // An empty command (an empty inline line) uses up a SKIP, as Redis's resetClient() does.
  ASSERT_TRUE(c.send_all(cmd({"CLIENT", "REPLY", "SKIP"}) + "\r\n" + cmd({"INCR", "n"})));
  ASSERT_EQ(c.read_reply(), ":2\r\n");
  ASSERT_EQ(call(c, {"PING"}), "+PONG\r\n");

  // Records: only the commands that got a reply, each with its own reply.
  auto recs = wait_requests(sid, 5);
  ASSERT_EQ(recs.size(), 5u) << log_text();
  expect_record(recs[0], "GET", {"s"}, bulk_reply("1"));
  expect_record(recs[1], "CLIENT REPLY", {"ON"}, kOk);
  expect_record(recs[2], "GET", {"s"}, bulk_reply("2"));
  expect_record(recs[3], "INCR", {"n"}, int_reply(2));
  expect_record(recs[4], "PING", json::array(), kPong);
  EXPECT_EQ(events(sid).size(), 1u) << log_text(); // no unmatched reply
  json st = stats();
  EXPECT_EQ(st["out_of_band"]["unmatched"], 0);
  // The connection saw every command, answered or not (the empty line is no command).
  EXPECT_EQ(connection(c)["commands"], 13);
}

// ---- blocking commands ----

TEST_F(PairingFixture, BlpopAnsweredByAnotherClientsLpushCarriesTheWait) {
  Conn a(fl.port()), direct(redis.port());
  const uint64_t sid = session_of(a);
  auto blocked = [&](int n) {
    return call(direct, {"INFO", "clients"})
               .find("blocked_clients:" + std::to_string(n) + "\r\n") != std::string::npos;
  };
  // BLPOP with a PING pipelined behind it: Redis runs the PING only once BLPOP is served.
  const auto t0 = Clock::now();
  ASSERT_TRUE(a.send_all(cmd({"BLPOP", "q", "10"}) + cmd({"PING"})));
  ASSERT_TRUE(wait_until([&] { return blocked(1); }));
  const auto blocked_at = Clock::now();
  // The wait being measured (not a synchronisation): the client stays blocked this long.
  const auto hold = std::chrono::milliseconds(300);
  std::this_thread::sleep_until(blocked_at + hold);
  const auto pushed_at = Clock::now();
  EXPECT_EQ(cli("LPUSH q job1"), "1\n");
  ASSERT_EQ(a.read_reply(), "*2\r\n" + bulk("q") + bulk("job1"));
  ASSERT_EQ(a.read_reply(), "+PONG\r\n");
  const auto t1 = Clock::now();
  // A timeout answered by Redis itself: nil after at least the timeout.
  const auto t2 = Clock::now();
  ASSERT_EQ(call(a, {"BLPOP", "empty", "0.2"}), "*-1\r\n");
  const auto t3 = Clock::now();

  auto recs = wait_requests(sid, 3);
  ASSERT_EQ(recs.size(), 3u) << log_text();
  expect_record(recs[0], "BLPOP", {"q", "10"}, agg_reply("array", 2, "q"));
  expect_record(recs[1], "PING", json::array(), kPong);
  expect_record(recs[2], "BLPOP", {"empty", "0.2"}, kNull);
  // faultline saw BLPOP before Redis blocked on it and its reply after the LPUSH was sent, and
  // both inside the client's own window; 1 ms of slack for rounding.
  const int64_t lat = recs[0]["latency_us"].get<int64_t>();
  EXPECT_GE(lat, us_between(blocked_at, pushed_at) - 1000);
  EXPECT_LE(lat, us_between(t0, t1) + 1000);
  EXPECT_GE(recs[1]["latency_us"].get<int64_t>(), us_between(blocked_at, pushed_at) - 1000);
  EXPECT_LE(recs[1]["latency_us"].get<int64_t>(), us_between(t0, t1) + 1000);
  const int64_t tlat = recs[2]["latency_us"].get<int64_t>();
  EXPECT_GE(tlat, 200000 - 1000);
  EXPECT_LE(tlat, us_between(t2, t3) + 1000);
  uint64_t pusher = session_with("LPUSH");
  ASSERT_NE(pusher, 0u);
  auto pushes = requests(pusher);
  ASSERT_EQ(pushes.size(), 1u);
  expect_record(pushes[0], "LPUSH", {"q", "job1"}, int_reply(1));
  EXPECT_LT(pushes[0]["latency_us"].get<int64_t>(), lat);
  EXPECT_EQ(stats()["out_of_band"]["unmatched"], 0);
}

// ---- RESP3: HELLO 3, client tracking, pushes ----

TEST_F(PairingFixture, Resp3InvalidationPushIsOutOfBandAndTheNextCommandPairs) {
  Conn a(fl.port());
  const uint64_t sid = session_of(a);
  std::string hello = call(a, {"HELLO", "3"});
  ASSERT_EQ(hello.rfind("%7\r\n", 0), 0u) << hello;
  ASSERT_EQ(call(a, {"CLIENT", "TRACKING", "ON"}), "+OK\r\n");
  ASSERT_EQ(call(a, {"SET", "tk", "v1"}), "+OK\r\n");
  ASSERT_EQ(call(a, {"GET", "tk"}), bulk("v1")); // tk is now tracked for this client
  EXPECT_EQ(cli("SET tk v2"), "OK\n");
  const std::string invalidate = ">2\r\n" + bulk("invalidate") + "*1\r\n" + bulk("tk");
  ASSERT_EQ(a.read_reply(), invalidate);
  ASSERT_EQ(call(a, {"GET", "tk"}), bulk("v2"));
  // Pub/sub in RESP3: the subscribe confirmation is a push that answers SUBSCRIBE; a message
  // is a push that answers nothing; ordinary commands keep working and pairing.
  ASSERT_EQ(call(a, {"SUBSCRIBE", "ch"}), ">3\r\n" + bulk("subscribe") + bulk("ch") + ":1\r\n");
  EXPECT_EQ(cli("PUBLISH ch hi"), "1\n");
  ASSERT_EQ(a.read_reply(), ">3\r\n" + bulk("message") + bulk("ch") + bulk("hi"));
  ASSERT_EQ(call(a, {"PING"}), "+PONG\r\n");
  ASSERT_EQ(call(a, {"GET", "tk"}), bulk("v2"));

  auto recs = wait_requests(sid, 8);
  ASSERT_EQ(recs.size(), 8u) << log_text();
  expect_record(recs[0], "HELLO", {"3"}, agg_reply("map", 7, "server"));
  expect_record(recs[1], "CLIENT TRACKING", {"ON"}, kOk);
  expect_record(recs[2], "SET", {"tk", "v1"}, kOk);
  expect_record(recs[3], "GET", {"tk"}, bulk_reply("v1"));
  expect_record(recs[4], "GET", {"tk"}, bulk_reply("v2"));
  expect_record(recs[5], "SUBSCRIBE", {"ch"}, agg_reply("push", 3, "subscribe"));
  expect_record(recs[6], "PING", json::array(), kPong);
  expect_record(recs[7], "GET", {"tk"}, bulk_reply("v2"));
  auto pushes = events(sid, "push");
  ASSERT_EQ(pushes.size(), 2u) << log_text();
  EXPECT_EQ(pushes[0]["reply"], agg_reply("push", 2, "invalidate"));
  EXPECT_EQ(pushes[0]["bytes_out"], invalidate.size());
  EXPECT_EQ(pushes[1]["reply"], agg_reply("push", 3, "message"));
  EXPECT_EQ(events(sid).size(), 3u) << log_text(); // plus the opening
  json st = stats();
  EXPECT_EQ(st["out_of_band"],
            json({{"push", 2}, {"message", 0}, {"monitor", 0}, {"unmatched", 0}}));
}

// ---- garbage ----

TEST_F(PairingFixture, GarbageGetsRedisProtocolErrorByteForByteAndTheProxyStaysUp) {
  Conn bystander(fl.port());
  const uint64_t bid = session_of(bystander);
  ASSERT_EQ(call(bystander, {"SET", "g", "1"}), "+OK\r\n");
  struct Case {
    std::string name;
    std::string bytes;
    std::string error; // Redis's reply to the garbage
    int paired;        // valid commands before the garbage
    uint64_t offset;   // where faultline's parser stops: the first byte that is not RESP
  };
  const std::vector<Case> cases = {
      {"bulk header missing", cmd({"PING"}) + "*2\r\n$3\r\nGET\r\nfoo\r\n",
       "-ERR Protocol error: expected '$', got 'f'\r\n", 1, 14 + 13},
      {"multibulk count not a number", "*abc\r\n",
       "-ERR Protocol error: invalid multibulk length\r\n", 0, 1},
      {"bulk length not a number", cmd({"SET", "g", "2"}) + "*1\r\n$x\r\n",
       "-ERR Protocol error: invalid bulk length\r\n", 1, 27 + 5},
  };
  int raw_sessions = 0;
  for (const auto& cs : cases) {
    SCOPED_TRACE(cs.name);
    // What Redis itself answers to these bytes (it then closes the connection).
    Conn direct(redis.port());
    ASSERT_TRUE(direct.send_all(cs.bytes));
    int end_errno = -1;
    const std::string want = direct.read_to_end(5s, &end_errno);
    ASSERT_EQ(end_errno, 0);
    ASSERT_EQ(want.substr(want.size() - std::min(want.size(), cs.error.size())), cs.error);
    // The same bytes through the proxy: the same answer, byte for byte, then the same close.
    Conn c(fl.port());
    const uint64_t sid = session_of(c);
    ASSERT_TRUE(c.send_all(cs.bytes));
    const std::string got = c.read_to_end(5s, &end_errno);
    EXPECT_EQ(got, want);
    EXPECT_EQ(end_errno, 0);
    c.close(); // Redis's FIN reached the client; the session ends once the client closes too
    ++raw_sessions;
    ASSERT_TRUE(wait_events(sid, "close", 1).size() == 1) << log_text();
    auto raw = events(sid, "raw");
    ASSERT_EQ(raw.size(), 1u) << log_text();
    EXPECT_EQ(raw[0]["direction"], "upstream");
    EXPECT_EQ(raw[0]["offset"], cs.offset) << raw[0];
    // The commands before the garbage paired; Redis's protocol error answers no request and is
    // recorded as an unmatched reply, with its text.
    auto recs = requests(sid);
    ASSERT_EQ(recs.size(), size_t(cs.paired)) << log_text();
    auto un = events(sid, "unmatched");
    ASSERT_EQ(un.size(), 1u) << log_text();
    const std::string text = cs.error.substr(1, cs.error.size() - 3);
    EXPECT_EQ(un[0]["reply"], json({{"type", "error"}, {"text", text}})) << un[0];
  }
  // The proxy is up; the connection open all along and a new one are both served and paired.
  EXPECT_TRUE(fl.process().running());
  ASSERT_EQ(call(bystander, {"GET", "g"}), "$1\r\n2\r\n");
  Conn after(fl.port());
  ASSERT_EQ(call(after, {"PING"}), "+PONG\r\n");
  auto brecs = wait_requests(bid, 2);
  ASSERT_EQ(brecs.size(), 2u);
  expect_record(brecs[1], "GET", {"g"}, bulk_reply("2"));
  json st = stats();
  EXPECT_EQ(st["raw_mode_sessions"], raw_sessions);
  EXPECT_EQ(st["out_of_band"]["unmatched"], raw_sessions);
}

} // namespace
