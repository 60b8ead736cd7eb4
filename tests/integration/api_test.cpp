// The control API against the real binary and a real redis-server: every endpoint, its error
// paths, and what each does to Redis traffic through the proxies.

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "control/http_client.h"
#include "support/harness.h"

using namespace fltest;
using faultline::control::HttpClient;
using faultline::control::HttpResult;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

json body_json(const HttpResult& r) {
  return json::parse(r.body, nullptr, false);
}

// The port of a "host:port" listen address.
uint16_t port_of(const std::string& listen) {
  return static_cast<uint16_t>(std::stoi(listen.substr(listen.rfind(':') + 1)));
}

bool pings(uint16_t port) {
  Conn c;
  if (!c.connect(port))
    return false;
  return call(c, {"PING"}) == "+PONG\r\n";
}

// Milliseconds for a PING round trip on c: the fastest of three. Load only adds time: one
// stalled round trip does not make a fast path look slow, and a latency toxic delays all three.
long ping_ms(Conn& c) {
  long best = -1;
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    std::string r = call(c, {"PING"});
    EXPECT_EQ(r, "+PONG\r\n");
    long ms = static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
    best = best < 0 ? ms : std::min(best, ms);
  }
  return best;
}

std::string cli(uint16_t port, const std::string& args, int* status = nullptr) {
  return run_cmd("redis-cli -p " + std::to_string(port) + " " + args + " 2>&1", status);
}

struct ApiFixture : ::testing::Test {
  Redis redis;
  Faultline fl;
  std::unique_ptr<HttpClient> http;

  void SetUp() override {
    ASSERT_TRUE(redis.start());
    ASSERT_TRUE(fl.start(redis.port(), extra_args())) << fl.process().log();
    ASSERT_TRUE(wait_port(fl.api_port())) << fl.process().log();
    http = std::make_unique<HttpClient>("127.0.0.1", fl.api_port(), token());
  }
  void TearDown() override {
    http.reset();
    if (fl.process().running()) {
      EXPECT_EQ(fl.stop(), 0) << fl.process().log();
    }
  }
  virtual std::vector<std::string> extra_args() { return {}; }
  virtual std::string token() { return {}; }

  HttpResult raw(std::string_view method, std::string_view path, std::string_view body) {
    HttpResult r = http->request(method, path, body);
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.error;
    return r;
  }
  HttpResult req(std::string_view method, std::string_view path) { return raw(method, path, {}); }
  HttpResult req(std::string_view method, std::string_view path, const json& body) {
    return raw(method, path, body.dump());
  }
  // Expects a Toxiproxy error reply: status and {"error": message, "status": status}.
  void expect_error(const HttpResult& r, int status, const std::string& message) {
    EXPECT_EQ(r.status, status) << r.body;
    json j = body_json(r);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j.value("status", 0), status) << r.body;
    EXPECT_EQ(j.value("error", ""), message) << r.body;
  }
  void expect_error_containing(const HttpResult& r, int status, const std::string& part) {
    EXPECT_EQ(r.status, status) << r.body;
    json j = body_json(r);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j.value("status", 0), status) << r.body;
    EXPECT_NE(j.value("error", "").find(part), std::string::npos) << r.body;
  }
  std::string upstream() const { return "127.0.0.1:" + std::to_string(redis.port()); }
  // Creates a proxy on a free port; returns its port.
  uint16_t create_proxy(const std::string& name, json extra = json::object()) {
    json body = {{"name", name}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}};
    body.update(extra);
    HttpResult r = req("POST", "/proxies", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return port_of(body_json(r).value("listen", ":0"));
  }
};

} // namespace

TEST_F(ApiFixture, VersionHasToxiproxyShape) {
  HttpResult r = req("GET", "/version");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.headers.get("Content-Type").find("application/json"), std::string::npos);
  EXPECT_EQ(body_json(r), json({{"version", FAULTLINE_VERSION}}));
}

TEST_F(ApiFixture, ListShowsTheCommandLineProxy) {
  HttpResult r = req("GET", "/proxies");
  ASSERT_EQ(r.status, 200);
  json j = body_json(r);
  ASSERT_TRUE(j.contains("redis")) << r.body;
  json p = j["redis"];
  EXPECT_EQ(p["name"], "redis");
  EXPECT_EQ(p["listen"], "127.0.0.1:" + std::to_string(fl.port()));
  EXPECT_EQ(p["upstream"], upstream());
  EXPECT_EQ(p["enabled"], true);
  EXPECT_EQ(p["accept"], "normal");
  EXPECT_EQ(p["toxics"], json::array());
  EXPECT_EQ(body_json(req("GET", "/proxies/redis")), p);
}

TEST_F(ApiFixture, CreateOnPortZeroServesRedisThenDelete) {
  HttpResult r = req("POST", "/proxies",
                     json{{"name", "extra"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}});
  ASSERT_EQ(r.status, 201) << r.body;
  json p = body_json(r);
  EXPECT_EQ(p["name"], "extra");
  EXPECT_EQ(p["enabled"], true);
  EXPECT_EQ(p["toxics"], json::array());
  uint16_t port = port_of(p["listen"]);
  ASSERT_NE(port, 0);
  EXPECT_TRUE(pings(port));
  EXPECT_EQ(cli(port, "SET k v"), "OK\n");
  EXPECT_EQ(cli(fl.port(), "GET k"), "v\n");
  EXPECT_EQ(body_json(req("GET", "/proxies/extra")), p);
  EXPECT_TRUE(body_json(req("GET", "/proxies")).contains("extra"));

  expect_error(req("POST", "/proxies", json{{"name", "extra"}, {"upstream", upstream()}}), 409,
               "proxy already exists");

  r = req("DELETE", "/proxies/extra");
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());
  int err = 0;
  EXPECT_FALSE(Conn().connect(port, "127.0.0.1", &err));
  EXPECT_EQ(err, ECONNREFUSED);
  expect_error(req("GET", "/proxies/extra"), 404, "proxy not found");
  expect_error(req("DELETE", "/proxies/extra"), 404, "proxy not found");
  expect_error(req("POST", "/proxies/extra", json{{"enabled", false}}), 404, "proxy not found");
}

