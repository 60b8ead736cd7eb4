// The profile actions that change the real deployment (issue 21): each shipped profile run by
// faultline --profile in front of a real cluster or Sentinel set-up (tests/integration/support),
// its effect read back from the real nodes (ROLE, CLUSTER NODES/SLOTS, SENTINEL
// GET-MASTER-ADDR-BY-NAME), and a client through faultline that keeps working and only ever
// reads faultline's listeners. One test per action: a deployment takes seconds to set up.

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"

using namespace fltest;
using faultline::control::HttpClient;
using json = nlohmann::json;

namespace {

std::string profile_path(const std::string& name) {
  return std::string(FAULTLINE_SOURCE_DIR) + "/profiles/" + name + ".toml";
}

// faultline in front of a deployment, running a shipped profile.
class Front {
public:
  // refresh_ms: how often faultline looks at the topology by itself (--topology-refresh-ms); a
  // test that long one sees a change only if the action made faultline look again.
  bool start(std::vector<std::string> args, const std::string& profile,
             const std::string& speed = "1", const std::string& refresh_ms = "200") {
    profile_ = profile;
    args.insert(args.end(), {"--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
                             "--topology-refresh-ms", refresh_ms, "--profile",
                             profile_path(profile), "--profile-speed", speed});
    if (!fl_.start_args(args)) return false;
    http_ = std::make_unique<HttpClient>("127.0.0.1", fl_.api_port());
    return read_topology();
  }
  ~Front() { fl_.stop(); }

  // real port -> listener port, from GET /topology.
  bool read_topology() {
    auto r = http_->request("GET", "/topology");
    if (!r.ok() || r.status != 200) return false;
    json topo = json::parse(r.body);
    listener_.clear();
    for (const auto& n : topo["nodes"]) {
      if (n["listen"].is_null()) return false;
      listener_[uint16_t(listen_port(n["address"].get<std::string>()))] =
          uint16_t(listen_port(n["listen"].get<std::string>()));
    }
    return true;
  }
  uint16_t via(uint16_t real) const { return listener_.at(real); }
  // GET /topology's role for the node on `real`.
  std::string role(uint16_t real) {
    auto r = http_->request("GET", "/topology");
    if (!r.ok() || r.status != 200) return {};
    const json topo = json::parse(r.body);
    for (const auto& n : topo["nodes"])
      if (listen_port(n["address"].get<std::string>()) == real) return n["role"].get<std::string>();
    return {};
  }
  bool is_listener(uint16_t port) const {
    for (auto [real, l] : listener_)
      if (l == port) return true;
    return false;
  }

  json report() {
    auto r = http_->request("GET", "/profiles/" + profile_);
    return r.ok() && r.status == 200 ? json::parse(r.body) : json();
  }
  // The action's outcome once it is done ({"done", "ok", "text"}), null on timeout.
  json outcome(Ms timeout, const std::function<void()>& meanwhile = {}) {
    json out;
    wait_until([&] {
      if (meanwhile) meanwhile();
      json rep = report();
      if (!rep.is_object() || rep["steps"].empty()) return false;
      const json& o = rep["steps"][0]["outcome"];
      if (o.is_object() && o["done"] == true) out = o;
      return !out.is_null();
    }, timeout);
    return out;
  }
  // The finished profile's [expect] block, null on timeout.
  json expectations(Ms timeout) {
    json out;
    wait_until([&] {
      json rep = report();
      if (rep.is_object() && rep["state"] == "finished" && rep["expect"]["decided"] == true)
        out = rep["expect"];
      return !out.is_null();
    }, timeout);
    return out;
  }

private:
  Faultline fl_;
  std::unique_ptr<HttpClient> http_;
  std::string profile_;
  std::map<uint16_t, uint16_t> listener_;
};

// "-MOVED 5 127.0.0.1:PORT\r\n" -> PORT (0 for anything else).
uint16_t redirect_port(const std::string& reply, const std::string& kind) {
  if (reply.rfind("-" + kind + " ", 0) != 0) return 0;
  auto colon = reply.rfind(':');
  return uint16_t(std::stoi(reply.substr(colon + 1)));
}

} // namespace

