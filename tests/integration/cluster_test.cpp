// Cluster mode end to end: faultline --cluster in front of a real six-node Redis Cluster
// (tests/integration/support: RedisCluster). Every reply that names a node names a faultline
// listener instead, in RESP2 and RESP3; MOVED and ASK send clients to listeners; the topology
// follows a real failover; the moved/ask presets name the listener of the slot's real owner.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"
#include "toxics/slot.h"

using namespace fltest;
using faultline::control::HttpClient;
using json = nlohmann::json;

namespace {

class ClusterMode : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    cluster_ = new RedisCluster();
    ASSERT_TRUE(cluster_->start()) << cluster_->error();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(cluster_->wait_ready()) << cluster_->error();
    ASSERT_TRUE(fl_.start_args({"--cluster", cluster_->addresses()[0], "--listen", "127.0.0.1:0",
                                "--api", "127.0.0.1:0", "--topology-refresh-ms", "200"}));
    http_ = std::make_unique<HttpClient>("127.0.0.1", fl_.api_port());
    ASSERT_TRUE(read_topology());
  }
  void TearDown() override { fl_.stop(); }

  // real port -> listener port, from GET /topology.
  bool read_topology() {
    auto r = http_->request("GET", "/topology");
    if (!r.ok() || r.status != 200) return false;
    topo_ = json::parse(r.body);
    listener_.clear();
    for (const auto& n : topo_["nodes"]) {
      if (n["listen"].is_null()) return false;
      listener_[uint16_t(listen_port(n["address"].get<std::string>()))] =
          uint16_t(listen_port(n["listen"].get<std::string>()));
    }
    return true;
  }
  uint16_t via(uint16_t real) { return listener_.at(real); }

  // No real node's port appears in `reply` as a port (":7001", " 7001", "\r\n7001\r\n" and
  // the integer form ":7001\r\n" all contain the digits after a separator).
  void expect_no_real_port(const std::string& reply, const std::string& what) {
    for (uint16_t p : cluster_->ports()) {
      const std::string s = std::to_string(p);
      for (size_t at = reply.find(s); at != std::string::npos; at = reply.find(s, at + 1)) {
        const char before = at ? reply[at - 1] : ' ';
        const char after = at + s.size() < reply.size() ? reply[at + s.size()] : ' ';
        const bool digit_around = isdigit(uint8_t(before)) || isdigit(uint8_t(after));
        EXPECT_TRUE(digit_around) << what << " names real node port " << p << ": " << reply;
      }
    }
  }

  static RedisCluster* cluster_;
  Faultline fl_;
  std::unique_ptr<HttpClient> http_;
  json topo_;
  std::map<uint16_t, uint16_t> listener_;
};
RedisCluster* ClusterMode::cluster_ = nullptr;

TEST_F(ClusterMode, EveryNodeHasItsOwnListenerAndTheTopologyNamesThem) {
  EXPECT_EQ(topo_["mode"], "cluster");
  ASSERT_EQ(topo_["nodes"].size(), 6u);
  std::set<uint16_t> listeners;
  int masters = 0;
  for (const auto& n : topo_["nodes"]) {
    listeners.insert(uint16_t(listen_port(n["listen"].get<std::string>())));
    const std::string addr = n["address"];
    EXPECT_EQ(n["proxy"], "node-" + addr.substr(0, addr.find(':')) + "-" +
                              addr.substr(addr.find(':') + 1));
    if (n["role"] == "master") {
      ++masters;
      EXPECT_FALSE(n["slots"].empty());
    } else {
      EXPECT_EQ(n["role"], "replica");
      EXPECT_TRUE(n["master"].is_string());
    }
  }
  EXPECT_EQ(masters, 3);
  EXPECT_EQ(listeners.size(), 6u);
  // The first listener is the master of slot 0: the one --port-file names.
  EXPECT_EQ(fl_.port(), via(cluster_->owner(0)));
  // The proxies are normal proxies of the Toxiproxy API.
  auto r = http_->request("GET", "/proxies");
  ASSERT_TRUE(r.ok());
  json proxies = json::parse(r.body);
  for (const auto& n : topo_["nodes"]) EXPECT_TRUE(proxies.contains(n["proxy"].get<std::string>()));
}

