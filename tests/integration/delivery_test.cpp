// The traffic log's "delivery": what the client got, beside what Redis answered. The real binary
// and a real redis-server; downstream toxics and RESP faults that hold or cut a reply after Redis
// answered it; a client that leaves first; the bound on records waiting for their delivery.

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"

using namespace fltest;
using faultline::control::HttpClient;
using json = nlohmann::json;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The command records of a JSON log (events left out).
std::vector<json> commands_in(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(slurp(path));
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("cmd")) out.push_back(std::move(j));
  }
  return out;
}

struct Delivery : ::testing::Test {
  Redis redis;
  Faultline fl;
  std::string log_path;
  std::unique_ptr<HttpClient> http;

  void SetUp() override { ASSERT_TRUE(redis.start()); }
  void start(std::vector<std::string> extra = {}) {
    log_path = temp_path("delivery", ".log");
    extra.insert(extra.begin(), {"--log", log_path});
    ASSERT_TRUE(fl.start(redis.port(), extra)) << fl.process().log();
    http = std::make_unique<HttpClient>("127.0.0.1", fl.api_port());
  }
  void TearDown() override {
    http.reset();
    if (fl.process().running()) {
      EXPECT_EQ(fl.stop(), 0) << fl.process().log();
    }
  }
  void add(const std::string& name, const std::string& type, const std::string& stream,
           json attrs) {
    json body = {{"name", name}, {"type", type}, {"stream", stream}, {"attributes", attrs}};
    auto r = http->request("POST", "/proxies/redis/toxics", body.dump());
    ASSERT_EQ(r.status, 200) << r.body << r.error;
  }
  json log_status() {
    auto r = http->request("GET", "/log");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }
  // The records of command `name`, once there are n of them.
  std::vector<json> wait_commands(const std::string& name, size_t n,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::vector<json> got;
    wait_until(
        [&] {
          got.clear();
          for (auto& j : commands_in(log_path))
            if (j["cmd"] == name) got.push_back(std::move(j));
          return got.size() >= n;
        },
        timeout);
    return got;
  }
};

TEST_F(Delivery, ALatencyToxicShowsRedisFastAndTheClientLate) {
  start();
  {
    Conn c(fl.port());
    ASSERT_EQ(call(c, {"SET", "k", "v"}), "+OK\r\n");
  }
  add("slow", "latency", "downstream", {{"latency", 300}});
  Conn c(fl.port());
  ASSERT_EQ(call(c, {"GET", "k"}), "$1\r\nv\r\n");
  auto recs = wait_commands("GET", 1);
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  const json& r = recs[0];
  SCOPED_TRACE(r.dump());
  // Redis answered at once; the client got it 300 ms later, held by the toxic.
  EXPECT_LT(r["latency_us"].get<uint64_t>(), 200000u);
  ASSERT_TRUE(r["delivery"].is_object());
  EXPECT_EQ(r["delivery"]["delivered"], true);
  EXPECT_GE(r["delivery"]["delivered_us"].get<uint64_t>(), 250000u);
  EXPECT_LT(r["delivery"]["delivered_us"].get<uint64_t>(), 5000000u);
  EXPECT_EQ(r["delivery"]["by"], "slow");
}

TEST_F(Delivery, WithoutToxicsDeliveryFollowsTheReplyAtOnce) {
  start();
  Conn c(fl.port());
  const int n = 20;
  for (int i = 0; i < n; ++i) ASSERT_EQ(call(c, {"SET", "k" + std::to_string(i), "v"}), "+OK\r\n");
  auto recs = wait_commands("SET", n);
  ASSERT_EQ(recs.size(), static_cast<size_t>(n)) << slurp(log_path);
  for (const json& r : recs) {
    SCOPED_TRACE(r.dump());
    ASSERT_TRUE(r["delivery"].is_object());
    EXPECT_EQ(r["delivery"]["delivered"], true);
    EXPECT_FALSE(r["delivery"].contains("by"));
    const uint64_t lat = r["latency_us"], del = r["delivery"]["delivered_us"];
    EXPECT_GE(del, lat);
    EXPECT_LT(del - lat, 100000u);  // generous: a loaded machine
  }
  EXPECT_EQ(log_status()["delivery_held"], 0);
}

