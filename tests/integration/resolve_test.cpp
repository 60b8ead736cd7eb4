// Upstream host names: looked up off the loop's thread (uv_getaddrinfo) when a client connects,
// accepted before they resolve, cached for 5 s. A getaddrinfo() shim preloaded into faultline
// (support/slow_resolver.c) makes the resolver slow or failing on demand, without a network.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
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

using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

uint16_t port_of(const std::string& listen) {
  return static_cast<uint16_t>(std::stoi(listen.substr(listen.rfind(':') + 1)));
}

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t pos = text.find(part); pos != std::string::npos; pos = text.find(part, pos + 1))
    ++n;
  return n;
}

struct ResolveFixture : ::testing::Test {
  Redis redis;
  Faultline fl;
  std::unique_ptr<HttpClient> http;
  std::string dns_log;

  // Starts faultline (its own proxy "redis" on the real Redis, by address) with the resolver
  // shim; `env` adds FLTEST_DNS_* settings.
  void start(std::vector<std::string> env, std::vector<std::string> args = {}) {
    ASSERT_TRUE(redis.start());
    dns_log = temp_dir() + "/dns.log";
    std::remove(dns_log.c_str());
    const char* asan = std::getenv("ASAN_OPTIONS");
    env.push_back(std::string("LD_PRELOAD=") + FLTEST_SLOW_RESOLVER);
    // A sanitized faultline would refuse a library preloaded before its runtime.
    env.push_back(std::string("ASAN_OPTIONS=verify_asan_link_order=0") +
                  (asan && *asan ? std::string(":") + asan : ""));
    env.push_back("FLTEST_DNS_LOG=" + dns_log);
    fl.process().set_env(std::move(env));
    ASSERT_TRUE(fl.start(redis.port(), args)) << fl.process().log();
    http = std::make_unique<HttpClient>("127.0.0.1", fl.api_port());
  }
  void TearDown() override {
    http.reset();
    if (fl.process().running()) {
      EXPECT_EQ(fl.stop(), 0) << fl.process().log();
    }
  }

  HttpResult req(std::string_view method, std::string_view path, const json& body = nullptr) {
    HttpResult r = http->request(method, path, body.is_null() ? std::string() : body.dump());
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.error;
    return r;
  }
  // Creates a proxy on a free port through the API; returns its port.
  uint16_t create(const std::string& name, const std::string& upstream) {
    HttpResult r = req("POST", "/proxies",
                       json{{"name", name}, {"listen", "127.0.0.1:0"}, {"upstream", upstream}});
    EXPECT_EQ(r.status, 201) << r.body;
    json j = json::parse(r.body, nullptr, false);
    EXPECT_EQ(j.value("upstream", ""), upstream) << r.body;
    return port_of(j.value("listen", ":0"));
  }
  json connections(const std::string& proxy) {
    HttpResult r = req("GET", "/proxies/" + proxy + "/stats");
    return json::parse(r.body, nullptr, false).value("connections", json::object());
  }
  std::string lookups() {
    std::ifstream f(dns_log);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::string redis_upstream() const { return "127.0.0.1:" + std::to_string(redis.port()); }
};

} // namespace

