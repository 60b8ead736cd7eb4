// `faultline ctl` against a small fake of the Toxiproxy API, served by HttpServer on a loop
// thread. The fake keeps proxies in memory with Toxiproxy's JSON shapes; it is not Redis.

#include "control/ctl.h"
#include "control/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

namespace faultline::control {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// The fake API's state; touched only on the loop thread.
struct FakeApi {
  json proxies = json::object();
  json last_body; // the last request body, parsed
  std::string last_auth;

  Router routes() {
    Router r;
    auto record = [this](Request& req) {
      last_body = req.body.empty() ? json() : json::parse(req.body, nullptr, false);
      last_auth = req.headers.get("Authorization");
    };
    r.add("GET", "/version", [](Request&, Response& res) {
      res.json(200, {{"version", "9.9.9"}});
    });
    r.add("GET", "/proxies", [this](Request&, Response& res) { res.json(200, proxies); });
    r.add("POST", "/proxies", [this, record](Request& req, Response& res) {
      record(req);
      const std::string name = last_body.value("name", "");
      if (proxies.contains(name))
        return (void)res.error(409, "proxy already exists");
      json p = {{"name", name},
                {"listen", last_body.value("listen", "127.0.0.1:0")},
                {"upstream", last_body.value("upstream", "")},
                {"enabled", last_body.value("enabled", true)},
                {"toxics", json::array()}};
      proxies[name] = p;
      res.json(201, p);
    });
    r.add("GET", "/proxies/{name}", [this](Request& req, Response& res) {
      if (!proxies.contains(req.param("name")))
        return (void)res.error(404, "proxy not found");
      res.json(200, proxies[req.param("name")]);
    });
    r.add("POST", "/proxies/{name}", [this, record](Request& req, Response& res) {
      record(req);
      if (!proxies.contains(req.param("name")))
        return (void)res.error(404, "proxy not found");
      json& p = proxies[req.param("name")];
      for (const auto& [k, v] : last_body.items())
        p[k] = v;
      res.json(200, p);
    });
    r.add("DELETE", "/proxies/{name}", [this](Request& req, Response& res) {
      if (proxies.erase(req.param("name")) == 0)
        return (void)res.error(404, "proxy not found");
      res.empty(204);
    });
    r.add("GET", "/proxies/{name}/toxics", [this](Request& req, Response& res) {
      if (!proxies.contains(req.param("name")))
        return (void)res.error(404, "proxy not found");
      res.json(200, proxies[req.param("name")]["toxics"]);
    });
    r.add("POST", "/proxies/{name}/toxics", [this, record](Request& req, Response& res) {
      record(req);
      if (!proxies.contains(req.param("name")))
        return (void)res.error(404, "proxy not found");
      json t = last_body;
      const std::string stream = t.value("stream", "downstream");
      t["stream"] = stream;
      if (!t.contains("name"))
        t["name"] = t.value("type", "") + "_" + stream;
      if (!t.contains("toxicity"))
        t["toxicity"] = 1.0;
      proxies[req.param("name")]["toxics"].push_back(t);
      res.json(200, t);
    });
    r.add("POST", "/proxies/{name}/toxics/{toxic}", [this, record](Request& req, Response& res) {
      record(req);
      for (auto& t : proxies[req.param("name")]["toxics"]) {
        if (t["name"] != req.param("toxic"))
          continue;
        if (last_body.contains("toxicity"))
          t["toxicity"] = last_body["toxicity"];
        if (last_body.contains("attributes"))
          t["attributes"].update(last_body["attributes"]);
        return (void)res.json(200, t);
      }
      res.error(404, "toxic not found");
    });
    r.add("DELETE", "/proxies/{name}/toxics/{toxic}", [this](Request& req, Response& res) {
      json& toxics = proxies[req.param("name")]["toxics"];
      for (auto it = toxics.begin(); it != toxics.end(); ++it) {
        if ((*it)["name"] == req.param("toxic")) {
          toxics.erase(it);
          return (void)res.empty(204);
        }
      }
      res.error(404, "toxic not found");
    });
    r.add("POST", "/reset", [this](Request&, Response& res) {
      for (auto& [name, p] : proxies.items()) {
        p["enabled"] = true;
        p["toxics"] = json::array();
      }
      res.empty(204);
    });
    r.add("GET", "/proxies/{name}/connections", [](Request&, Response& res) {
      res.json(200, json::array({{{"id", 7}, {"client", "127.0.0.1:5000"}, {"bytes_up", 12}}}));
    });
    r.add("DELETE", "/proxies/{name}/connections", [](Request&, Response& res) {
      res.json(200, {{"dropped", 1}});
    });
    r.add("GET", "/proxies/{name}/traffic", [this](Request& req, Response& res) {
      if (!proxies.contains(req.param("name")))
        return (void)res.error(404, "proxy not found");
      res.start_stream(200, "application/x-ndjson");
      res.write_chunk("{\"cmd\":\"GET\"}\n");
      res.write_chunk("{\"cmd\":\"SET\"}\n");
      res.end();
    });
    return r;
  }
};

// Runs the fake API on its own loop thread (the server itself stays single-threaded).
class FakeServer {
public:
  explicit FakeServer(HttpServerOptions options = {}) {
    uv_loop_init(&loop_);
    async_.data = this;
    uv_async_init(&loop_, &async_,
                  [](uv_async_t* a) { static_cast<FakeServer*>(a->data)->drain(); });
    server_ = std::make_unique<HttpServer>(&loop_, std::move(options), api.routes());
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    EXPECT_EQ(server_->listen(reinterpret_cast<const sockaddr*>(&addr)), 0);
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~FakeServer() {
    post([this] {
      server_->close([this] { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); });
    });
    thread_.join();
    uv_loop_close(&loop_);
  }