TEST_F(ClusterMode, TopologyRepliesNameOnlyListenersInBothProtocols) {
  for (bool resp3 : {false, true}) {
    Conn c(via(cluster_->masters()[1]));
    if (resp3) {
      ASSERT_EQ(call(c, {"HELLO", "3"}).substr(0, 1), "%");
    }
    for (const std::vector<std::string>& q :
         std::vector<std::vector<std::string>>{{"CLUSTER", "SLOTS"},
                                               {"CLUSTER", "SHARDS"},
                                               {"CLUSTER", "NODES"},
                                               {"CLUSTER", "REPLICAS",
                                                cluster_->node_id(cluster_->masters()[0])},
                                               {"ROLE"},
                                               {"INFO", "replication"}}) {
      const std::string reply = call(c, q);
      const std::string what = q[0] + " " + (q.size() > 1 ? q[1] : "") + (resp3 ? " (RESP3)" : "");
      ASSERT_FALSE(reply.empty()) << what;
      EXPECT_NE(reply[0], '-') << what << ": " << reply;
      expect_no_real_port(reply, what);
    }
    // Every listener appears in CLUSTER NODES, each once.
    const std::string nodes = call(c, {"CLUSTER", "NODES"});
    for (auto [real, l] : listener_)
      EXPECT_NE(nodes.find("127.0.0.1:" + std::to_string(l) + "@"), std::string::npos) << l;
  }
}

TEST_F(ClusterMode, MovedAndAskNameTheListenerOfTheRealTarget) {
  const uint16_t a = cluster_->masters()[0];
  Conn c(via(a));
  // A key served elsewhere: MOVED to that node's listener.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    std::string k = "k" + std::to_string(i);
    if (cluster_->owner(int(faultline::toxics::key_hash_slot(k))) != a) key = k;
  }
  const int slot = int(faultline::toxics::key_hash_slot(key));
  const uint16_t owner = cluster_->owner(slot);
  EXPECT_EQ(call(c, {"GET", key}), "-MOVED " + std::to_string(slot) + " 127.0.0.1:" +
                                       std::to_string(via(owner)) + "\r\n");
  // Pipelined, split across reads, between ordinary replies: each in its place.
  c.send_all(cmd({"PING"}) + cmd({"GET", key}) + cmd({"ECHO", "x"}));
  EXPECT_EQ(c.read_exact(7), "+PONG\r\n");
  const std::string moved =
      "-MOVED " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(via(owner)) + "\r\n";
  EXPECT_EQ(c.read_exact(moved.size()), moved);
  EXPECT_EQ(c.read_exact(7), "$1\r\nx\r\n");

  // ASK: the slot is migrating from its owner to `a`; a key not on the owner is asked for at a.
  Conn own(owner);  // the test's own admin connection to the real node
  Conn to(a);
  ASSERT_EQ(call(to, {"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING",
                      cluster_->node_id(owner)}), "+OK\r\n");
  ASSERT_EQ(call(own, {"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING",
                       cluster_->node_id(a)}), "+OK\r\n");
  Conn o(via(owner));
  EXPECT_EQ(call(o, {"GET", key}), "-ASK " + std::to_string(slot) + " 127.0.0.1:" +
                                       std::to_string(via(a)) + "\r\n");
  // And ASKING then the command at a's listener is served there.
  EXPECT_EQ(call(c, {"ASKING"}), "+OK\r\n");
  EXPECT_EQ(call(c, {"GET", key}), "$-1\r\n");
  ASSERT_EQ(call(to, {"CLUSTER", "SETSLOT", std::to_string(slot), "STABLE"}), "+OK\r\n");
  ASSERT_EQ(call(own, {"CLUSTER", "SETSLOT", std::to_string(slot), "STABLE"}), "+OK\r\n");
}

