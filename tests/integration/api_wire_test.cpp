// The control API's wire against Toxiproxy 2.12's (api.go, proxy.go, proxy_collection.go): the
// request id header, the listen address read back as bound, /populate's order and partial
// failure, Go's wording of listen errors, the noop type, and unknown attributes refused. Real
// binary, real redis-server.

#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"

using namespace fltest;
using faultline::control::HttpClient;
using faultline::control::HttpResult;
using json = nlohmann::json;

namespace {

json body_json(const HttpResult& r) {
  return json::parse(r.body, nullptr, false);
}

uint16_t port_of(const std::string& listen) {
  return static_cast<uint16_t>(std::stoi(listen.substr(listen.rfind(':') + 1)));
}

bool pings(uint16_t port) {
  Conn c;
  if (!c.connect(port))
    return false;
  return call(c, {"PING"}) == "+PONG\r\n";
}

struct WireFixture : ::testing::Test {
  Redis redis;
  Faultline fl;
  std::unique_ptr<HttpClient> http;

  void SetUp() override {
    ASSERT_TRUE(redis.start());
    ASSERT_TRUE(fl.start(redis.port())) << fl.process().log();
    ASSERT_TRUE(wait_port(fl.api_port())) << fl.process().log();
    http = std::make_unique<HttpClient>("127.0.0.1", fl.api_port());
  }
  void TearDown() override {
    http.reset();
    if (fl.process().running()) {
      EXPECT_EQ(fl.stop(), 0) << fl.process().log();
    }
  }
  HttpResult raw(std::string_view method, std::string_view path, std::string_view body) {
    HttpResult r = http->request(method, path, body);
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.error;
    return r;
  }
  HttpResult req(std::string_view method, std::string_view path) { return raw(method, path, {}); }
  HttpResult req(std::string_view method, std::string_view path, const json& body) {
    return raw(method, path, body.dump());
  }
  std::string upstream() const { return "127.0.0.1:" + std::to_string(redis.port()); }
  json proxies() { return body_json(req("GET", "/proxies")); }
};

// hlog.RequestIDHandler's id: an rs/xid, 20 characters of lowercase base32hex.
bool is_xid(const std::string& s) {
  if (s.size() != 20)
    return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'v')))
      return false;
  return true;
}

TEST_F(WireFixture, EveryResponseCarriesAFreshRequestId) {
  std::set<std::string> seen;
  auto check = [&](const HttpResult& r) {
    const std::string* id = r.headers.find("X-Toxiproxy-Request-Id");
    ASSERT_NE(id, nullptr) << r.status << " " << r.body;
    EXPECT_TRUE(is_xid(*id)) << *id;
    EXPECT_TRUE(seen.insert(*id).second) << "repeated id " << *id;
  };
  check(req("GET", "/version"));
  check(req("GET", "/proxies"));
  check(req("POST", "/reset"));        // 204
  check(req("GET", "/proxies/nope"));  // 404 of a handler
  check(req("GET", "/no/such/route")); // 404 of the router
  check(raw("POST", "/proxies", "{")); // 400
  HttpClient browser("127.0.0.1", fl.api_port());
  browser.set_user_agent("Mozilla/5.0");
  HttpResult r = browser.request("GET", "/version");
  EXPECT_EQ(r.status, 403);
  check(r);
  EXPECT_EQ(seen.size(), 7u);
}