TEST(ProfileActions, ClusterFailoverProfilePromotesAReplica) {
  RedisCluster cluster;
  ASSERT_TRUE(cluster.start()) << cluster.error();
  const uint16_t old = cluster.owner(0);
  const std::string key = key_in_slot(0);
  ASSERT_EQ(query(old, {"SET", key, "before"}).str, "OK");
  Front fl;
  // Faultline looks at the topology by itself only every minute: what it shows after the
  // action it learnt because the action made it look again.
  ASSERT_TRUE(fl.start({"--cluster", cluster.addresses()[0]}, "cluster-failover", "5", "60000"));
  Conn c(fl.via(old));  // a client of the old master, through faultline

  json o = fl.outcome(30s);
  ASSERT_TRUE(o.is_object()) << fl.report().dump(2);
  EXPECT_EQ(o["ok"], true) << o.dump();

  // The real cluster: a replica of the old master is the master of slot 0, the old master its
  // replica, every node agreeing.
  ASSERT_TRUE(cluster.wait_ready()) << cluster.error();
  const uint16_t now = cluster.owner(0);
  EXPECT_NE(now, old);
  EXPECT_EQ(cluster.master_of(old), now);
  EXPECT_EQ(query(now, {"ROLE"}).items.at(0).str, "master");
  EXPECT_EQ(query(old, {"ROLE"}).items.at(0).str, "slave");
  EXPECT_TRUE(wait_until([&] { return fl.role(now) == "master" && fl.role(old) == "replica"; },
                         5s))
      << "GET /topology: " << fl.role(now) << " / " << fl.role(old);

  // The client's connection to the old master is redirected to the new master's listener,
  // and the client that follows it is served there.
  const std::string moved = call(c, {"SET", key, "after"});
  EXPECT_EQ(redirect_port(moved, "MOVED"), fl.via(now)) << moved;
  Conn n(fl.via(now));
  EXPECT_EQ(call(n, {"GET", key}), "$6\r\nbefore\r\n");
  EXPECT_EQ(call(n, {"SET", key, "after"}), "+OK\r\n");

  json e = fl.expectations(30s);
  ASSERT_TRUE(e.is_object()) << fl.report().dump(2);
  EXPECT_EQ(e["failed"], false) << e.dump(2);
}

TEST(ProfileActions, ClusterReshardProfileMovesSlotsAndKeys) {
  RedisCluster cluster;
  ASSERT_TRUE(cluster.start()) << cluster.error();
  const uint16_t src = cluster.owner(0), dst = cluster.owner(16383);
  ASSERT_NE(src, dst);
  // Three keys in each slot 0-99 (hash tags), written to the source.
  std::vector<std::string> keys;
  for (int s = 0; s < 100; ++s) {
    const std::string tag = key_in_slot(s);
    for (int i = 0; i < 3; ++i) {
      keys.push_back("{" + tag + "}." + std::to_string(i));
      ASSERT_EQ(query(src, {"SET", keys.back(), keys.back()}).str, "OK");
    }
  }
  Front fl;
  ASSERT_TRUE(fl.start({"--cluster", cluster.addresses()[0]}, "cluster-reshard"));

  // A client of the source, through faultline, reads the keys while they move: ASK while a
  // slot migrates, then MOVED, both naming the destination's listener.
  Conn c(fl.via(src));
  Conn d(fl.via(dst));
  bool saw_ask = false, saw_moved = false, asking_served = false;
  std::string wrong;
  auto read_all = [&] {
    for (int s = 0; s < 100; ++s) {
      const std::string& k = keys[size_t(s) * 3];
      const std::string r = call(c, {"GET", k});
      if (r == "$" + std::to_string(k.size()) + "\r\n" + k + "\r\n") continue;
      if (uint16_t p = redirect_port(r, "ASK"); p) {
        if (p != fl.via(dst)) wrong = r;
        if (!saw_ask) {
          saw_ask = true;
          // The client that follows ASK: ASKING, then the command at the destination.
          asking_served = call(d, {"ASKING"}) == "+OK\r\n" &&
                          call(d, {"GET", k}) == "$" + std::to_string(k.size()) + "\r\n" + k + "\r\n";
        }
      } else if (uint16_t q = redirect_port(r, "MOVED"); q) {
        if (q != fl.via(dst)) wrong = r;
        if (saw_ask) saw_moved = true;
      } else {
        wrong = r;
      }
    }
  };
  json o = fl.outcome(60s, read_all);
  ASSERT_TRUE(o.is_object()) << fl.report().dump(2);
  EXPECT_EQ(o["ok"], true) << o.dump();
  read_all();
  EXPECT_TRUE(saw_ask);
  EXPECT_TRUE(saw_moved);
  EXPECT_TRUE(asking_served);
  EXPECT_EQ(wrong, "");

  // The real cluster: slots 0-99 are the destination's on every node, with their keys.
  ASSERT_TRUE(cluster.wait_ready()) << cluster.error();
  for (int s : {0, 1, 50, 99}) EXPECT_EQ(cluster.owner(s), dst) << s;
  EXPECT_EQ(cluster.owner(100), src);
  Resp slots = query(src, {"CLUSTER", "SLOTS"});
  bool found = false;
  for (const auto& range : slots.items)
    if (range.items.size() >= 3 && range.items[0].num == 0) {
      found = true;
      EXPECT_EQ(range.items[1].num, 99);
      EXPECT_EQ(range.items[2].items.at(1).num, dst);
    }
  EXPECT_TRUE(found) << "CLUSTER SLOTS of the source has no range starting at slot 0";
  for (const auto& k : keys) EXPECT_EQ(query(dst, {"GET", k}).str, k);
  EXPECT_EQ(query(src, {"CLUSTER", "COUNTKEYSINSLOT", "0"}).num, 0);
  // A client through faultline keeps working at the new owner.
  EXPECT_EQ(call(d, {"SET", keys[0], "after"}), "+OK\r\n");

  json e = fl.expectations(30s);
  ASSERT_TRUE(e.is_object()) << fl.report().dump(2);
  EXPECT_EQ(e["failed"], false) << e.dump(2);
}