TEST_F(ClusterMode, NodesNamedOnlyInRepliesGetProxiesUpToALimit) {
  // A server that names ever new addresses (here a script's own error replies) gets a proxy per
  // address only up to the documented limit (16); past it, the address goes on as written.
  const uint16_t a = cluster_->masters()[0];
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    std::string k = "k" + std::to_string(i);
    if (cluster_->owner(int(faultline::toxics::key_hash_slot(k))) == a) key = k;
  }
  const int slot = int(faultline::toxics::key_hash_slot(key));
  Conn c(via(a));
  std::set<std::string> listeners;
  for (int i = 1; i <= 20; ++i) {
    const std::string named = "127.0.0.1:" + std::to_string(1000 + i);
    const std::string reply =
        call(c, {"EVAL", "return redis.error_reply(ARGV[1])", "1", key,
                 "MOVED " + std::to_string(slot) + " " + named});
    ASSERT_EQ(reply.substr(0, 7 + std::to_string(slot).size()), "-MOVED " + std::to_string(slot))
        << reply;
    if (i <= 16) {
      EXPECT_EQ(reply.find(named), std::string::npos) << i << ": " << reply;
      listeners.insert(reply);
    } else {
      EXPECT_EQ(reply, "-MOVED " + std::to_string(slot) + " " + named + "\r\n") << i;
    }
  }
  EXPECT_EQ(listeners.size(), 16u);  // each a listener of its own
  ASSERT_TRUE(read_topology());
  EXPECT_EQ(topo_["reply_nodes"]["fronted"], 16);
  EXPECT_EQ(topo_["reply_nodes"]["limit"], 16);
  EXPECT_EQ(topo_["reply_nodes"]["refused"], 4);
  auto r = http_->request("GET", "/proxies");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(json::parse(r.body).size(), 6u + 16u);
}

// Collecting replies to rewrite them is bounded: a 48 MB value and a 40 MB error reply (the kind
// collected whole when small, as a MOVED is) go through a node proxy exactly, and the proxy
// holds neither (its peak RSS grows far less than their size).
TEST_F(ClusterMode, LargeRepliesThroughANodeProxyAreNotHeld) {
  const uint16_t a = cluster_->masters()[0];
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    std::string k = "big" + std::to_string(i);
    if (cluster_->owner(int(faultline::toxics::key_hash_slot(k))) == a) key = k;
  }
  const std::string pid = std::to_string(fl_.process().pid());
  auto status_kb = [&](const char* field) -> long {
    std::ifstream f("/proc/" + pid + "/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
    return -1;
  };
  Conn c(via(a));
  const size_t value = 48u << 20, error = 40u << 20;
  c.send_all(cmd({"SET", key, std::string(value, 'v')}));
  ASSERT_EQ(c.read_reply(30s).value_or(""), "+OK\r\n");
  {
    std::ofstream f("/proc/" + pid + "/clear_refs");
    f << "5";
  }
  const long base = status_kb("VmRSS:");
  c.send_all(cmd({"GET", key}));
  const std::string head = "$" + std::to_string(value) + "\r\n";
  ASSERT_EQ(c.read_exact(head.size(), 30s), head);
  const std::string body = c.read_exact(value + 2, 60s);
  ASSERT_EQ(body.size(), value + 2);
  EXPECT_EQ(body.find_first_not_of('v'), value);
  c.send_all(cmd({"EVAL", "return redis.error_reply(string.rep('e', tonumber(ARGV[1])))", "1",
                  key, std::to_string(error)}));
  const std::string err = c.read_exact(error + 7, 60s);  // Redis adds the ERR code
  ASSERT_EQ(err.size(), error + 7);
  EXPECT_EQ(err.substr(0, 8), "-ERR eee");
  EXPECT_EQ(err.substr(err.size() - 3), "e\r\n");
  EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
  const long growth = status_kb("VmHWM:") - base;
  std::printf("cluster: 48 MB value and 40 MB error through a node proxy: peak RSS +%ld kB\n",
              growth);
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(growth, 24 * 1024);
#endif
  call(c, {"DEL", key});
}

