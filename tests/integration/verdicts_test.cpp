// Client verdicts through the running proxy and a real redis-server, seen from outside through
// GET /proxies/{name}/clients: what counts as a resend (never the handshake, only the same
// arguments), and the views of one client and of a time range. Clients are raw sockets; every
// wait is bounded and waits on an event.

#include <chrono>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"

using namespace fltest;
using faultline::control::HttpClient;
using json = nlohmann::json;

namespace {

struct VerdictsFixture : ::testing::Test {
  Redis redis;
  Faultline fl;
  std::unique_ptr<HttpClient> http;

  void SetUp() override {
    ASSERT_TRUE(redis.start());
    ASSERT_TRUE(fl.start(redis.port(), {})) << fl.process().log();
    http = std::make_unique<HttpClient>("127.0.0.1", fl.api_port());
  }
  void TearDown() override {
    http.reset();
    if (fl.process().running()) {
      EXPECT_EQ(fl.stop(), 0) << fl.process().log();
    }
  }
  json clients(const std::string& query = "") const {
    auto r = http->request("GET", "/proxies/redis/clients" + query);
    EXPECT_EQ(r.status, 200) << r.body << r.error;
    return json::parse(r.body, nullptr, false);
  }
};

// The cases, through the proxy. A client named "app" (CLIENT SETNAME on every
// connection, as redis-py's client_name= does) has its handshake and an INCR cut off by a
// reset; it reconnects, names itself again and resends the INCR, then increments once more.
// Another client (unnamed: known by its address) has SET k v1 cut off and then sends SET k v2.
// One resend in all: the app's INCR. Per client, and per time range, the same rules.
TEST_F(VerdictsFixture, HandshakeAndNewWorkAreNoResendsPerClientAndRange) {
  // Requests reach the proxy and go no further: they stay pending, at risk.
  auto add = http->request("POST", "/proxies/redis/toxics",
                           json{{"name", "hole"},
                                {"type", "timeout"},
                                {"stream", "upstream"},
                                {"attributes", {{"timeout", 0}}}}
                               .dump());
  ASSERT_EQ(add.status, 200) << add.body;
  Conn app(fl.port()), other(fl.port());
  ASSERT_TRUE(app.ok() && other.ok());
  ASSERT_TRUE(app.send_all(cmd({"CLIENT", "SETNAME", "app"}) + cmd({"INCR", "ctr"})));
  ASSERT_TRUE(other.send_all(cmd({"SET", "k", "v1"})));
  // The proxy has seen the three requests (counted) before the reset cuts them off.
  ASSERT_TRUE(wait_until([&] { return clients()["commands"] == 3; })) << clients().dump();
  ASSERT_EQ(http->request("DELETE", "/proxies/redis/connections?reset=true").status, 204);
  ASSERT_EQ(http->request("DELETE", "/proxies/redis/toxics/hole").status, 204);
  EXPECT_EQ(app.read_to_end(5s), "");
  EXPECT_EQ(other.read_to_end(5s), "");

  Conn app2(fl.port()), other2(fl.port());
  EXPECT_EQ(call(app2, {"CLIENT", "SETNAME", "app"}), "+OK\r\n"); // setup: no resend
  EXPECT_EQ(call(app2, {"INCR", "ctr"}), ":1\r\n");               // the resend
  EXPECT_EQ(call(app2, {"INCR", "ctr"}), ":2\r\n");               // the next increment
  EXPECT_EQ(call(other2, {"SET", "k", "v2"}), "+OK\r\n");         // other arguments: new work

  json all = clients();
  EXPECT_EQ(all["resends"]["total"], 1) << all.dump(2);
  EXPECT_EQ(all["resends"]["by_command"], json({{"INCR", 1}})) << all.dump(2);
  EXPECT_EQ(all["clients"], json({"127.0.0.1", "app"})) << all.dump(2);
  EXPECT_EQ(all["connects"]["total"], 4);

  json a = clients("?client=app");
  EXPECT_EQ(a["client"], "app");
  EXPECT_EQ(a["connects"]["total"], 2) << a.dump(2);
  EXPECT_EQ(a["connects"]["failed"], 1) << a.dump(2);
  EXPECT_EQ(a["resends"]["total"], 1) << a.dump(2);
  EXPECT_EQ(a["handshake"]["commands"]["CLIENT SETNAME"], 2) << a.dump(2);
  json o = clients("?client=127.0.0.1");
  EXPECT_EQ(o["connects"]["total"], 2) << o.dump(2);
  EXPECT_EQ(o["resends"]["total"], 0) << o.dump(2);
  EXPECT_EQ(clients("?client=nobody")["connects"]["total"], 0);

  // A time range: what happened from now on is a client that names itself "late" and pings.
  double mid = all["now_ms"].get<double>();
  Conn late(fl.port());
  EXPECT_EQ(call(late, {"CLIENT", "SETNAME", "late"}), "+OK\r\n");
  EXPECT_EQ(call(late, {"PING"}), "+PONG\r\n");
  json after = clients("?since_ms=" + std::to_string(mid));
  EXPECT_EQ(after["connects"]["total"], 1) << after.dump(2);
  EXPECT_EQ(after["resends"]["total"], 0) << after.dump(2);
  EXPECT_TRUE(after["windows"].empty()) << after.dump(2);
  EXPECT_EQ(after["clients"], json({"127.0.0.1", "app", "late"}));
  json before = clients("?until_ms=" + std::to_string(mid));
  EXPECT_EQ(before["connects"]["total"], 4) << before.dump(2);
  EXPECT_EQ(before["resends"]["total"], 1) << before.dump(2);
  EXPECT_EQ(before["windows"].size(), 1u) << before.dump(2);
  json late_only = clients("?client=late&since_ms=0");
  EXPECT_EQ(late_only["connects"]["total"], 1) << late_only.dump(2);
  EXPECT_EQ(late_only["commands"], 2) << late_only.dump(2);

  // The CLI asks the same.
  int status = 0;
  std::string out =
      run_cmd(std::string(FAULTLINE_BIN) + " ctl --api 127.0.0.1:" + std::to_string(fl.api_port()) +
                  " clients redis --client app --json 2>&1",
              &status);
  EXPECT_EQ(status, 0) << out;
  json cli = json::parse(out, nullptr, false);
  ASSERT_FALSE(cli.is_discarded()) << out;
  EXPECT_EQ(cli["client"], "app");
  EXPECT_EQ(cli["resends"]["total"], 1);
}

// A client may name itself in HELLO, as RESP3 clients do. The name is the 4th argument (the 7th
// with AUTH): the parser records that many while the traffic log is on; with its default
// capture (3 arguments) such a client is known by its address.
TEST(Verdicts, HelloSetnameNamesTheClient) {
  Redis redis;
  Faultline fl;
  ASSERT_TRUE(redis.start());
  ASSERT_TRUE(fl.start(redis.port(), {"--log", temp_path("traffic", ".jsonl")}))
      << fl.process().log();
  HttpClient http("127.0.0.1", fl.api_port());
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"HELLO", "2", "SETNAME", "resp3app"}).rfind("*14\r\n", 0), 0u);
  EXPECT_EQ(call(c, {"SET", "k", "v"}), "+OK\r\n");
  auto r = http.request("GET", "/proxies/redis/clients?client=resp3app");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["connects"]["total"], 1) << j.dump(2);
  EXPECT_EQ(j["clients"], json({"127.0.0.1", "resp3app"})) << j.dump(2);
  c.close();
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
}