TEST_F(ApiFixture, CreateDisabledDoesNotListenUntilEnabled) {
  const std::set<uint16_t> before = fl.listening_ports();
  EXPECT_EQ(before, (std::set<uint16_t>{fl.port(), fl.api_port()}));
  HttpResult r = req("POST", "/proxies",
                     json{{"name", "off"},
                          {"listen", "127.0.0.1:0"},
                          {"upstream", upstream()},
                          {"enabled", false}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(body_json(r)["enabled"], false);
  EXPECT_EQ(fl.listening_ports(), before);
  r = req("PATCH", "/proxies/off", json{{"enabled", true}});
  EXPECT_EQ(r.status, 200);
  uint16_t port = port_of(body_json(r)["listen"]);
  EXPECT_TRUE(fl.listening_ports().count(port)) << body_json(r)["listen"];
  EXPECT_TRUE(pings(port));
}

TEST_F(ApiFixture, CreateRejectsBadInput) {
  expect_error(req("POST", "/proxies", json{{"upstream", upstream()}}), 400,
               "missing required field: name");
  expect_error(req("POST", "/proxies", json{{"name", "x"}}), 400,
               "missing required field: upstream");
  expect_error_containing(
      req("POST", "/proxies",
          json{{"name", "x"}, {"listen", "nonsense"}, {"upstream", upstream()}}),
      400, "nonsense");
  expect_error_containing(
      req("POST", "/proxies", json{{"name", "x"}, {"upstream", "127.0.0.1:99999"}}), 400, "99999");
  expect_error_containing(
      req("POST", "/proxies", json{{"name", "x"}, {"upstream", upstream()}, {"enabled", "yes"}}),
      400, "bad request body: field 'enabled'");
  expect_error_containing(req("POST", "/proxies", json{{"name", 5}, {"upstream", upstream()}}), 400,
                          "field 'name'");
  expect_error_containing(
      req("POST", "/proxies", json{{"name", "x"}, {"upstream", upstream()}, {"accept", "later"}}),
      400, "accept");
  expect_error_containing(raw("POST", "/proxies", "{\"name\": \"x\", "), 400, "bad request body");
  expect_error_containing(raw("POST", "/proxies", "[1,2]"), 400, "bad request body");
  expect_error_containing(raw("POST", "/proxies", ""), 400, "bad request body");
  // The port is taken (by Redis): Toxiproxy answers 500 with the listen error.
  expect_error_containing(
      req("POST", "/proxies",
          json{{"name", "x"}, {"listen", upstream()}, {"upstream", upstream()}}),
      500, "address already in use");
  EXPECT_FALSE(body_json(req("GET", "/proxies")).contains("x"));
  EXPECT_TRUE(pings(fl.port()));
}

TEST_F(ApiFixture, DisableRefusesAndDropsThenEnableServesOnTheSamePort) {
  Conn live(fl.port());
  ASSERT_EQ(call(live, {"PING"}), "+PONG\r\n");

  HttpResult r = req("POST", "/proxies/redis", json{{"enabled", false}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_json(r)["enabled"], false);
  // The live connection is closed, new connects are refused, redis-cli fails.
  int end_errno = -1;
  live.read_to_end(5s, &end_errno);
  EXPECT_NE(end_errno, ETIMEDOUT);
  int err = 0;
  EXPECT_FALSE(Conn().connect(fl.port(), "127.0.0.1", &err));
  EXPECT_EQ(err, ECONNREFUSED);
  int status = 0;
  std::string out = cli(fl.port(), "PING", &status);
  EXPECT_NE(out.find("refused"), std::string::npos) << out;
  EXPECT_FALSE(body_json(req("GET", "/proxies/redis"))["enabled"]);

  r = req("PATCH", "/proxies/redis", json{{"enabled", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_json(r)["enabled"], true);
  EXPECT_EQ(body_json(r)["listen"], "127.0.0.1:" + std::to_string(fl.port()));
  EXPECT_EQ(cli(fl.port(), "PING"), "PONG\n");
}

TEST_F(ApiFixture, UpdateMovesListenAndUpstream) {
  Redis other;
  ASSERT_TRUE(other.start());
  uint16_t port = create_proxy("moving");
  ASSERT_EQ(cli(other.port(), "SET where other"), "OK\n");
  ASSERT_EQ(cli(redis.port(), "SET where first"), "OK\n");
  EXPECT_EQ(cli(port, "GET where"), "first\n");

  // Port 0 on another loopback address: a move ("127.0.0.1:0", what it was created with, is
  // no change).
  HttpResult r = req(
      "POST", "/proxies/moving",
      json{{"listen", "127.0.0.2:0"}, {"upstream", "127.0.0.1:" + std::to_string(other.port())}});
  ASSERT_EQ(r.status, 200) << r.body;
  uint16_t new_port = port_of(body_json(r)["listen"]);
  EXPECT_EQ(body_json(r)["listen"], "127.0.0.2:" + std::to_string(new_port));
  EXPECT_FALSE(Conn().connect(port));
  EXPECT_EQ(cli(new_port, "-h 127.0.0.2 GET where"), "other\n");
  // Sending back what GET shows changes nothing.
  json cur = body_json(req("GET", "/proxies/moving"));
  r = req("POST", "/proxies/moving", cur);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(body_json(r), cur);
  expect_error_containing(req("PATCH", "/proxies/moving", json{{"listen", "bad"}}), 400, "bad");
  expect_error_containing(req("PATCH", "/proxies/moving", json{{"enabled", 1}}), 400, "enabled");
  EXPECT_EQ(cli(new_port, "-h 127.0.0.2 GET where"), "other\n");
}

TEST_F(ApiFixture, LatencyToxicDelaysPingAndRemovingItRestoresSpeed) {
  Conn c(fl.port());
  ASSERT_LT(ping_ms(c), 100);
  HttpResult r = req("POST", "/proxies/redis/toxics",
                     json{{"type", "latency"}, {"attributes", {{"latency", 300}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_json(r), json({{"name", "latency_downstream"},
                                {"type", "latency"},
                                {"stream", "downstream"},
                                {"toxicity", 1.0},
                                {"attributes", {{"latency", 300}, {"jitter", 0}}}}));
  // Both the connection that was open and a new one are slowed.
  long slow = ping_ms(c);
  EXPECT_GE(slow, 290);
  EXPECT_LT(slow, 3000);
  Conn fresh(fl.port());
  slow = ping_ms(fresh);
  EXPECT_GE(slow, 290);
  EXPECT_LT(slow, 3000);
  json listed = body_json(req("GET", "/proxies/redis/toxics"));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["name"], "latency_downstream");
  EXPECT_EQ(body_json(req("GET", "/proxies/redis"))["toxics"], listed);
  EXPECT_EQ(body_json(req("GET", "/proxies/redis/toxics/latency_downstream")), listed[0]);

  r = req("DELETE", "/proxies/redis/toxics/latency_downstream");
  EXPECT_EQ(r.status, 204);
  EXPECT_LT(ping_ms(c), 150);
  EXPECT_LT(ping_ms(fresh), 150);
  EXPECT_EQ(body_json(req("GET", "/proxies/redis/toxics")), json::array());
}

TEST_F(ApiFixture, UpstreamLatencyToxicWithAName) {
  HttpResult r = req("POST", "/proxies/redis/toxics",
                     json{{"type", "latency"},
                          {"name", "slow_requests"},
                          {"stream", "UPSTREAM"},
                          {"toxicity", 1},
                          {"attributes", {{"latency", 200}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_json(r)["stream"], "upstream");
  EXPECT_EQ(body_json(r)["name"], "slow_requests");
  Conn c(fl.port());
  EXPECT_GE(ping_ms(c), 190);
}

TEST_F(ApiFixture, ToxicErrorsHaveToxiproxyShapeAndLeaveTheProxyAlone) {
  const json latency = {{"type", "latency"}, {"attributes", {{"latency", 10}}}};
  ASSERT_EQ(req("POST", "/proxies/redis/toxics", latency).status, 200);
  // Toxiproxy's status and text first (clients compare the prefix), then which toxic.
  expect_error(req("POST", "/proxies/redis/toxics", latency), 409,
               "toxic already exists: a toxic named 'latency_downstream' is on this proxy (name "
               "the new one, or remove that one first)");
  expect_error(req("POST", "/proxies/redis/toxics", json{{"type", "no_such"}}), 400,
               "invalid toxic type");
  expect_error(req("POST", "/proxies/redis/toxics", json::object()), 400, "invalid toxic type");
  expect_error(req("POST", "/proxies/redis/toxics",
                   json{{"type", "latency"}, {"name", "s"}, {"stream", "sideways"}}),
               400, "stream was invalid, can be either upstream or downstream");
  expect_error_containing(req("POST", "/proxies/redis/toxics",
                              json{{"type", "latency"}, {"name", "t"}, {"toxicity", 1.5}}),
                          400, "toxicity");
  expect_error_containing(req("POST", "/proxies/redis/toxics",
                              json{{"type", "latency"}, {"name", "t"}, {"toxicity", "all"}}),
                          400, "toxicity");
  expect_error_containing(
      req("POST", "/proxies/redis/toxics",
          json{{"type", "latency"}, {"name", "a"}, {"attributes", {{"latency", "slow"}}}}),
      400, "latency");
  expect_error_containing(
      req("POST", "/proxies/redis/toxics",
          json{{"type", "latency"}, {"name", "a"}, {"attributes", {{"latency", -5}}}}),
      400, "latency");
  expect_error_containing(
      req("POST", "/proxies/redis/toxics",
          json{{"type", "latency"}, {"name", "a"}, {"attributes", json::array()}}),
      400, "attributes");
  expect_error_containing(raw("POST", "/proxies/redis/toxics", "{\"type\": \"latency\""), 400,
                          "bad request body");
  expect_error_containing(raw("POST", "/proxies/redis/toxics", "\"latency\""), 400,
                          "bad request body");
  expect_error(req("GET", "/proxies/redis/toxics/nope"), 404, "toxic not found");
  expect_error(req("POST", "/proxies/redis/toxics/nope", json{{"toxicity", 1}}), 404,
               "toxic not found");
  expect_error(req("PATCH", "/proxies/redis/toxics/nope", json{{"toxicity", 1}}), 404,
               "toxic not found");
  expect_error(req("DELETE", "/proxies/redis/toxics/nope"), 404, "toxic not found");
  expect_error(req("GET", "/proxies/nope/toxics"), 404, "proxy not found");
  expect_error(req("POST", "/proxies/nope/toxics", latency), 404, "proxy not found");
  expect_error(req("DELETE", "/proxies/nope/toxics/latency_downstream"), 404, "proxy not found");
  // A failed update changes nothing.
  expect_error_containing(req("POST", "/proxies/redis/toxics/latency_downstream",
                              json{{"attributes", {{"latency", "x"}}}}),
                          400, "latency");
  json only = body_json(req("GET", "/proxies/redis/toxics"));
  ASSERT_EQ(only.size(), 1u);
  EXPECT_EQ(only[0]["attributes"]["latency"], 10);
  EXPECT_TRUE(pings(fl.port()));
}

TEST_F(ApiFixture, ToxicUpdateMergesLikeToxiproxyAndKeepsPosition) {
  ASSERT_EQ(req("POST", "/proxies/redis/toxics",
                json{{"type", "latency"},
                     {"name", "first"},
                     {"stream", "upstream"},
                     {"toxicity", 0.25},
                     {"attributes", {{"latency", 10}, {"jitter", 5}}}})
                .status,
            200);
  ASSERT_EQ(req("POST", "/proxies/redis/toxics",
                json{{"type", "latency"}, {"name", "second"}, {"attributes", {{"latency", 1}}}})
                .status,
            200);
  HttpResult r =
      req("POST", "/proxies/redis/toxics/first", json{{"attributes", {{"latency", 20}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json t = body_json(r);
  EXPECT_EQ(t["attributes"], json({{"latency", 20}, {"jitter", 5}}));
  EXPECT_EQ(t["toxicity"], 0.25);
  EXPECT_EQ(t["stream"], "upstream");

  r = req("PATCH", "/proxies/redis/toxics/first",
          json{{"toxicity", 1.0}, {"name", "renamed"}, {"stream", "downstream"}});
  ASSERT_EQ(r.status, 200) << r.body;
  t = body_json(r);
  EXPECT_EQ(t["attributes"], json({{"latency", 20}, {"jitter", 5}}));
  EXPECT_EQ(t["toxicity"], 1.0);
  EXPECT_EQ(t["name"], "first");
  EXPECT_EQ(t["stream"], "upstream");

  json list = body_json(req("GET", "/proxies/redis/toxics"));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "first");
  EXPECT_EQ(list[1]["name"], "second");
  EXPECT_EQ(list[0], t);
}

TEST_F(ApiFixture, ConnectionsAreListedAndDropped) {
  Conn a(fl.port()), b(fl.port());
  ASSERT_EQ(call(a, {"PING"}), "+PONG\r\n");
  ASSERT_EQ(call(b, {"SET", "k", "v"}), "+OK\r\n");
  HttpResult r = req("GET", "/proxies/redis/connections");
  ASSERT_EQ(r.status, 200);
  json list = body_json(r);
  ASSERT_TRUE(list.is_array()) << r.body;
  ASSERT_EQ(list.size(), 2u) << r.body;
  EXPECT_LT(list[0]["id"].get<uint64_t>(), list[1]["id"].get<uint64_t>());
  for (const auto& c : list) {
    EXPECT_EQ(c["client"].get<std::string>().rfind("127.0.0.1:", 0), 0u) << c;
    EXPECT_GE(c["age_ms"].get<uint64_t>(), 0u);
    EXPECT_GE(c["bytes_from_client"].get<uint64_t>(), 14u);
    EXPECT_GE(c["bytes_from_upstream"].get<uint64_t>(), 5u);
  }
  // `commands` counts the commands the connection sent (it used to be always 0): one each so
  // far, then a's count follows two more sent pipelined in one write.
  for (const auto& c : list)
    EXPECT_EQ(c["commands"], 1) << r.body;
  ASSERT_TRUE(a.send_all(cmd({"PING"}) + cmd({"GET", "k"})));
  ASSERT_EQ(a.read_reply(), "+PONG\r\n");
  ASSERT_EQ(a.read_reply(), "$1\r\nv\r\n");
  list = body_json(req("GET", "/proxies/redis/connections"));
  ASSERT_EQ(list.size(), 2u);
  const std::string a_addr = "127.0.0.1:" + std::to_string(a.local_port());
  for (const auto& c : list)
    EXPECT_EQ(c["commands"], c["client"] == a_addr ? 3 : 1) << list << " a=" << a_addr;
  expect_error(req("GET", "/proxies/nope/connections"), 404, "proxy not found");

  // FIN: both live connections end, a new one is accepted and served.
  r = req("DELETE", "/proxies/redis/connections");
  EXPECT_EQ(r.status, 204);
  int end_errno = -1;
  a.read_to_end(5s, &end_errno);
  EXPECT_EQ(end_errno, 0);
  b.read_to_end(5s, &end_errno);
  EXPECT_EQ(end_errno, 0);
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_TRUE(
      wait_until([&] { return body_json(req("GET", "/proxies/redis/connections")).size() == 1; }));

  // RST on request.
  r = req("DELETE", "/proxies/redis/connections?reset=true");
  EXPECT_EQ(r.status, 204);
  c.read_to_end(5s, &end_errno);
  EXPECT_EQ(end_errno, ECONNRESET);
  EXPECT_TRUE(pings(fl.port()));
  expect_error_containing(req("DELETE", "/proxies/redis/connections?reset=maybe"), 400, "reset");
}

TEST_F(ApiFixture, AcceptResetResetsEveryNewConnection) {
  HttpResult r = req("POST", "/proxies/redis", json{{"accept", "reset"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_json(r)["accept"], "reset");
  Conn c;
  ASSERT_TRUE(c.connect(fl.port()));
  // The RST may arrive before the PING is sent: then send() reports it and the read sees EOF.
  bool sent = c.send_all(cmd({"PING"}));
  int send_errno = c.last_errno();
  int end_errno = -1;
  std::string got = c.read_to_end(5s, &end_errno);
  EXPECT_EQ(got, "") << "a reset connection gets no reply";
  if (sent) EXPECT_EQ(end_errno, ECONNRESET);
  else EXPECT_TRUE(send_errno == ECONNRESET || send_errno == EPIPE) << send_errno;
  ASSERT_EQ(req("PATCH", "/proxies/redis", json{{"accept", "normal"}}).status, 200);
  EXPECT_TRUE(pings(fl.port()));
}

TEST_F(ApiFixture, AcceptHangAcceptsButNeverAnswers) {
  ASSERT_EQ(req("POST", "/proxies/redis", json{{"accept", "hang"}}).status, 200);
  EXPECT_EQ(body_json(req("GET", "/proxies/redis"))["accept"], "hang");
  Conn c;
  ASSERT_TRUE(c.connect(fl.port()));
  ASSERT_TRUE(c.send_all(cmd({"PING"})));
  EXPECT_FALSE(c.read_reply(500ms).has_value());
  EXPECT_EQ(c.last_errno(), 0); // no reply, but no close either
  // Created with accept=hang too.
  uint16_t port = create_proxy("hung", json{{"accept", "hang"}});
  Conn d;
  ASSERT_TRUE(d.connect(port));
  ASSERT_TRUE(d.send_all(cmd({"PING"})));
  EXPECT_FALSE(d.read_reply(500ms).has_value());
  // /reset makes every proxy accept normally again.
  EXPECT_EQ(req("POST", "/reset").status, 204);
  EXPECT_TRUE(pings(fl.port()));
  EXPECT_TRUE(pings(port));
}

// A hung connection holds nothing and outlives nothing: it is read and discarded (64 MB cost no
// memory), it ends when its client closes, and leaving accept=hang closes the ones still open.
TEST_F(ApiFixture, AcceptHangReadsDiscardsAndEndsWithItsClient) {
  auto sessions = [&] {
    json j = body_json(req("GET", "/proxies/redis/connections"));
    return j.is_array() ? j.size() : size_t(999);
  };
  ASSERT_EQ(req("POST", "/proxies/redis", json{{"accept", "hang"}}).status, 200);
  const long rss0 = fl.rss_kb();
  {
    Conn c;
    ASSERT_TRUE(c.connect(fl.port()));
    ASSERT_TRUE(c.send_all(cmd({"SET", "hung", std::string(64 << 20, 'h')})));
    EXPECT_FALSE(c.read_reply(300ms).has_value());
    EXPECT_EQ(c.last_errno(), 0) << "no reply, but no close either";
    EXPECT_LT(fl.rss_kb() - rss0, 16 * 1024) << "64 MB sent into a hung connection";
    EXPECT_EQ(sessions(), 1u);
  }
  EXPECT_TRUE(wait_until([&] { return sessions() == 0; }, 2s)) << "the client closed";
  Conn d;
  ASSERT_TRUE(d.connect(fl.port()));
  ASSERT_TRUE(wait_until([&] { return sessions() == 1; }, 2s));
  ASSERT_EQ(req("PATCH", "/proxies/redis", json{{"accept", "normal"}}).status, 200);
  int end_errno = -1;
  EXPECT_EQ(d.read_to_end(2s, &end_errno), "");
  EXPECT_EQ(end_errno, 0) << "leaving accept=hang closes hung connections (FIN)";
  EXPECT_TRUE(wait_until([&] { return sessions() == 0; }, 2s));
  EXPECT_TRUE(pings(fl.port()));
}

TEST_F(ApiFixture, PopulateCreatesReplacesAndReportsPartialFailure) {
  json body = json::array(
      {{{"name", "p1"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}},
       {{"name", "p2"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}, {"enabled", false}}});
  HttpResult r = req("POST", "/populate", body);
  ASSERT_EQ(r.status, 201) << r.body;
  json out = body_json(r);
  ASSERT_TRUE(out["proxies"].is_array()) << r.body;
  ASSERT_EQ(out["proxies"].size(), 2u);
  EXPECT_EQ(out["proxies"][0]["name"], "p1");
  EXPECT_EQ(out["proxies"][1]["enabled"], false);
  std::string p1_listen = out["proxies"][0]["listen"];
  EXPECT_TRUE(pings(port_of(p1_listen)));

  // The same addresses again: the proxy is kept as it is (toxics included).
  ASSERT_EQ(req("POST", "/proxies/p1/toxics", json{{"type", "latency"}}).status, 200);
  r = req("POST", "/populate",
          json::array({{{"name", "p1"}, {"listen", p1_listen}, {"upstream", upstream()}}}));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(body_json(r)["proxies"][0]["toxics"].size(), 1u);
  // A different listen address replaces it.
  r = req("POST", "/populate",
          json::array({{{"name", "p1"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}}}));
  ASSERT_EQ(r.status, 201) << r.body;
  json p1 = body_json(r)["proxies"][0];
  EXPECT_EQ(p1["toxics"], json::array());
  EXPECT_NE(p1["listen"], p1_listen);
  EXPECT_TRUE(pings(port_of(p1["listen"])));

  // Invalid input anywhere: nothing happens.
  r = req("POST", "/populate",
          json::array({{{"name", "p3"}, {"upstream", upstream()}}, {{"name", "p4"}}}));
  EXPECT_EQ(r.status, 400);
  out = body_json(r);
  EXPECT_EQ(out["error"], "missing required field: upstream at proxy 2");
  EXPECT_EQ(out["status"], 400);
  EXPECT_EQ(out["proxies"], json::array());
  EXPECT_FALSE(body_json(req("GET", "/proxies")).contains("p3"));
  expect_error_containing(req("POST", "/populate", json{{"name", "p5"}}), 400, "bad request body");

  // A failure in the middle: the error, and the proxies done before it.
  r = req("POST", "/populate",
          json::array({{{"name", "p6"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}},
                       {{"name", "p7"}, {"listen", upstream()}, {"upstream", upstream()}},
                       {{"name", "p8"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}}}));
  EXPECT_EQ(r.status, 500) << r.body;
  out = body_json(r);
  EXPECT_EQ(out["status"], 500);
  EXPECT_NE(out["error"].get<std::string>().find("address already in use"), std::string::npos)
      << r.body;
  ASSERT_EQ(out["proxies"].size(), 1u) << r.body;
  EXPECT_EQ(out["proxies"][0]["name"], "p6");
  json all = body_json(req("GET", "/proxies"));
  EXPECT_TRUE(all.contains("p6"));
  EXPECT_FALSE(all.contains("p7"));
  EXPECT_FALSE(all.contains("p8"));
}

TEST_F(ApiFixture, ResetEnablesEveryProxyAndRemovesEveryToxic) {
  uint16_t port = create_proxy("second");
  ASSERT_EQ(req("POST", "/proxies/redis/toxics",
                json{{"type", "latency"}, {"attributes", {{"latency", 500}}}})
                .status,
            200);
  ASSERT_EQ(req("POST", "/proxies/second/toxics", json{{"type", "latency"}, {"stream", "upstream"}})
                .status,
            200);
  ASSERT_EQ(req("POST", "/proxies/second", json{{"enabled", false}}).status, 200);
  EXPECT_FALSE(Conn().connect(port));

  HttpResult r = req("POST", "/reset");
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());
  json all = body_json(req("GET", "/proxies"));
  for (const auto& [name, p] : all.items()) {
    EXPECT_EQ(p["enabled"], true) << name;
    EXPECT_EQ(p["toxics"], json::array()) << name;
  }
  Conn c(fl.port());
  EXPECT_LT(ping_ms(c), 150);
  EXPECT_TRUE(pings(port));
}

TEST_F(ApiFixture, MetricsArePrometheusText) {
  // What connected before (nothing, as the harness starts faultline) is counted from here.
  std::string before = req("GET", "/metrics").body;
  const std::string total = "faultline_connections_total{proxy=\"redis\"} ";
  ASSERT_NE(before.find(total), std::string::npos) << before;
  int accepted = std::stoi(before.substr(before.find(total) + total.size()));
  Conn c(fl.port());
  ASSERT_EQ(call(c, {"PING"}), "+PONG\r\n");
  ASSERT_EQ(req("POST", "/proxies/redis/toxics", json{{"type", "latency"}}).status, 200);
  create_proxy("we\"ird\\name");
  HttpResult r = req("GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.get("Content-Type").rfind("text/plain", 0), 0u);
  const std::string& m = r.body;
  for (const char* family :
       {"faultline_connections_current", "faultline_connections_total", "faultline_bytes_total",
        "faultline_toxics_active", "faultline_connect_failures_total"}) {
    EXPECT_NE(m.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
    EXPECT_NE(m.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
  }
  EXPECT_NE(m.find("faultline_connections_current{proxy=\"redis\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find(total + std::to_string(accepted + 1) + "\n"), std::string::npos) << m;
  EXPECT_NE(m.find("faultline_bytes_total{proxy=\"redis\",direction=\"upstream\"} 14\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("faultline_bytes_total{proxy=\"redis\",direction=\"downstream\"} 7\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("faultline_toxics_active{proxy=\"redis\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("faultline_connect_failures_total{proxy=\"redis\"} 0\n"), std::string::npos);
  EXPECT_NE(m.find("{proxy=\"we\\\"ird\\\\name\"}"), std::string::npos) << m;

  // Closed connections still count; a refused upstream is a connect failure.
  c.close();
  redis.stop();
  Conn d(fl.port());
  d.read_to_end(5s);
  EXPECT_TRUE(wait_until([&] {
    std::string now = req("GET", "/metrics").body;
    return now.find("faultline_connect_failures_total{proxy=\"redis\"} 1\n") != std::string::npos &&
           now.find("faultline_connections_current{proxy=\"redis\"} 0\n") != std::string::npos &&
           now.find("faultline_bytes_total{proxy=\"redis\",direction=\"upstream\"} 14\n") !=
               std::string::npos;
  }));
}

TEST_F(ApiFixture, BadRequestsNeverHurtTheProxy) {
  Conn live(fl.port());
  ASSERT_EQ(call(live, {"PING"}), "+PONG\r\n");
  expect_error_containing(req("GET", "/no/such/thing"), 404, "/no/such/thing");
  HttpResult r = req("PUT", "/proxies");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(body_json(r).value("status", 0), 405);
  expect_error_containing(raw("POST", "/proxies", std::string(100000, '[')), 400,
                          "bad request body");
  expect_error_containing(
      raw("POST", "/proxies/redis/toxics", "{\"type\": \"latency\", \"x\": \xff}"), 400,
      "bad request body");

  // Over 1 MiB: 413 with the JSON error shape.
  std::string big = "{\"name\": \"" + std::string((1 << 20) + 16, 'a') + "\"}";
  HttpClient other("127.0.0.1", fl.api_port());
  HttpResult huge = other.request("POST", "/proxies", big);
  ASSERT_TRUE(huge.ok()) << huge.error;
  EXPECT_EQ(huge.status, 413);
  EXPECT_EQ(body_json(huge).value("status", 0), 413);

  EXPECT_EQ(call(live, {"PING"}), "+PONG\r\n");
  EXPECT_TRUE(pings(fl.port()));
  EXPECT_EQ(req("GET", "/version").status, 200);
}

TEST_F(ApiFixture, SlowlorisIsClosedWhileRedisTrafficFlows) {
  Conn slow(fl.api_port());
  ASSERT_TRUE(slow.send_all("GET /prox"));
  // Meanwhile the proxy and the API serve everyone else.
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(req("GET", "/proxies/redis").status, 200);
  // The server's request timeout (10 s) closes the half request.
  auto t0 = Clock::now();
  int end_errno = -1;
  slow.read_to_end(20s, &end_errno);
  EXPECT_NE(end_errno, ETIMEDOUT);
  EXPECT_LT(Clock::now() - t0, 15s);
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
}

TEST_F(ApiFixture, CurlDrivesTheApi) {
  std::string base = "curl -s -m 5 http://127.0.0.1:" + std::to_string(fl.api_port());
  int status = -1;
  std::string out = run_cmd(base + "/version", &status);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(json::parse(out, nullptr, false), json({{"version", FAULTLINE_VERSION}}));
  out = run_cmd("curl -s -m 5 -w ' %{http_code}' -X POST -H 'Content-Type: application/json' -d "
                "'{\"name\":\"viacurl\",\"listen\":\"127.0.0.1:0\",\"upstream\":\"" +
                upstream() + "\"}' http://127.0.0.1:" + std::to_string(fl.api_port()) + "/proxies");
  ASSERT_GE(out.size(), 4u);
  EXPECT_EQ(out.substr(out.size() - 3), "201") << out;
  json p = json::parse(out.substr(0, out.size() - 4), nullptr, false);
  ASSERT_TRUE(p.is_object()) << out;
  EXPECT_TRUE(pings(port_of(p["listen"])));
  out = run_cmd("curl -s -m 5 -X POST -d '{\"type\":\"latency\",\"attributes\":{\"latency\":200}}' "
                "http://127.0.0.1:" +
                std::to_string(fl.api_port()) + "/proxies/viacurl/toxics");
  EXPECT_EQ(json::parse(out, nullptr, false)["name"], "latency_downstream") << out;
  Conn c(port_of(p["listen"]));
  EXPECT_GE(ping_ms(c), 190);
  out = run_cmd("curl -s -m 5 -o /dev/null -w '%{http_code}' -X DELETE http://127.0.0.1:" +
                std::to_string(fl.api_port()) + "/proxies/viacurl");
  EXPECT_EQ(out, "204");
}

TEST_F(ApiFixture, CtlAgainstTheRealBinary) {
  std::string api = "127.0.0.1:" + std::to_string(fl.api_port());
  int status = -1;
  std::string out =
      run_cmd(std::string(FAULTLINE_BIN) + " ctl --api " + api + " list 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("redis"), std::string::npos) << out;
  out = run_cmd(std::string(FAULTLINE_BIN) + " ctl --api " + api +
                    " toxic add redis --type latency --attribute latency=50 2>&1",
                &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(body_json(req("GET", "/proxies/redis/toxics")).size(), 1u);
  out = run_cmd(std::string(FAULTLINE_BIN) + " ctl --api " + api + " inspect nope 2>&1", &status);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("proxy not found"), std::string::npos) << out;
}

TEST_F(ApiFixture, StopsPromptlyWithAnOpenApiConnection) {
  ASSERT_EQ(req("GET", "/proxies").status, 200); // keeps the keep-alive connection open
  Conn slow(fl.api_port());
  ASSERT_TRUE(slow.send_all("GET /proxies HTTP/1.1\r\nHost: x\r\n"));
  Conn c(fl.port());
  ASSERT_EQ(call(c, {"PING"}), "+PONG\r\n");
  auto t0 = Clock::now();
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
  EXPECT_LT(Clock::now() - t0, 1500ms);
}

// ---- options ----

namespace {
struct TokenFixture : ApiFixture {
  std::vector<std::string> extra_args() override { return {"--api-token", "s3cret"}; }
  std::string token() override { return "s3cret"; }
};
} // namespace

TEST_F(TokenFixture, BearerTokenIsRequired) {
  EXPECT_EQ(req("GET", "/proxies").status, 200);
  HttpClient anon("127.0.0.1", fl.api_port());
  HttpResult r = anon.request("GET", "/proxies");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(body_json(r).value("status", 0), 401);
  HttpClient wrong("127.0.0.1", fl.api_port(), "guess");
  EXPECT_EQ(wrong.request("POST", "/reset").status, 401);
  EXPECT_TRUE(pings(fl.port()));
  std::string api = "127.0.0.1:" + std::to_string(fl.api_port());
  int status = -1;
  std::string out = run_cmd(
      std::string(FAULTLINE_BIN) + " ctl --api " + api + " --token s3cret list 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  out = run_cmd("FAULTLINE_API_TOKEN= " + std::string(FAULTLINE_BIN) + " ctl --api " + api +
                    " list 2>&1",
                &status);
  EXPECT_EQ(status, 1) << out;
}

TEST(ApiOptions, TokenFromTheEnvironment) {
  Redis redis;
  ASSERT_TRUE(redis.start());
  ::setenv("FAULTLINE_API_TOKEN", "from-env", 1);
  Faultline fl;
  bool started = fl.start(redis.port());
  ::unsetenv("FAULTLINE_API_TOKEN");
  ASSERT_TRUE(started) << fl.process().log();
  ASSERT_TRUE(wait_port(fl.api_port()));
  EXPECT_EQ(HttpClient("127.0.0.1", fl.api_port()).request("GET", "/proxies").status, 401);
  EXPECT_EQ(HttpClient("127.0.0.1", fl.api_port(), "from-env").request("GET", "/proxies").status,
            200);
  EXPECT_EQ(fl.stop(), 0);
}

TEST(ApiOptions, ApiOffListensNowhere) {
  Redis redis;
  ASSERT_TRUE(redis.start());
  Faultline fl;
  ASSERT_TRUE(fl.start(redis.port(), {"--api", "off"})) << fl.process().log();
  EXPECT_TRUE(pings(fl.port()));
  EXPECT_FALSE(Conn().connect(fl.api_port()));
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
}

TEST(ApiOptions, NonLoopbackApiLogsAWarning) {
  Redis redis;
  ASSERT_TRUE(redis.start());
  Faultline fl;
  ASSERT_TRUE(fl.start(redis.port(), {"--api", "0.0.0.0:0"})) << fl.process().log();
  uint16_t api_port = fl.api_port();
  EXPECT_TRUE(wait_until([&] {
    return fl.process().log().find("reachable from the network") != std::string::npos;
  })) << fl.process().log();
  EXPECT_EQ(HttpClient("127.0.0.1", api_port).request("GET", "/version").status, 200);
  EXPECT_EQ(fl.stop(), 0);
}

TEST(ApiOptions, LoopbackApiDoesNotWarn) {
  Redis redis;
  ASSERT_TRUE(redis.start());
  Faultline fl;
  ASSERT_TRUE(fl.start(redis.port()));
  ASSERT_TRUE(wait_port(fl.api_port()));
  EXPECT_EQ(fl.stop(), 0);
  EXPECT_EQ(fl.process().log().find("reachable from the network"), std::string::npos);
}

TEST(ApiOptions, ApiPortInUseExitsWithOne) {
  Redis redis;
  ASSERT_TRUE(redis.start());
  Faultline fl;
  ASSERT_TRUE(fl.start_args({"--listen", "127.0.0.1:0", "--upstream",
                             "127.0.0.1:" + std::to_string(redis.port()), "--api",
                             "127.0.0.1:" + std::to_string(redis.port())},
                            Faultline::Wait::Nothing));
  auto code = fl.process().wait(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_NE(fl.process().log().find("--api"), std::string::npos) << fl.process().log();
}

// ---- issue 19: refusing mistakes, complete and safe control ----

namespace {

std::string make_temp_dir() {
  std::string tmpl = ::testing::TempDir() + "faultline-logdir-XXXXXX";
  char* d = ::mkdtemp(tmpl.data());
  EXPECT_NE(d, nullptr) << std::strerror(errno);
  return tmpl;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string ctl_cmd(const Faultline& fl, const std::string& args) {
  return std::string(FAULTLINE_BIN) + " ctl --api 127.0.0.1:" + std::to_string(fl.api_port()) +
         " " + args + " 2>&1";
}

} // namespace

// A RESP toxic counts the commands its filter selected; one that selected nothing in its life
// is named in a warning when it goes (a typo in `commands` or `keys` shows).
TEST_F(ApiFixture, RespToxicCountsMatchesAndWarnsWhenRemovedHavingMatchedNothing) {
  ASSERT_EQ(req("POST", "/proxies/redis/toxics",
                json{{"type", "resp_error"},
                     {"name", "typo"},
                     {"attributes", {{"preset", "loading"}, {"commands", {"GETT"}}}}})
                .status,
            200);
  ASSERT_EQ(req("POST", "/proxies/redis/toxics",
                json{{"type", "resp_error"},
                     {"name", "hits"},
                     {"attributes", {{"preset", "loading"}, {"commands", {"GET"}}}}})
                .status,
            200);
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"GET", "k"}).rfind("-LOADING", 0), 0u);
  EXPECT_EQ(call(c, {"GET", "k"}).rfind("-LOADING", 0), 0u);
  json typo = body_json(req("GET", "/proxies/redis/toxics/typo"));
  json hits = body_json(req("GET", "/proxies/redis/toxics/hits"));
  EXPECT_EQ(typo["attributes"]["matched"], 0) << typo.dump();
  EXPECT_EQ(hits["attributes"]["matched"], 2) << hits.dump();
  EXPECT_EQ(hits["attributes"]["injected"], 2) << hits.dump();

  // ctl shows the counters in their own columns.
  int status = -1;
  std::string out = run_cmd(ctl_cmd(fl, "toxic list redis"), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("MATCHED"), std::string::npos) << out;
  EXPECT_NE(out.find("INJECTED"), std::string::npos) << out;
  auto row = [&](const std::string& name) {
    size_t at = out.find("\n" + name + " ");
    return at == std::string::npos ? std::string() : out.substr(at + 1, out.find('\n', at + 1) - at);
  };
  EXPECT_NE(row("hits").find(" 2 "), std::string::npos) << out;
  EXPECT_EQ(row("hits").find("matched="), std::string::npos) << "not among the settings: " << out;

  ASSERT_EQ(req("DELETE", "/proxies/redis/toxics/hits").status, 204);
  ASSERT_EQ(req("DELETE", "/proxies/redis/toxics/typo").status, 204);
  EXPECT_TRUE(wait_until([&] {
    return fl.process().log().find("toxic typo (resp_error) removed having matched no command "
                                   "(commands=[\"GETT\"])") != std::string::npos;
  })) << fl.process().log();
  EXPECT_EQ(fl.process().log().find("toxic hits (resp_error) removed having matched"),
            std::string::npos)
      << fl.process().log();
  // Connection-level toxics have no filter: no warning.
  ASSERT_EQ(req("POST", "/proxies/redis/toxics", json{{"type", "latency"}}).status, 200);
  ASSERT_EQ(req("DELETE", "/proxies/redis/toxics/latency_downstream").status, 204);
  EXPECT_EQ(fl.process().log().find("latency_downstream (latency) removed having"),
            std::string::npos);
}

// Unnamed toxics: Toxiproxy's `<type>_<stream>` for its types; RESP toxics say what they do.
TEST_F(ApiFixture, DefaultToxicNamesSayWhatTheToxicIs) {
  HttpResult r = req("POST", "/proxies/redis/toxics",
                     json{{"type", "latency"}, {"stream", "upstream"}});
  EXPECT_EQ(body_json(r).value("name", ""), "latency_upstream") << r.body;
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "resp_error"},
               {"attributes", {{"preset", "loading"}, {"commands", {"GET", "SET"}}}}});
  EXPECT_EQ(body_json(r).value("name", ""), "resp_error_loading_GET+SET") << r.body;
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "resp_reply"}, {"attributes", {{"reply", "nil"}, {"commands", {"GET"}}}}});
  EXPECT_EQ(body_json(r).value("name", ""), "resp_reply_nil_GET") << r.body;
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "resp_delay"}, {"attributes", {{"phase", "reply"}, {"delay", 1}}}});
  EXPECT_EQ(body_json(r).value("name", ""), "resp_delay_reply") << r.body;
  // The name is free to use in a URL as it is.
  EXPECT_EQ(req("GET", "/proxies/redis/toxics/resp_error_loading_GET+SET").status, 200);
  // The same toxic again: Toxiproxy's 409 and prefix, and the name.
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "resp_error"},
               {"attributes", {{"preset", "loading"}, {"commands", {"GET", "SET"}}}}});
  expect_error_containing(r, 409, "toxic already exists: a toxic named "
                                  "'resp_error_loading_GET+SET'");
  EXPECT_EQ(body_json(r).value("error", "").rfind("toxic already exists", 0), 0u) << r.body;
  // ctl leaves the name to the API: the same default.
  int status = -1;
  std::string out = run_cmd(
      ctl_cmd(fl, "toxic add redis --type resp_error -a preset=oom -a commands=SET"), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("added toxic resp_error_oom_SET"), std::string::npos) << out;
  out = run_cmd(ctl_cmd(fl, "toxic add redis --type resp_error -a preset=oom -a commands=SET"),
                &status);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("toxic already exists: a toxic named 'resp_error_oom_SET'"),
            std::string::npos)
      << out;
}

// The API writes files only under --log-dir, and without it writes none.
TEST_F(ApiFixture, PostLogWithoutLogDirIs403) {
  std::string dir = make_temp_dir();
  HttpResult r = req("POST", "/log", json{{"path", dir + "/traffic.jsonl"}});
  expect_error_containing(r, 403, "--log-dir");
  EXPECT_NE(body_json(r).value("error", "").find("'path'"), std::string::npos) << r.body;
  EXPECT_FALSE(std::ifstream(dir + "/traffic.jsonl").good()) << "no file was created";
  // Switching it off, or to faultline's stdout, names no file.
  EXPECT_EQ(req("POST", "/log", json{{"enabled", false}}).status, 200);
  r = req("POST", "/log", json{{"path", "-"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(req("POST", "/log", json{{"enabled", false}}).status, 200);
}

namespace {
struct LogDirFixture : ApiFixture {
  std::string dir = make_temp_dir();
  std::string outside = make_temp_dir();
  std::vector<std::string> extra_args() override { return {"--log-dir", dir}; }
};
} // namespace

TEST_F(LogDirFixture, WritesOnlyInsideTheDirectory) {
  // A name relative to the directory; GET /log shows where it went.
  HttpResult r = req("POST", "/log", json{{"path", "traffic.jsonl"}});
  ASSERT_EQ(r.status, 200) << r.body;
  char real[PATH_MAX];
  ASSERT_NE(::realpath(dir.c_str(), real), nullptr);
  EXPECT_EQ(body_json(r).value("path", ""), std::string(real) + "/traffic.jsonl") << r.body;
  Conn c(fl.port());
  ASSERT_EQ(call(c, {"SET", "a", "1"}), "+OK\r\n");
  EXPECT_TRUE(wait_until([&] {
    return slurp(dir + "/traffic.jsonl").find("\"cmd\":\"SET\"") != std::string::npos;
  }));
  // An absolute path inside it is fine too.
  EXPECT_EQ(req("POST", "/log", json{{"path", std::string(real) + "/abs.jsonl"}}).status, 200);

  // Out of it: .., absolute elsewhere, a directory, nothing.
  expect_error_containing(req("POST", "/log", json{{"path", "../escape.jsonl"}}), 403, "..");
  expect_error_containing(req("POST", "/log", json{{"path", "sub/../../escape.jsonl"}}), 403,
                          "..");
  expect_error_containing(req("POST", "/log", json{{"path", outside + "/x.jsonl"}}), 403,
                          "not inside the log directory");
  expect_error_containing(req("POST", "/log", json{{"path", "sub/"}}), 403, "does not name a file");
  EXPECT_FALSE(std::ifstream(outside + "/x.jsonl").good());
  EXPECT_TRUE(pings(fl.port()));
}

TEST_F(LogDirFixture, FollowsNoSymbolicLinkOutOfIt) {
  const std::string target = outside + "/victim";
  { std::ofstream(target) << "precious\n"; }
  ASSERT_EQ(::symlink(target.c_str(), (dir + "/link.jsonl").c_str()), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (dir + "/linkdir").c_str()), 0);
  ASSERT_EQ(::symlink((outside + "/new").c_str(), (dir + "/dangling.jsonl").c_str()), 0);
  expect_error_containing(req("POST", "/log", json{{"path", "link.jsonl"}}), 403,
                          "symbolic link");
  expect_error_containing(req("POST", "/log", json{{"path", "linkdir/x.jsonl"}}), 403,
                          "symbolic link");
  expect_error_containing(req("POST", "/log", json{{"path", "dangling.jsonl"}}), 403,
                          "symbolic link");
  EXPECT_EQ(slurp(target), "precious\n");
  EXPECT_FALSE(std::ifstream(outside + "/x.jsonl").good());
  EXPECT_FALSE(std::ifstream(outside + "/new").good());
  // A real subdirectory is fine.
  ASSERT_EQ(::mkdir((dir + "/sub").c_str(), 0755), 0);
  EXPECT_EQ(req("POST", "/log", json{{"path", "sub/t.jsonl"}}).status, 200);
  // A FIFO is not a log file.
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0644), 0);
  expect_error_containing(req("POST", "/log", json{{"path", "fifo"}}), 403, "not a regular file");
}

TEST_F(LogDirFixture, NeverAppendsToAFileThatIsNotAFaultlineLog) {
  { std::ofstream(dir + "/notes.txt") << "my notes\nline two\n"; }
  HttpResult r = req("POST", "/log", json{{"path", "notes.txt"}});
  expect_error_containing(r, 403, "not a faultline traffic log");
  EXPECT_EQ(slurp(dir + "/notes.txt"), "my notes\nline two\n");
  { std::ofstream(dir + "/data.json") << "{\"a\": 1}\n"; }
  expect_error_containing(req("POST", "/log", json{{"path", "data.json"}}), 403,
                          "not a faultline traffic log");
  EXPECT_EQ(slurp(dir + "/data.json"), "{\"a\": 1}\n");

  // A faultline log of the same format is appended to; of the other format, refused.
  ASSERT_EQ(req("POST", "/log", json{{"path", "t.jsonl"}}).status, 200);
  Conn c(fl.port());
  ASSERT_EQ(call(c, {"SET", "a", "1"}), "+OK\r\n");
  EXPECT_TRUE(wait_until(
      [&] { return slurp(dir + "/t.jsonl").find("\"cmd\":\"SET\"") != std::string::npos; }));
  ASSERT_EQ(req("POST", "/log", json{{"enabled", false}}).status, 200);
  size_t before = slurp(dir + "/t.jsonl").size();
  expect_error_containing(req("POST", "/log", json{{"path", "t.jsonl"}, {"format", "text"}}), 403,
                          "faultline JSON log");
  ASSERT_EQ(req("POST", "/log", json{{"path", "t.jsonl"}, {"format", "json"}}).status, 200);
  ASSERT_EQ(call(c, {"GET", "a"}), "$1\r\n1\r\n");
  EXPECT_TRUE(wait_until(
      [&] { return slurp(dir + "/t.jsonl").find("\"cmd\":\"GET\"") != std::string::npos; }));
  EXPECT_GT(slurp(dir + "/t.jsonl").size(), before);
  // A text log likewise.
  ASSERT_EQ(req("POST", "/log", json{{"path", "t.log"}, {"format", "text"}}).status, 200);
  ASSERT_EQ(call(c, {"SET", "b", "2"}), "+OK\r\n");
  EXPECT_TRUE(wait_until([&] { return slurp(dir + "/t.log").find("SET") != std::string::npos; }));
  ASSERT_EQ(req("POST", "/log", json{{"enabled", false}}).status, 200);
  EXPECT_EQ(req("POST", "/log", json{{"path", "t.log"}, {"format", "text"}}).status, 200);
  ASSERT_EQ(req("POST", "/log", json{{"enabled", false}}).status, 200);
  expect_error_containing(req("POST", "/log", json{{"path", "t.log"}, {"format", "json"}}), 403,
                          "faultline text log");
}

// `faultline ctl` covers the rest of the API: accept modes, client verdicts, the traffic log,
// stats, metrics, populate, and tail in the text of `--log -`.
TEST_F(LogDirFixture, CtlCoversTheApi) {
  int status = -1;
  std::string out = run_cmd(ctl_cmd(fl, "accept redis reset"), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(body_json(req("GET", "/proxies/redis")).value("accept", ""), "reset");
  out = run_cmd(ctl_cmd(fl, "accept redis sideways"), &status);
  EXPECT_EQ(status, 2) << out;
  out = run_cmd(ctl_cmd(fl, "accept redis normal"), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(pings(fl.port()));

  out = run_cmd(ctl_cmd(fl, "log on ctl.jsonl"), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("traffic log: on, json to "), std::string::npos) << out;
  out = run_cmd(ctl_cmd(fl, "log"), &status);
  EXPECT_NE(out.find("ctl.jsonl"), std::string::npos) << out;
  out = run_cmd(ctl_cmd(fl, "log on ../x.jsonl"), &status);
  EXPECT_EQ(status, 1) << out;
  out = run_cmd(ctl_cmd(fl, "log off"), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("traffic log: off"), std::string::npos) << out;

  out = run_cmd(ctl_cmd(fl, "clients redis"), &status);
  EXPECT_EQ(status, 0) << out;
  out = run_cmd(ctl_cmd(fl, "clients redis --clear"), &status);
  EXPECT_EQ(status, 0) << out;
  out = run_cmd(ctl_cmd(fl, "stats redis"), &status);
  EXPECT_EQ(status, 0) << out;
  out = run_cmd(ctl_cmd(fl, "metrics"), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("faultline_connections_total"), std::string::npos) << out;

  std::string file = dir + "/populate.json";
  {
    std::ofstream(file) << json::array({{{"name", "pop"},
                                         {"listen", "127.0.0.1:0"},
                                         {"upstream", upstream()}}})
                               .dump();
  }
  out = run_cmd(ctl_cmd(fl, "populate " + file), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("proxy pop: 127.0.0.1:"), std::string::npos) << out;

  // tail: the text lines of `--log -` (no colours), or JSON with --json.
  for (bool as_json : {false, true}) {
    std::string log_file = dir + (as_json ? "/tail.json" : "/tail.txt");
    Process tail;
    std::vector<std::string> argv = {FAULTLINE_BIN, "ctl", "--api",
                                     "127.0.0.1:" + std::to_string(fl.api_port())};
    if (as_json) argv.push_back("--json");
    argv.insert(argv.end(), {"tail", "redis"});
    ASSERT_TRUE(tail.start(argv, log_file));
    ASSERT_TRUE(wait_until([&] {
      return body_json(req("GET", "/log")).value("subscribers", 0) == 1;
    }));
    Conn c(fl.port());
    ASSERT_EQ(call(c, {"SET", "tailed", "v"}), "+OK\r\n");
    EXPECT_TRUE(wait_until([&] { return slurp(log_file).find("tailed") != std::string::npos; }))
        << slurp(log_file);
    tail.kill_hard();
    std::string got = slurp(log_file);
    if (as_json) {
      EXPECT_NE(got.find("\"cmd\":\"SET\",\"args\":[\"tailed\",\"v\"]"), std::string::npos)
          << got;
    } else {
      EXPECT_NE(got.find(" SET \"tailed\" \"v\" -> OK "), std::string::npos) << got;
      EXPECT_EQ(got.find('{'), std::string::npos) << got;
      EXPECT_EQ(got.find('\033'), std::string::npos) << got;
    }
  }
}