// The traffic log of a deployment: each record names the node's proxy, and a redirection's reply
// is shown as Redis wrote it (the real node: what the client was sent instead is its listener).
TEST_F(ClusterMode, TrafficLogShowsTheRedirectionsAsTheNodesSentThem) {
  fl_.stop();
  const std::string log = temp_path("cluster-traffic", ".jsonl");
  ASSERT_TRUE(fl_.start_args({"--cluster", cluster_->addresses()[0], "--listen", "127.0.0.1:0",
                              "--api", "127.0.0.1:0", "--topology-refresh-ms", "200", "--log",
                              log}));
  http_ = std::make_unique<HttpClient>("127.0.0.1", fl_.api_port());
  ASSERT_TRUE(read_topology());
  const uint16_t a = cluster_->masters()[0];
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    std::string k = "t" + std::to_string(i);
    if (cluster_->owner(int(faultline::toxics::key_hash_slot(k))) != a) key = k;
  }
  const int slot = int(faultline::toxics::key_hash_slot(key));
  const uint16_t owner = cluster_->owner(slot);
  const std::string s = std::to_string(slot);
  Conn ca(via(a)), co(via(owner)), admin_a(a), admin_o(owner);
  EXPECT_EQ(call(ca, {"GET", key}), "-MOVED " + s + " 127.0.0.1:" + std::to_string(via(owner)) + "\r\n");
  EXPECT_EQ(call(co, {"GET", key}), "$-1\r\n");
  ASSERT_EQ(call(admin_a, {"CLUSTER", "SETSLOT", s, "IMPORTING", cluster_->node_id(owner)}), "+OK\r\n");
  ASSERT_EQ(call(admin_o, {"CLUSTER", "SETSLOT", s, "MIGRATING", cluster_->node_id(a)}), "+OK\r\n");
  EXPECT_EQ(call(co, {"GET", key}), "-ASK " + s + " 127.0.0.1:" + std::to_string(via(a)) + "\r\n");
  EXPECT_EQ(call(ca, {"ASKING"}), "+OK\r\n");
  EXPECT_EQ(call(ca, {"GET", key}), "$-1\r\n");
  ASSERT_EQ(call(admin_a, {"CLUSTER", "SETSLOT", s, "STABLE"}), "+OK\r\n");
  ASSERT_EQ(call(admin_o, {"CLUSTER", "SETSLOT", s, "STABLE"}), "+OK\r\n");
  // The five records, in order (the log is written as replies arrive).
  const std::string pa = "node-127.0.0.1-" + std::to_string(a), po = "node-127.0.0.1-" + std::to_string(owner);
  std::vector<std::pair<std::string, std::string>> seen;  // proxy, reply summary
  ASSERT_TRUE(wait_until([&] {
    seen.clear();
    std::ifstream f(log);
    std::string line;
    while (std::getline(f, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || j.contains("event") || !j.contains("cmd")) continue;
      if (j["cmd"] != "GET" && j["cmd"] != "ASKING") continue;
      if (j["cmd"] == "GET" && j["key"] != key) continue;
      const json& r = j["reply"];
      seen.emplace_back(j["proxy"].get<std::string>(),
                        r["type"].get<std::string>() + (r.contains("text") ? " " + r["text"].get<std::string>() : ""));
    }
    return seen.size() >= 5;
  }, 10s)) << seen.size() << " records";
  const std::vector<std::pair<std::string, std::string>> want = {
      {pa, "error MOVED " + s + " 127.0.0.1:" + std::to_string(owner)},
      {po, "null"},
      {po, "error ASK " + s + " 127.0.0.1:" + std::to_string(a)},
      {pa, "simple OK"},
      {pa, "null"}};
  EXPECT_EQ(seen, want);
}