TEST(ProfileActions, SentinelFailoverProfileChangesTheMaster) {
  SentinelDeployment s;
  ASSERT_TRUE(s.start()) << s.error();
  const uint16_t old = s.master();
  ASSERT_NE(old, 0);
  std::vector<std::string> args;
  for (auto p : s.sentinel_ports()) args.insert(args.end(), {"--sentinel", "127.0.0.1:" + std::to_string(p)});
  args.insert(args.end(), {"--master", s.master_name()});
  {
    Conn w(old);
    ASSERT_EQ(call(w, {"SET", "k", "before"}), "+OK\r\n");
    ASSERT_EQ(call(w, {"WAIT", "2", "5000"}), ":2\r\n");
  }
  Front fl;
  ASSERT_TRUE(fl.start(args, "sentinel-failover", "4", "60000"));
  const uint16_t sentinel = fl.via(s.sentinel_ports()[0]);

  json o = fl.outcome(60s);
  ASSERT_TRUE(o.is_object()) << fl.report().dump(2);
  EXPECT_EQ(o["ok"], true) << o.dump();

  // The real sentinels agree on a new master, which says it is one.
  uint16_t now = 0;
  ASSERT_TRUE(wait_until([&] {
    now = s.master();
    return now != 0 && now != old;
  }, 30s));
  EXPECT_EQ(query(now, {"ROLE"}).items.at(0).str, "master");
  EXPECT_TRUE(wait_until([&] { return fl.role(now) == "master"; }, 5s))
      << "GET /topology: " << fl.role(now);

  // A client that asks a sentinel through faultline is told the new master's listener, and
  // is served there.
  uint16_t told = 0;
  ASSERT_TRUE(wait_until([&] {
    Conn c(sentinel);
    Resp r = parse_resp(call(c, {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.master_name()}));
    if (r.items.size() != 2) return false;
    told = uint16_t(std::stoi(r.items[1].str));
    return fl.read_topology() && fl.is_listener(told) && told == fl.via(now);
  }, 15s)) << "told " << told;
  Conn m(told);
  EXPECT_EQ(call(m, {"GET", "k"}), "$6\r\nbefore\r\n");
  EXPECT_EQ(call(m, {"SET", "k", "after"}), "+OK\r\n");
}