TEST_F(Delivery, AClientThatLeavesBeforeAHeldReplyIsGone) {
  start();
  add("slow", "latency", "downstream", {{"latency", 500}});
  {
    Conn c(fl.port());
    ASSERT_TRUE(c.send_all(cmd({"GET", "k"})));
    // Redis answered and the toxic holds the reply: then the client leaves.
    ASSERT_TRUE(wait_until([&] { return log_status()["delivery_held"] == 1; }))
        << log_status().dump();
  }
  auto recs = wait_commands("GET", 1);
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  const json& r = recs[0];
  SCOPED_TRACE(r.dump());
  EXPECT_EQ(r["reply"]["type"], "null");  // what Redis answered
  EXPECT_LT(r["latency_us"].get<uint64_t>(), 200000u);
  EXPECT_EQ(r["delivery"], json({{"delivered", false}, {"client", "gone"}, {"by", "slow"}}));
}

TEST_F(Delivery, LimitDataCutsTheReplyItStopsIn) {
  start();
  {
    Conn c(fl.port());
    ASSERT_EQ(call(c, {"SET", "k", "hello"}), "+OK\r\n");
  }
  add("cutter", "limit_data", "downstream", {{"bytes", 3}});
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(cmd({"GET", "k"})));
  EXPECT_EQ(c.read_to_end(), "$5\r");
  c.close();  // on the FIN, as clients do: the session ends
  auto recs = wait_commands("GET", 1);
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  SCOPED_TRACE(recs[0].dump());
  EXPECT_EQ(recs[0]["reply"]["text"], "hello");
  EXPECT_EQ(recs[0]["delivery"], json({{"delivered", false}, {"client", "cut"}, {"by", "cutter"}}));
}

TEST_F(Delivery, ResetPeerCutsWhatItHolds) {
  start();
  add("rst", "reset_peer", "downstream", {{"timeout", 100}});
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(cmd({"GET", "k"})));
  int end_errno = 0;
  EXPECT_EQ(c.read_to_end(std::chrono::seconds(5), &end_errno), "");
  auto recs = wait_commands("GET", 1);
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  SCOPED_TRACE(recs[0].dump());
  EXPECT_EQ(recs[0]["delivery"], json({{"delivered", false}, {"client", "cut"}, {"by", "rst"}}));
}

TEST_F(Delivery, TruncateAndRespResetCutTheirReply) {
  start();
  {
    Conn c(fl.port());
    ASSERT_EQ(call(c, {"SET", "big", std::string(1000, 'x')}), "+OK\r\n");
  }
  add("trunc", "truncate", "downstream", {{"bytes", 9}, {"commands", {"GET"}}});
  {
    Conn c(fl.port());
    ASSERT_TRUE(c.send_all(cmd({"GET", "big"})));
    EXPECT_EQ(c.read_to_end(), "$1000\r\nxx");
  }
  auto recs = wait_commands("GET", 1);
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  SCOPED_TRACE(recs[0].dump());
  EXPECT_EQ(recs[0]["fault"], "trunc");
  EXPECT_EQ(recs[0]["delivery"], json({{"delivered", false}, {"client", "cut"}, {"by", "trunc"}}));
}

// Injected replies enter the client's stream, and Redis's +OK to the DISCARD faultline sends in
// place of an aborted EXEC leaves it: the replies after them are still placed right.
TEST_F(Delivery, InjectedAndSwallowedRepliesKeepTheCount) {
  start();
  add("refuse", "resp_error", "upstream", {{"preset", "loading"}, {"commands", {"SET"}}});
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"MULTI"}), "+OK\r\n");
  EXPECT_EQ(call(c, {"SET", "k", "v"}).substr(0, 8), "-LOADING");
  EXPECT_EQ(call(c, {"EXEC"}).substr(0, 10), "-EXECABORT");
  EXPECT_EQ(call(c, {"GET", "k"}), "$-1\r\n");
  auto recs = wait_commands("GET", 1);  // the connection stays open: delivered, not closed
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  std::vector<json> all = commands_in(log_path);
  ASSERT_EQ(all.size(), 4u) << slurp(log_path);
  for (const json& r : all) {
    SCOPED_TRACE(r.dump());
    ASSERT_TRUE(r["delivery"].is_object());
    EXPECT_EQ(r["delivery"]["delivered"], true);
  }
  EXPECT_EQ(log_status()["delivery_held"], 0);
}