// A long pipeline of short replies and MOVED errors: Redis's writes end wherever they do, and an
// error split across two reads is collected from its first byte and rewritten whole. Every MOVED
// names the owner's listener, in its place.
TEST_F(ClusterMode, MovedSplitAcrossReadsIsRewrittenWhole) {
  const uint16_t a = cluster_->masters()[0];
  std::string mine, theirs;
  for (int i = 0; mine.empty() || theirs.empty(); ++i) {
    std::string k = "s" + std::to_string(i);
    (cluster_->owner(int(faultline::toxics::key_hash_slot(k))) == a ? mine : theirs) = k;
  }
  const int slot = int(faultline::toxics::key_hash_slot(theirs));
  const std::string moved = "-MOVED " + std::to_string(slot) + " 127.0.0.1:" +
                            std::to_string(via(cluster_->owner(slot))) + "\r\n";
  Conn c(via(a));
  ASSERT_EQ(call(c, {"SET", mine, "0123456789"}), "+OK\r\n");
  const int n = 20000;
  std::string req, want;
  for (int i = 0; i < n; ++i) {
    req += cmd({"GET", i % 3 ? theirs : mine});
    want += i % 3 ? moved : "$10\r\n0123456789\r\n";
  }
  ASSERT_TRUE(c.send_all(req));
  const std::string got = c.read_exact(want.size(), 30s);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "first difference at byte "
                           << std::mismatch(got.begin(), got.end(), want.begin()).first - got.begin();
  call(c, {"DEL", mine});
}

TEST_F(ClusterMode, MovedPresetNamesTheListenerOfTheSlotsRealOwner) {
  const uint16_t a = cluster_->masters()[0];
  const std::string proxy = topo_["nodes"][0]["proxy"];
  auto r = http_->request("POST", "/proxies/" + proxy + "/toxics",
                          R"({"name":"m","type":"resp_error","attributes":{"preset":"moved","commands":["GET"]}})");
  ASSERT_TRUE(r.ok() && r.status == 200) << r.body;
  Conn c(fl_.port());
  for (const char* k : {"foo", "bar", "{user1}.x", "zz"}) {
    const int slot = int(faultline::toxics::key_hash_slot(k));
    EXPECT_EQ(call(c, {"GET", k}), "-MOVED " + std::to_string(slot) + " 127.0.0.1:" +
                                       std::to_string(via(cluster_->owner(slot))) + "\r\n")
        << k;
  }
  (void)a;
}

TEST_F(ClusterMode, TopologyFollowsARealFailover) {
  const uint16_t replica = cluster_->replicas()[0];
  const uint16_t old_master = cluster_->master_of(replica);
  ASSERT_TRUE(cluster_->failover(replica)) << cluster_->error();
  // faultline looks again (every 200 ms here): the replica is a master behind the same listener.
  ASSERT_TRUE(wait_until([&] {
    if (!read_topology()) return false;
    for (const auto& n : topo_["nodes"])
      if (listen_port(n["address"].get<std::string>()) == replica) return n["role"] == "master";
    return false;
  }, 15s));
  Conn c(via(old_master));
  const std::string slots = call(c, {"CLUSTER", "SLOTS"});
  expect_no_real_port(slots, "CLUSTER SLOTS after failover");
  EXPECT_NE(slots.find(":" + std::to_string(via(replica)) + "\r\n"), std::string::npos) << slots;
  // Put the roles back for the other tests.
  ASSERT_TRUE(cluster_->failover(old_master)) << cluster_->error();
}

} // namespace