TEST_F(WireFixture, ListenReadsBackAsTheAddressBound) {
  // A host name reads back as the address it resolved to, as Go's listener.Addr() does.
  HttpResult r = req("POST", "/proxies",
                     json{{"name", "named"}, {"listen", "localhost:0"}, {"upstream", upstream()}});
  ASSERT_EQ(r.status, 201) << r.body;
  std::string named = body_json(r)["listen"];
  EXPECT_EQ(named.rfind("127.0.0.1:", 0), 0u) << named;
  uint16_t port = port_of(named);
  EXPECT_NE(port, 0);
  EXPECT_EQ(proxies()["named"]["listen"], "127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(pings(port));
  // Port 0 reads back as the port picked, and keeps it across disable/enable.
  r = req("POST", "/proxies",
          json{{"name", "zero"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}});
  ASSERT_EQ(r.status, 201) << r.body;
  std::string zero = body_json(r)["listen"];
  EXPECT_NE(port_of(zero), 0);
  ASSERT_EQ(req("PATCH", "/proxies/zero", json{{"enabled", false}}).status, 200);
  EXPECT_EQ(proxies()["zero"]["listen"], zero);
  ASSERT_EQ(req("PATCH", "/proxies/zero", json{{"enabled", true}}).status, 200);
  EXPECT_EQ(proxies()["zero"]["listen"], zero);
  EXPECT_TRUE(pings(port_of(zero)));
  // Sending back the host name of the address bound is no change (Toxiproxy 2.12 resolves it
  // before comparing): the proxy is not restarted, so a connection through it lives on.
  Conn live(port_of(zero));
  ASSERT_EQ(call(live, {"PING"}), "+PONG\r\n");
  r = req("PATCH", "/proxies/zero",
          json{{"listen", "localhost:" + std::to_string(port_of(zero))}, {"upstream", upstream()}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_json(r)["listen"], zero);
  EXPECT_EQ(call(live, {"PING"}), "+PONG\r\n");
  // A proxy created disabled has bound nothing: its listen reads back as given.
  r = req("POST", "/proxies",
          json{{"name", "off"},
               {"listen", "localhost:0"},
               {"upstream", upstream()},
               {"enabled", false}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(body_json(r)["listen"].get<std::string>().rfind("localhost:", 0), 0u) << r.body;
}

TEST_F(WireFixture, PortInUseIsGosListenError) {
  // Toxiproxy forwards Go's net.OpError with 500; clients compare the text.
  std::string taken = upstream();
  std::string want = "listen tcp " + taken + ": bind: address already in use";
  HttpResult r =
      req("POST", "/proxies", json{{"name", "x"}, {"listen", taken}, {"upstream", upstream()}});
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(body_json(r), json({{"error", want}, {"status", 500}})) << r.body;
  EXPECT_FALSE(proxies().contains("x"));
  // A host name is resolved in the message, as Go's is.
  r = req("POST", "/proxies",
          json{{"name", "x"},
               {"listen", "localhost:" + std::to_string(redis.port())},
               {"upstream", upstream()}});
  EXPECT_EQ(body_json(r)["error"], want) << r.body;
  // Moving a proxy onto it: the same text.
  ASSERT_EQ(req("POST", "/proxies",
                json{{"name", "y"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}})
                .status,
            201);
  r = req("PATCH", "/proxies/y", json{{"listen", taken}});
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(body_json(r)["error"], want) << r.body;
}

TEST_F(WireFixture, PopulateCreatesAndReplacesInOrderAndKeepsWhatWasDone) {
  uint16_t a_port = unused_port(); // a fixed address, so that "unchanged" can be sent again
  std::string a_listen = "127.0.0.1:" + std::to_string(a_port);
  json a = {{"name", "a"}, {"listen", a_listen}, {"upstream", upstream()}};
  HttpResult r = req("POST", "/populate", json::array({a}));
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_EQ(req("POST", "/proxies/a/toxics", json{{"type", "noop"}}).status, 200);

  // a unchanged (kept, toxic included), b new, then c on a port in use: 500 with Go's text, a
  // and b in the answer and kept, c absent, d never looked at.
  std::string taken = upstream();
  r = req("POST", "/populate",
          json::array({{{"name", "a"},
                        {"listen", "localhost:" + std::to_string(a_port)},
                        {"upstream", upstream()}},
                       {{"name", "b"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}},
                       {{"name", "c"}, {"listen", taken}, {"upstream", upstream()}},
                       {{"name", "d"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}}}));
  EXPECT_EQ(r.status, 500) << r.body;
  json out = body_json(r);
  EXPECT_EQ(out["error"], "listen tcp " + taken + ": bind: address already in use");
  EXPECT_EQ(out["status"], 500);
  ASSERT_EQ(out["proxies"].size(), 2u) << r.body;
  EXPECT_EQ(out["proxies"][0]["name"], "a");
  EXPECT_EQ(out["proxies"][0]["toxics"].size(), 1u) << "a was kept as it was";
  EXPECT_EQ(out["proxies"][1]["name"], "b");
  json all = proxies();
  EXPECT_TRUE(all.contains("a") && all.contains("b"));
  EXPECT_FALSE(all.contains("c"));
  EXPECT_FALSE(all.contains("d"));

  // Replacing a onto a port in use: Toxiproxy stops the old proxy first, so it stays, stopped.
  r = req("POST", "/populate",
          json::array({{{"name", "a"}, {"listen", taken}, {"upstream", upstream()}}}));
  EXPECT_EQ(r.status, 500) << r.body;
  EXPECT_EQ(body_json(r)["proxies"], json::array());
  all = proxies();
  ASSERT_TRUE(all.contains("a"));
  EXPECT_EQ(all["a"]["enabled"], false);
  EXPECT_EQ(all["a"]["listen"], a_listen);
  EXPECT_FALSE(pings(a_port));

  // A missing name or upstream anywhere: 400 before anything changes.
  r = req("POST", "/populate",
          json::array({{{"name", "e"}, {"upstream", upstream()}}, {{"name", "f"}}}));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(body_json(r), json({{"error", "missing required field: upstream at proxy 2"},
                                {"status", 400},
                                {"proxies", json::array()}}));
  EXPECT_FALSE(proxies().contains("e"));
  // A malformed address is found in order, as Toxiproxy finds it: what came before is done.
  r = req("POST", "/populate",
          json::array({{{"name", "g"}, {"listen", "127.0.0.1:0"}, {"upstream", upstream()}},
                       {{"name", "h"}, {"listen", "nonsense"}, {"upstream", upstream()}}}));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(body_json(r)["proxies"].size(), 1u) << r.body;
  EXPECT_NE(body_json(r)["error"].get<std::string>().find("at proxy 2"), std::string::npos);
  EXPECT_TRUE(proxies().contains("g"));
}

TEST_F(WireFixture, NoopToxicPassesEverything) {
  HttpResult r = req("POST", "/proxies/redis/toxics", json{{"type", "noop"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_json(r), json({{"name", "noop_downstream"},
                                {"type", "noop"},
                                {"stream", "downstream"},
                                {"toxicity", 1.0},
                                {"attributes", json::object()}}));
  ASSERT_EQ(
      req("POST", "/proxies/redis/toxics", json{{"type", "noop"}, {"stream", "upstream"}}).status,
      200);
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(call(c, {"GET", "k"}), "$1\r\nv\r\n");
  EXPECT_EQ(req("DELETE", "/proxies/redis/toxics/noop_downstream").status, 204);
}

TEST_F(WireFixture, UnknownAttributesAreRefusedWithTheTypesNames) {
  HttpResult r = req("POST", "/proxies/redis/toxics",
                     json{{"type", "latency"}, {"attributes", {{"latncy", 300}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(body_json(r),
            json({{"error", "bad request body: unknown attribute 'latncy': latency takes latency, "
                            "jitter"},
                  {"status", 400}}))
      << r.body;
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "resp_error"}, {"attributes", {{"preset", "loading"}, {"key", "u:*"}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(body_json(r)["error"].get<std::string>().rfind(
                "bad request body: unknown attribute 'key': resp_error takes preset, error, ", 0),
            0u)
      << r.body;
  // Wrong type and out of range name the attribute too.
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "latency"}, {"attributes", {{"latency", "slow"}}}});
  EXPECT_EQ(body_json(r)["error"], "bad request body: attribute 'latency' must be a number");
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "bandwidth"}, {"attributes", {{"rate", -1}}}});
  EXPECT_EQ(body_json(r)["error"],
            "bad request body: attribute 'rate' is out of range (0..100000000)");
  EXPECT_EQ(body_json(req("GET", "/proxies/redis/toxics")), json::array());

  // What Toxiproxy's clients send is never refused: null attributes, a null for a name, zero
  // toxicity, a proxy's "toxics" beside its fields, a toxic's attributes sent back as read.
  r = req("POST", "/proxies/redis/toxics",
          json{{"name", ""}, {"type", "latency"}, {"toxicity", 0}, {"attributes", nullptr}});
  EXPECT_EQ(r.status, 200) << r.body;
  r = req("PATCH", "/proxies/redis/toxics/latency_downstream",
          json{{"attributes", {{"latency", 5}, {"latncy", nullptr}}}, {"toxicity", 1}});
  EXPECT_EQ(r.status, 200) << r.body;
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "resp_hang"}, {"attributes", {{"keys", "x:*"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json shown = body_json(r);
  r = req("POST", "/proxies/redis/toxics/" + shown["name"].get<std::string>(), shown);
  EXPECT_EQ(r.status, 200) << r.body;
  json p = proxies()["redis"];
  r = req("POST", "/proxies/redis", p);
  EXPECT_EQ(r.status, 200) << r.body;
  // And a slicer whose variation equals its average, as Toxiproxy's README shows.
  r = req("POST", "/proxies/redis/toxics",
          json{{"type", "slicer"},
               {"attributes", {{"average_size", 10}, {"size_variation", 10}, {"delay", 0}}}});
  EXPECT_EQ(r.status, 200) << r.body;
  Conn c(fl.port());
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
}

TEST_F(WireFixture, CtlAndProfileCheckRefuseAnUnknownAttribute) {
  std::string bin = FAULTLINE_BIN;
  int status = 0;
  std::string out = run_cmd(bin + " ctl --api 127.0.0.1:" + std::to_string(fl.api_port()) +
                                " toxic add redis --type latency --attribute latncy=300 2>&1",
                            &status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("unknown attribute 'latncy': latency takes latency, jitter"),
            std::string::npos)
      << out;
  std::string dir = temp_dir();
  std::string file = dir + "/typo.toml";
  {
    std::ofstream f(file);
    f << "name = \"typo\"\n\n[[steps]]\nat = \"0s\"\nfor = \"1s\"\n"
         "toxic = { type = \"latency\", attributes = { latncy = 300 } }\n";
  }
  out = run_cmd(bin + " profile check " + file + " 2>&1", &status);
  EXPECT_NE(status, 0) << out;
  std::string msg = file + ":6:53: step 1: toxic latency: unknown attribute 'latncy': latency "
                           "takes latency, jitter";
  EXPECT_NE(out.find(msg), std::string::npos) << out;
  // --profile refuses it the same way, before anything listens.
  out = run_cmd(bin + " --api off --listen 127.0.0.1:0" +
                    " --profile " + file + " 2>&1",
                &status);
  EXPECT_EQ(status, 2) << out;
  EXPECT_NE(out.find(msg), std::string::npos) << out;
}

} // namespace