// A readiness check between a failure and the retry (ioredis sends INFO on every new
// connection; health checks PING) is not the client moving on: the write it sends again next is
// still counted, here as a retry after an error reply.
TEST_F(VerdictsFixture, AReadinessCheckBeforeTheRetryDoesNotHideIt) {
  auto add = http->request("POST", "/proxies/redis/toxics",
                           json{{"name", "ro"},
                                {"type", "resp_error"},
                                {"stream", "upstream"},
                                {"attributes", {{"preset", "readonly"},
                                                {"commands", {"SET"}}, {"first", 1}}}}
                               .dump());
  ASSERT_EQ(add.status, 200) << add.body;
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"SET", "k", "written"}).rfind("-READONLY", 0), 0u);
  c.close();
  Conn c2(fl.port());
  EXPECT_EQ(call(c2, {"INFO", "server"}).rfind("$", 0), 0u);
  EXPECT_EQ(call(c2, {"SET", "k", "written"}), "+OK\r\n");
  json v = clients();
  EXPECT_EQ(v["resends"]["after_errors"], 1) << v.dump(2);
  EXPECT_EQ(v["resends"]["total"], 0) << v.dump(2);
}

// Bad query values: 400 naming the parameter.
TEST_F(VerdictsFixture, BadQueryValuesAreRefusedNamingTheField) {
  for (auto [query, field] : std::initializer_list<std::pair<const char*, const char*>>{
           {"?since_ms=soon", "since_ms"},
           {"?until_ms=-5", "until_ms"},
           {"?since_ms=", "since_ms"},
           {"?client=", "client"},
           {"?since_ms=200&until_ms=100", "until_ms"}}) {
    auto r = http->request("GET", std::string("/proxies/redis/clients") + query);
    EXPECT_EQ(r.status, 400) << query << " " << r.body;
    EXPECT_NE(r.body.find(field), std::string::npos) << query << " " << r.body;
  }
  EXPECT_EQ(http->request("GET", "/proxies/redis/clients?since_ms=0&until_ms=1e9").status, 200);
}

} // namespace