// The sentinel_stale toxic (issue 21's stale sentinel): on one sentinel's proxy, that sentinel
// keeps naming the master it named when the toxic was added, through a real failover, in every
// form a client asks (GET-MASTER-ADDR-BY-NAME in RESP2 and RESP3, SENTINEL MASTER, SENTINEL
// MASTERS), while the other sentinels name the new master; removed, it names the new one.
TEST(SentinelFaults, StaleSentinelKeepsNamingTheOldMaster) {
  SentinelDeployment s;
  ASSERT_TRUE(s.start()) << s.error();
  const uint16_t old = s.master();
  ASSERT_NE(old, 0);
  const auto sentinels = s.sentinel_ports();
  std::vector<std::string> args;
  for (auto p : sentinels) args.insert(args.end(), {"--sentinel", "127.0.0.1:" + std::to_string(p)});
  args.insert(args.end(), {"--master", s.master_name(), "--listen", "127.0.0.1:0", "--api",
                           "127.0.0.1:0", "--topology-refresh-ms", "200"});
  Faultline fl;
  ASSERT_TRUE(fl.start_args(args));
  HttpClient api("127.0.0.1", fl.api_port());

  std::map<uint16_t, uint16_t> via;  // real port -> listener port
  auto read_topology = [&] {
    auto r = api.request("GET", "/topology");
    if (!r.ok() || r.status != 200) return false;
    via.clear();
    const json topo = json::parse(r.body);
    for (const auto& n : topo["nodes"]) {
      if (n["listen"].is_null()) return false;
      via[listen_port(n["address"].get<std::string>())] =
          listen_port(n["listen"].get<std::string>());
    }
    return true;
  };
  ASSERT_TRUE(read_topology());
  const std::string stale = "sentinel-127.0.0.1-" + std::to_string(sentinels[0]);
  const std::string toxic = R"({"name":"stale","type":"sentinel_stale"})";

  // Only a sentinel's proxy takes it, with an error that says why.
  auto bad = api.request("POST", "/proxies/node-127.0.0.1-" + std::to_string(old) + "/toxics",
                         toxic);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("sentinel_stale"), std::string::npos) << bad.body;
  auto added = api.request("POST", "/proxies/" + stale + "/toxics", toxic);
  ASSERT_TRUE(added.ok());
  ASSERT_EQ(added.status, 200) << added.body;

  const uint16_t now = s.failover(SentinelDeployment::Settle::Sentinels);
  ASSERT_NE(now, 0);
  ASSERT_NE(now, old);

  auto addr_port = [&](uint16_t sentinel_listener, bool resp3 = false) -> uint16_t {
    Conn c(sentinel_listener);
    if (resp3) call(c, {"HELLO", "3"});
    Resp r = parse_resp(call(c, {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.master_name()}));
    return r.items.size() == 2 ? uint16_t(std::stoi(r.items[1].str)) : 0;
  };
  // A sentinel that is not stale names the new master's listener (once faultline looked).
  ASSERT_TRUE(wait_until([&] {
    return read_topology() && via.count(now) && addr_port(via.at(sentinels[1])) == via.at(now);
  }, 15s)) << "old " << old << " now " << now << " sentinel 1 names "
           << addr_port(via[sentinels[1]]) << " sentinel 0 names "
           << addr_port(via[sentinels[0]]) << "; listeners: old " << via[old] << " now "
           << via[now] << "\n" << api.request("GET", "/topology").body;

  auto field = [](const Resp& flat, const std::string& name) {
    for (size_t i = 0; i + 1 < flat.items.size(); i += 2)
      if (flat.items[i].str == name) return flat.items[i + 1].str;
    return std::string();
  };
  // The real sentinel has finished the failover: SENTINEL MASTER names the new master only
  // then (GET-MASTER-ADDR-BY-NAME names the promoted replica as soon as the other replicas are
  // being reconfigured).
  ASSERT_TRUE(wait_until([&] {
    return field(query(sentinels[0], {"SENTINEL", "MASTER", s.master_name()}), "port") ==
           std::to_string(now);
  }, 30s));

  // The stale one still names the old master's listener, in every form.
  EXPECT_EQ(addr_port(via.at(sentinels[0])), via.at(old));
  EXPECT_EQ(addr_port(via.at(sentinels[0]), true), via.at(old));
  Resp master = query(via.at(sentinels[0]), {"SENTINEL", "MASTER", s.master_name()});
  EXPECT_EQ(field(master, "port"), std::to_string(via.at(old)));
  Resp masters = query(via.at(sentinels[0]), {"SENTINEL", "MASTERS"});
  ASSERT_EQ(masters.items.size(), 1u);
  EXPECT_EQ(field(masters.items[0], "port"), std::to_string(via.at(old)));
  // A client that believed the stale sentinel writes to the old master: once a sentinel has
  // demoted it (when it next reads the old master's INFO), it meets READONLY.
  std::string reply;
  EXPECT_TRUE(wait_until([&] {
    Conn w(via.at(old));
    reply = call(w, {"SET", "k", "v"});
    return reply.rfind("-READONLY", 0) == 0;
  }, 30s)) << reply;

  // Removed: the sentinel's own answer again.
  auto del = api.request("DELETE", "/proxies/" + stale + "/toxics/stale");
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del.status, 204);
  EXPECT_EQ(addr_port(via.at(sentinels[0])), via.at(now));
  Resp again = query(via.at(sentinels[0]), {"SENTINEL", "MASTER", s.master_name()});
  EXPECT_EQ(field(again, "port"), std::to_string(via.at(now)));
}