// Issue 17: the lookup of one proxy's upstream must not stall the loop (other proxies, the API).
TEST_F(ResolveFixture, SlowLookupDelaysNeitherOtherProxiesNorTheApi) {
  // The lookup takes 3 s; the connect timeout (1 s) closes its clients first.
  start({"FLTEST_DNS_SLOW=down.invalid", "FLTEST_DNS_DELAY_MS=3000"},
        {"--connect-timeout-ms", "1000"});
  uint16_t slow = create("slow", "down.invalid:6379");
  EXPECT_EQ(lookups(), "") << "nothing is looked up before a client connects";

  Conn a(slow);
  ASSERT_TRUE(a.send_all(cmd({"PING"})));
  ASSERT_TRUE(
      wait_until([&] { return lookups().find("start down.invalid") != std::string::npos; }, 5s));
  Conn a2(slow); // waits for the same lookup
  ASSERT_TRUE(a2.ok());

  // While that lookup runs (3 s), the other proxy and the API answer at once (well under 3 s on
  // a loaded machine).
  auto t0 = Clock::now();
  Conn b(fl.port());
  EXPECT_EQ(call(b, {"PING"}), "+PONG\r\n");
  EXPECT_LT(ms_since(t0), 1500);
  t0 = Clock::now();
  EXPECT_EQ(req("GET", "/version").status, 200);
  EXPECT_LT(ms_since(t0), 1500);
  EXPECT_EQ(count_of(lookups(), "end down.invalid"), 0u) << "the lookup ended too early";

  // The connect timeout also bounds the wait for the name: both clients are closed, before the
  // lookup ends.
  int end_errno = -1;
  EXPECT_EQ(a.read_to_end(5s, &end_errno), "");
  EXPECT_NE(end_errno, ETIMEDOUT);
  a2.read_to_end(5s, &end_errno);
  EXPECT_NE(end_errno, ETIMEDOUT);
  EXPECT_EQ(count_of(lookups(), "end down.invalid"), 0u);
  EXPECT_TRUE(
      wait_until([&] { return count_of(fl.process().log(), "closed (connect_timeout)") == 2; }, 5s))
      << fl.process().log();
  // One lookup for both; its failure is counted once it ends.
  EXPECT_TRUE(
      wait_until([&] { return connections("slow").value("resolve_failures", 0) == 1; }, 10s))
      << connections("slow");
  EXPECT_EQ(count_of(lookups(), "start down.invalid"), 1u);
  EXPECT_EQ(connections("slow").value("connect_failures", 0), 2);
  EXPECT_EQ(count_of(fl.process().log(), "cannot resolve upstream 'down.invalid'"), 1u);
  EXPECT_EQ(call(b, {"PING"}), "+PONG\r\n");
}