  std::string address() const { return fmt::format("127.0.0.1:{}", server_->bound_port()); }

  template <class F> auto call(F fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto future = task.get_future();
    post([&task] { task(); });
    if (future.wait_for(5s) != std::future_status::ready)
      std::abort();
    return future.get();
  }

  FakeApi api;

private:
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    uv_async_send(&async_);
  }
  void drain() {
    std::deque<std::function<void()>> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(queue_);
    }
    for (auto& fn : batch)
      fn();
  }

  uv_loop_t loop_{};
  uv_async_t async_{};
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
};

struct CtlRun {
  int code;
  std::string out;
  std::string err;
};

CtlRun ctl(const FakeServer& s, std::vector<std::string> args, const std::string& env_token = {}) {
  args.insert(args.begin(), {"--api", s.address()});
  std::ostringstream out;
  std::ostringstream err;
  const int code = run_ctl(args, out, err, env_token);
  return CtlRun{code, out.str(), err.str()};
}

TEST(Ctl, CreateListInspect) {
  FakeServer s;
  CtlRun r =
      ctl(s, {"create", "redis", "--listen", "127.0.0.1:6381", "--upstream", "127.0.0.1:6379"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "created proxy redis: 127.0.0.1:6381 -> 127.0.0.1:6379\n");
  EXPECT_EQ(ctl(s, {"create", "cache", "--upstream=127.0.0.1:6380", "--disabled"}).code, 0);
  EXPECT_EQ(ctl(s, {"toxic", "add", "redis", "--type", "latency", "-a", "latency=100"}).code, 0);

  r = ctl(s, {"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "NAME   LISTEN          UPSTREAM        ENABLED  TOXICS\n"
                   "cache  127.0.0.1:0     127.0.0.1:6380  false    -\n"
                   "redis  127.0.0.1:6381  127.0.0.1:6379  true     latency_downstream\n");

  r = ctl(s, {"inspect", "redis"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "name:      redis\n"
                   "listen:    127.0.0.1:6381\n"
                   "upstream:  127.0.0.1:6379\n"
                   "enabled:   true\n"
                   "\n"
                   "TOXIC               TYPE     STREAM      TOXICITY  ATTRIBUTES\n"
                   "latency_downstream  latency  downstream  1.0       latency=100\n");

  r = ctl(s, {"--json", "inspect", "cache"});
  EXPECT_EQ(json::parse(r.out)["enabled"], false);
}

TEST(Ctl, ToxicAttributesAreTyped) {
  FakeServer s;
  ASSERT_EQ(ctl(s, {"create", "redis", "--upstream", "127.0.0.1:6379"}).code, 0);
  CtlRun r = ctl(s, {"toxic",
                     "add",
                     "redis",
                     "--type",
                     "resp_error",
                     "--toxic-name",
                     "loading",
                     "--stream",
                     "upstream",
                     "--toxicity",
                     "0.5",
                     "--attribute",
                     "latency=100",
                     "--attribute",
                     "ratio=0.25",
                     "--attribute",
                     "commands=GET, SET",
                     "--attribute",
                     "enabled=true",
                     "--attribute",
                     "message=LOADING a,b",
                     "--attribute",
                     "keys:=[\"user:*\"]"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json body = s.call([&] { return s.api.last_body; });
  EXPECT_EQ(body, json::parse(R"({"type":"resp_error","name":"loading","stream":"upstream",
      "toxicity":0.5,"attributes":{"latency":100,"ratio":0.25,"commands":["GET","SET"],
      "enabled":true,"message":"LOADING a,b","keys":["user:*"]}})"));

  r = ctl(s, {"toxic", "update", "redis", "loading", "--toxicity", "1", "-a", "latency=5"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(s.call([&] { return s.api.last_body; }),
            json::parse(R"({"toxicity":1.0,"attributes":{"latency":5}})"));

  r = ctl(s, {"toxic", "list", "redis"});
  EXPECT_NE(r.out.find("loading"), std::string::npos);
  EXPECT_EQ(ctl(s, {"toxic", "remove", "redis", "loading"}).out,
            "removed toxic loading from redis\n");
  EXPECT_EQ(ctl(s, {"toxic", "list", "redis"}).out, "no toxics on redis\n");
}

TEST(Ctl, ApiErrorsArePlainOnStderrWithExit1) {
  FakeServer s;
  CtlRun r = ctl(s, {"inspect", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "faultline ctl: proxy not found\n");
  EXPECT_TRUE(r.out.empty());
  ASSERT_EQ(ctl(s, {"create", "redis", "--upstream", "x:1"}).code, 0);
  r = ctl(s, {"create", "redis", "--upstream", "x:1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "faultline ctl: proxy already exists\n");
}

TEST(Ctl, UsageErrorsExit2WithOneLine) {
  FakeServer s;
  for (const auto& args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"inspect"},
           {"inspect", "a", "b"},
           {"create", "redis"},
           {"toxic", "add", "redis"},
           {"toxic", "add", "redis", "--type", "latency", "--stream", "sideways"},
           {"toxic", "add", "redis", "--type", "latency", "--toxicity", "2"},
           {"toxic", "add", "redis", "--type", "latency", "-a", "novalue"},
           {"toxic", "update", "redis", "t"},
           {"list", "--upstream", "x:1"},
           {"list", "--bogus"},
           {"list", "--api"},
       }) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(run_ctl(args, out, err), 2) << fmt::format("{}", fmt::join(args, " "));
    const std::string e = err.str();
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
    EXPECT_EQ(e.rfind("faultline ctl: ", 0), 0u) << e;
  }
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run_ctl({"--help"}, out, err), 0);
  EXPECT_NE(out.str().find("toxic add NAME --type TYPE"), std::string::npos);
}

TEST(Ctl, ConnectionRefusedNamesTheAddress) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run_ctl({"--api", fmt::format("127.0.0.1:{}", port), "list"}, out, err), 1);
  EXPECT_EQ(
      err.str(),
      fmt::format("faultline ctl: cannot connect to 127.0.0.1:{}: connection refused\n", port));
}

TEST(Ctl, EnableDisableToggleReset) {
  FakeServer s;
  ASSERT_EQ(ctl(s, {"create", "redis", "--upstream", "x:1"}).code, 0);
  EXPECT_EQ(ctl(s, {"disable", "redis"}).out, "proxy redis disabled\n");
  EXPECT_EQ(s.call([&] { return s.api.last_body; }), json::parse(R"({"enabled":false})"));
  EXPECT_EQ(ctl(s, {"toggle", "redis"}).out, "proxy redis enabled\n");
  EXPECT_EQ(ctl(s, {"toggle", "redis"}).out, "proxy redis disabled\n");
  EXPECT_EQ(ctl(s, {"reset"}).code, 0);
  EXPECT_EQ(s.call([&] { return s.api.proxies["redis"]["enabled"]; }), true);
  EXPECT_EQ(ctl(s, {"delete", "redis"}).out, "deleted proxy redis\n");
  EXPECT_EQ(ctl(s, {"list"}).out, "no proxies\n");
}

TEST(Ctl, ConnectionsDropTailVersion) {
  FakeServer s;
  ASSERT_EQ(ctl(s, {"create", "redis", "--upstream", "x:1"}).code, 0);
  CtlRun r = ctl(s, {"connections", "redis"});
  EXPECT_EQ(r.out, "ID  CLIENT          BYTES_UP\n"
                   "7   127.0.0.1:5000  12\n");
  EXPECT_EQ(ctl(s, {"drop", "redis"}).out, "dropped 1 connections of redis\n");
  r = ctl(s, {"tail", "redis"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"cmd\":\"GET\"}\n{\"cmd\":\"SET\"}\n");
  r = ctl(s, {"tail", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "faultline ctl: proxy not found\n");
  r = ctl(s, {"version"});
  EXPECT_NE(r.out.find("server: 9.9.9"), std::string::npos) << r.out;
}

TEST(Ctl, TokenFromFlagOrEnvironment) {
  HttpServerOptions o;
  o.token = "t0k";
  FakeServer s(o);
  CtlRun r = ctl(s, {"list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("API token"), std::string::npos) << r.err;
  EXPECT_EQ(ctl(s, {"list"}, "t0k").code, 0);
  EXPECT_EQ(ctl(s, {"--token", "t0k", "list"}, "wrong").code, 0);
}

} // namespace
} // namespace faultline::control