// An injected reply takes its place in the client's stream: a reply after it that a limit cuts
// is cut, the injected one before the limit delivered.
TEST_F(Delivery, AnInjectedReplyCountsInTheStreamToTheClient) {
  start();
  add("refuse", "resp_error", "upstream", {{"preset", "loading"}, {"commands", {"GET"}}});
  size_t injected = 0;
  {
    Conn c(fl.port());
    injected = call(c, {"GET", "k"}).size();
    ASSERT_GT(injected, 10u);
  }
  // The injected error and 5 bytes of ECHO's "$5\r\nhello\r\n" pass.
  add("cutter", "limit_data", "downstream", {{"bytes", injected + 5}});
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(cmd({"GET", "k"}) + cmd({"ECHO", "hello"})));
  EXPECT_EQ(c.read_to_end().size(), injected + 5);
  c.close();
  auto recs = wait_commands("ECHO", 1);
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  EXPECT_EQ(recs[0]["delivery"], json({{"delivered", false}, {"client", "cut"}, {"by", "cutter"}}))
      << recs[0].dump();
  auto gets = wait_commands("GET", 2);
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_EQ(gets[1]["fault"], "refuse");
  EXPECT_EQ(gets[1]["delivery"]["delivered"], true) << gets[1].dump();
}

// The reply after an injected one is delivered when its own bytes reach the client, not when
// as many bytes as Redis sent have: sent 150 ms after the injected reply, both held 300 ms.
TEST_F(Delivery, AReplyAfterAnInjectedOneIsDeliveredWhenItsOwnBytesAre) {
  start();
  add("refuse", "resp_error", "upstream", {{"preset", "loading"}, {"commands", {"GET"}}});
  add("slow", "latency", "downstream", {{"latency", 300}});
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(cmd({"GET", "k"})));
  ASSERT_TRUE(wait_until([&] { return log_status()["delivery_held"] == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // shapes the scenario
  ASSERT_TRUE(c.send_all(cmd({"ECHO", "hello"})));
  ASSERT_TRUE(c.read_reply().has_value());
  ASSERT_EQ(c.read_reply().value_or(""), "$5\r\nhello\r\n");
  auto recs = wait_commands("ECHO", 1);
  ASSERT_EQ(recs.size(), 1u) << slurp(log_path);
  SCOPED_TRACE(recs[0].dump());
  EXPECT_EQ(recs[0]["delivery"]["delivered"], true);
  EXPECT_GE(recs[0]["delivery"]["delivered_us"].get<uint64_t>(), 250000u);
}

TEST_F(Delivery, PastTheBoundRecordsAreWrittenWithoutDeliveryAndCounted) {
  start();
  add("slow", "latency", "downstream", {{"latency", 1500}});
  const size_t bound = 10000, n = 12000;
  std::string wire;
  for (size_t i = 0; i < n; ++i) wire += cmd({"GET", "k"});
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(wire));
  // While the toxic holds the replies, no more records wait than the bound; the rest are
  // written at once, without their delivery.
  ASSERT_TRUE(wait_until([&] { return log_status()["delivery_unfollowed"] >= n - bound; }))
      << log_status().dump();
  json st = log_status();
  EXPECT_EQ(st["delivery_held"], bound) << st.dump();
  EXPECT_EQ(st["delivery_unfollowed"], n - bound) << st.dump();
  EXPECT_EQ(c.read_exact(n * 5, std::chrono::seconds(20)).size(), n * 5);  // "$-1\r\n" each
  auto recs = wait_commands("GET", n, std::chrono::seconds(20));
  ASSERT_EQ(recs.size(), n);
  size_t delivered = 0, unfollowed = 0;
  for (const json& r : recs) {
    if (r["delivery"].is_null()) ++unfollowed;
    else if (r["delivery"]["delivered"] == true) ++delivered;
  }
  EXPECT_EQ(unfollowed, n - bound);
  EXPECT_EQ(delivered, bound);
  EXPECT_EQ(log_status()["delivery_held"], 0);
}

TEST_F(Delivery, TheTextLineSaysWhatTheClientGot) {
  start({"--log-format", "text"});
  add("slow", "latency", "downstream", {{"latency", 300}});
  {
    Conn c(fl.port());
    ASSERT_EQ(call(c, {"GET", "a"}), "$-1\r\n");
  }
  {
    Conn c(fl.port());
    ASSERT_TRUE(c.send_all(cmd({"GET", "b"})));
    ASSERT_TRUE(wait_until([&] { return log_status()["delivery_held"] == 1; }));
  }
  std::string text;
  ASSERT_TRUE(wait_until([&] {
    text = slurp(log_path);
    return text.find("GET \"b\"") != std::string::npos;
  })) << text;
  std::istringstream in(text);
  std::string line, a, b;
  while (std::getline(in, line)) {
    if (line.find("GET \"a\"") != std::string::npos) a = line;
    if (line.find("GET \"b\"") != std::string::npos) b = line;
  }
  EXPECT_NE(a.find(" delivered +"), std::string::npos) << a;
  EXPECT_NE(a.find("ms (slow)"), std::string::npos) << a;
  EXPECT_NE(b.find(" not delivered: client gone (slow)"), std::string::npos) << b;
}

} // namespace