// Issue 19: like Toxiproxy, a proxy may name an upstream that does not resolve yet.
TEST_F(ResolveFixture, UnresolvableUpstreamIsAcceptedClosesClientsUntilPatched) {
  start({});
  uint16_t port = create("later", "nosuchhost.invalid:6379");
  // A malformed address or a missing port is still refused.
  HttpResult r = req("POST", "/proxies", json{{"name", "x"}, {"upstream", "nosuchhost.invalid"}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("expected host:port"), std::string::npos) << r.body;
  r = req("POST", "/proxies", json{{"name", "x"}, {"upstream", "nosuchhost.invalid:0"}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("needs a port"), std::string::npos) << r.body;

  // Each client is closed (not left hanging); each failed lookup is counted, logged once.
  for (int i = 1; i <= 2; ++i) {
    Conn c(port);
    ASSERT_TRUE(c.send_all(cmd({"PING"})));
    int end_errno = -1;
    EXPECT_EQ(c.read_to_end(5s, &end_errno), "");
    EXPECT_NE(end_errno, ETIMEDOUT);
    EXPECT_TRUE(wait_until([&] {
      json j = connections("later");
      return j.value("resolve_failures", 0) == i && j.value("connect_failures", 0) == i;
    })) << connections("later");
  }
  EXPECT_TRUE(
      wait_until([&] { return count_of(fl.process().log(), "closed (connect_failed)") == 2; }, 5s))
      << fl.process().log();
  EXPECT_EQ(count_of(fl.process().log(), "cannot resolve upstream 'nosuchhost.invalid'"), 1u)
      << fl.process().log();
  HttpResult metrics = req("GET", "/metrics");
  EXPECT_NE(metrics.body.find("faultline_resolve_failures_total{proxy=\"later\"} 2\n"),
            std::string::npos)
      << metrics.body;

  r = req("PATCH", "/proxies/later", json{{"upstream", redis_upstream()}});
  ASSERT_EQ(r.status, 200) << r.body;
  Conn c(port);
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
}

TEST(Resolve, CommandLineUpstreamNeedNotResolveYet) {
  Faultline fl;
  fl.process().set_env(
      {std::string("LD_PRELOAD=") + FLTEST_SLOW_RESOLVER, "ASAN_OPTIONS=verify_asan_link_order=0"});
  ASSERT_TRUE(fl.start_args(
      {"--listen", "127.0.0.1:0", "--upstream", "nosuchhost.invalid:6379", "--api", "off"}))
      << fl.process().log();
  Conn c(fl.port());
  ASSERT_TRUE(c.send_all(cmd({"PING"})));
  int end_errno = -1;
  EXPECT_EQ(c.read_to_end(5s, &end_errno), "");
  EXPECT_NE(end_errno, ETIMEDOUT);
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
}

// A name that resolves works from the first connection on, and across the 5 s refresh: the
// stale address serves new clients at once while one lookup runs in the background.
TEST_F(ResolveFixture, HostNameUpstreamKeepsWorkingAcrossTheRefresh) {
  // Each lookup of localhost takes 3 s: long enough to see who waits for it, even on a loaded
  // machine where a round trip that waits for none can take a second.
  start({"FLTEST_DNS_SLOW=localhost", "FLTEST_DNS_DELAY_MS=3000"},
        {"--connect-timeout-ms", "5000"});
  uint16_t port = create("named", "localhost:" + std::to_string(redis.port()));
  Conn first(port); // waits for the first lookup
  EXPECT_EQ(call(first, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(count_of(lookups(), "end localhost"), 1u);

  // New clients until one finds the address older than 5 s and starts the refresh; none of them
  // waits for a lookup.
  auto deadline = Clock::now() + 15s;
  long slowest = 0;
  while (count_of(lookups(), "start localhost") < 2 && Clock::now() < deadline) {
    auto t0 = Clock::now();
    Conn c(port);
    ASSERT_EQ(call(c, {"PING"}), "+PONG\r\n");
    slowest = std::max(slowest, ms_since(t0));
    std::this_thread::sleep_for(20ms); // polling interval
  }
  ASSERT_EQ(count_of(lookups(), "start localhost"), 2u) << "no refresh within 15 s";
  EXPECT_LT(slowest, 1500) << "a client waited for the refresh";
  // More clients while the refresh runs: served at once, and no second lookup starts.
  for (int i = 0; i < 3 && count_of(lookups(), "end localhost") < 2; ++i) {
    auto t0 = Clock::now();
    Conn c(port);
    EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
    EXPECT_LT(ms_since(t0), 1500);
  }
  ASSERT_TRUE(wait_until([&] { return count_of(lookups(), "end localhost") == 2; }, 10s));
  EXPECT_EQ(count_of(lookups(), "start localhost"), 2u);
  EXPECT_EQ(call(first, {"PING"}), "+PONG\r\n");
  Conn after(port);
  EXPECT_EQ(call(after, {"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(connections("named").value("resolve_failures", -1), 0);
}

// The lookup's answer arrives after its proxy is gone (deleted, then a new one of the same name):
// nothing may touch the old proxy, and the new one is not disturbed.
TEST_F(ResolveFixture, DeletingAProxyWhileItsLookupRunsIsSafe) {
  start({"FLTEST_DNS_SLOW=down.invalid", "FLTEST_DNS_DELAY_MS=1000"},
        {"--connect-timeout-ms", "5000"});
  uint16_t port = create("gone", "down.invalid:6379");
  Conn a(port);
  ASSERT_TRUE(a.send_all(cmd({"PING"})));
  ASSERT_TRUE(
      wait_until([&] { return lookups().find("start down.invalid") != std::string::npos; }, 5s));
  EXPECT_EQ(req("DELETE", "/proxies/gone").status, 204);
  int end_errno = -1;
  a.read_to_end(5s, &end_errno);
  EXPECT_NE(end_errno, ETIMEDOUT);
  uint16_t again = create("gone", redis_upstream());
  ASSERT_TRUE(
      wait_until([&] { return lookups().find("end down.invalid") != std::string::npos; }, 5s));
  Conn c(again);
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(connections("gone").value("resolve_failures", -1), 0);
  EXPECT_EQ(req("GET", "/version").status, 200);
  EXPECT_TRUE(fl.process().running()) << fl.process().log();
}

// SIGTERM while a lookup waits for a slow resolver: faultline stops at once, not when the
// resolver answers (libuv would wait for its thread pool at exit).
TEST_F(ResolveFixture, StopsPromptlyWhileALookupRuns) {
  start({"FLTEST_DNS_SLOW=down.invalid", "FLTEST_DNS_DELAY_MS=10000"},
        {"--connect-timeout-ms", "20000"});
  uint16_t port = create("slow", "down.invalid:6379");
  Conn a(port);
  ASSERT_TRUE(a.send_all(cmd({"PING"})));
  ASSERT_TRUE(
      wait_until([&] { return lookups().find("start down.invalid") != std::string::npos; }, 5s));
  auto t0 = Clock::now();
  EXPECT_EQ(fl.stop(), 0) << fl.process().log();
  EXPECT_LT(ms_since(t0), 4000) << "not the 10 s the lookup takes";
  EXPECT_NE(fl.process().log().find("without waiting for a host name lookup"), std::string::npos)
      << fl.process().log();
}
