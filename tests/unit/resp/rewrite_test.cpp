#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "resp/parser.h"
#include "resp/rewrite.h"
#include "resp/value.h"

namespace faultline::resp {
namespace {

// Replies captured from real Redis 7.0 (tests/unit/resp/data/README.md): a cluster on
// 127.0.0.1:7301-7306 (host names node-<port>.example), a Sentinel set with data nodes on
// 7311-7313 (one monitored as localhost) and sentinels on 27321-27323.
const std::filesystem::path kData =
    std::filesystem::path(FAULTLINE_SOURCE_DIR) / "tests/unit/resp/data";

std::string load(const std::string& name) {
  std::ifstream in(kData / name, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  EXPECT_FALSE(s.str().empty()) << name;
  return s.str();
}

const uint16_t kRealPorts[] = {7301, 7302, 7303, 7304, 7305, 7306, 7311,
                               7312, 7313, 27321, 27322, 27323};
const char* const kRealHosts[] = {"127.0.0.1", "localhost", "node-73"};
const std::string kListenerHost = "192.0.2.10";

// Every real node's listener: 192.0.2.10, port 41000 + the node's last two digits (7303 ->
// 41003, 27322 -> 41022). Knows a node by its IP, its host name, "" (the host the client is
// connected to) and "?".
class TestMap : public AddressMap {
public:
  std::optional<HostPort> listener_for(std::string_view host, uint16_t port) const override {
    ++calls;
    bool known = false;
    for (uint16_t p : kRealPorts) known |= p == port;
    if (!known) return std::nullopt;
    const std::string name = "node-" + std::to_string(port) + ".example";
    if (host != "127.0.0.1" && host != "localhost" && host != "" && host != "?" && host != name)
      return std::nullopt;
    if (only && port != only) return std::nullopt;
    return HostPort{kListenerHost, uint16_t(41000 + port % 100)};
  }
  uint16_t only = 0;  // when set, the only port it maps
  mutable int calls = 0;
};

// Maps nothing.
class EmptyMap : public AddressMap {
public:
  std::optional<HostPort> listener_for(std::string_view, uint16_t) const override {
    return std::nullopt;
  }
};

bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Where s names a real node: a real host, or a real port standing alone (not inside a longer
// number or a node id: the cluster bus port 17301 is no data port).
std::string real_address_in(std::string_view s) {
  for (const char* h : kRealHosts)
    if (s.find(h) != std::string_view::npos) return h;
  for (uint16_t p : kRealPorts) {
    const std::string ps = std::to_string(p);
    for (size_t at = s.find(ps); at != std::string_view::npos; at = s.find(ps, at + 1)) {
      const bool before = at > 0 && is_alnum(s[at - 1]);
      const bool after = at + ps.size() < s.size() && is_alnum(s[at + ps.size()]);
      if (!before && !after) return ps;
    }
  }
  return {};
}

// Types and element counts, recursively.
std::string shape(const Value& v) {
  std::string s = type_name(v.type);
  if (v.is_null) s += "(null)";
  if (v.has_attribute) s += "|" + std::to_string(v.attribute.size());
  if (!v.elems.empty()) {
    s += "[";
    for (const Value& e : v.elems) s += shape(e) + ",";
    s += "]";
  }
  return s;
}

std::vector<std::string> lines(std::string_view s) {
  std::vector<std::string> out;
  for (size_t at = 0; at < s.size();) {
    size_t nl = s.find('\n', at);
    nl = nl == std::string_view::npos ? s.size() : nl + 1;
    out.emplace_back(s.substr(at, nl - at));
    at = nl;
  }
  return out;
}

// Leaf by leaf (line by line in texts): what named no real address is byte-identical, what did
// now names none.
void expect_same_but_addresses(const Value& a, const Value& b, const std::string& where) {
  ASSERT_EQ(a.elems.size(), b.elems.size()) << where;
  for (size_t i = 0; i < a.elems.size(); ++i)
    expect_same_but_addresses(a.elems[i], b.elems[i], where + "/" + std::to_string(i));
  if (!a.elems.empty()) return;
  const std::string ea = encode(a), eb = encode(b);
  if (real_address_in(ea).empty()) {
    EXPECT_EQ(ea, eb) << where;
    return;
  }
  if (const std::string* ta = a.text()) {
    auto la = lines(*ta), lb = lines(*b.text());
    ASSERT_EQ(la.size(), lb.size()) << where;
    for (size_t i = 0; i < la.size(); ++i) {
      if (real_address_in(la[i]).empty())
        EXPECT_EQ(la[i], lb[i]) << where << " line " << i;
      else
        EXPECT_NE(la[i], lb[i]) << where << " line " << i;
    }
  }
}

// The checks every rewritten capture passes: one frame the ReplyParser takes whole, the same
// shape, the listener's addresses and no real one, everything else as it was.
void expect_good_rewrite(const std::string& in, const std::string& out, const std::string& what,
                         bool same_shape = true) {
  size_t used = 0;
  auto a = decode(in);
  auto b = decode(out, &used);
  ASSERT_TRUE(a) << what;
  ASSERT_TRUE(b) << what << ": the output does not decode";
  EXPECT_EQ(used, out.size()) << what;
  EXPECT_EQ(a->type, b->type) << what;
  if (same_shape) {
    EXPECT_EQ(shape(*a), shape(*b)) << what;
  }
  EXPECT_EQ(real_address_in(out), "") << what << ": a real address is left:\n" << out;
  EXPECT_NE(out.find(kListenerHost), std::string::npos) << what;
  if (same_shape) {
    expect_same_but_addresses(*a, *b, what);
  }

  ReplyParser p;
  std::vector<std::pair<uint64_t, uint64_t>> frames;
  p.feed(out, [&](const ReplyFrame& f) { frames.emplace_back(f.start, f.end); });
  EXPECT_FALSE(p.failed()) << what;
  ASSERT_EQ(frames.size(), 1u) << what;
  EXPECT_EQ(frames[0].first, 0u);
  EXPECT_EQ(frames[0].second, out.size()) << what;
}

struct Case {
  const char* file;  // without .resp2 / .resp3
  RewriteKind kind;
};

const Case kReplies[] = {
    {"cluster_slots_ip", RewriteKind::ClusterSlots},
    {"cluster_slots_ip_hostname", RewriteKind::ClusterSlots},
    {"cluster_slots_hostname", RewriteKind::ClusterSlots},
    {"cluster_slots_hostname_missing", RewriteKind::ClusterSlots},
    {"cluster_slots_unknown", RewriteKind::ClusterSlots},
    {"cluster_shards_ip", RewriteKind::ClusterShards},
    {"cluster_shards_ip_hostname", RewriteKind::ClusterShards},
    {"cluster_shards_hostname", RewriteKind::ClusterShards},
    {"cluster_shards_hostname_missing", RewriteKind::ClusterShards},
    {"cluster_shards_unknown", RewriteKind::ClusterShards},
    {"cluster_nodes_ip", RewriteKind::ClusterNodes},
    {"cluster_nodes_ip_hostname", RewriteKind::ClusterNodes},
    {"cluster_nodes_hostname", RewriteKind::ClusterNodes},
    {"cluster_nodes_hostname_missing", RewriteKind::ClusterNodes},
    {"cluster_nodes_unknown", RewriteKind::ClusterNodes},
    {"cluster_replicas_ip", RewriteKind::ClusterReplicas},
    {"cluster_replicas_ip_hostname", RewriteKind::ClusterReplicas},
    {"cluster_replicas_hostname", RewriteKind::ClusterReplicas},
    {"cluster_replicas_unknown", RewriteKind::ClusterReplicas},
    {"cluster_slaves_ip", RewriteKind::ClusterReplicas},
    {"role_cluster_master", RewriteKind::Role},
    {"role_cluster_replica", RewriteKind::Role},
    {"role_master", RewriteKind::Role},
    {"role_replica", RewriteKind::Role},
    {"info_replication_cluster_master", RewriteKind::Info},
    {"info_replication_cluster_replica", RewriteKind::Info},
    {"info_cluster_replica", RewriteKind::Info},
    {"info_all_cluster_master", RewriteKind::Info},
    {"info_replication_master", RewriteKind::Info},
    {"info_replication_replica", RewriteKind::Info},
    {"info_sentinel", RewriteKind::Info},
    {"info_sentinel_section", RewriteKind::Info},
    {"sentinel_get_master_addr", RewriteKind::SentinelMasterAddr},
    {"sentinel_get_master_addr_hostname", RewriteKind::SentinelMasterAddr},
    {"sentinel_master", RewriteKind::SentinelMaster},
    {"sentinel_master_hostname", RewriteKind::SentinelMaster},
    {"sentinel_masters", RewriteKind::SentinelMasters},
    {"sentinel_replicas", RewriteKind::SentinelReplicas},
    {"sentinel_replicas_hostname", RewriteKind::SentinelReplicas},
    {"sentinel_slaves", RewriteKind::SentinelReplicas},
    {"sentinel_sentinels", RewriteKind::SentinelSentinels},
};

TEST(Rewrite, EveryCapturedReplyNamesOnlyListeners) {
  TestMap m;
  for (const Case& c : kReplies) {
    for (const char* proto : {".resp2", ".resp3"}) {
      const std::string what = std::string(c.file) + proto;
      const std::string in = load(what);
      ASSERT_NE(real_address_in(in), "") << what << ": the capture names no node";
      std::string out = "kept:";
      ASSERT_TRUE(rewrite_reply(c.kind, in, m, out)) << what;
      ASSERT_EQ(out.substr(0, 5), "kept:") << what << ": appends";
      expect_good_rewrite(in, out.substr(5), what);
    }
  }
}

// The forms Redis writes, checked field by field on a few captures.
TEST(Rewrite, ClusterSlotsForms) {
  TestMap m;
  std::string out;
  // Host-name endpoint, its "ip" in the metadata; RESP3 keeps the map.
  ASSERT_TRUE(rewrite_reply(RewriteKind::ClusterSlots, load("cluster_slots_hostname.resp3"), m,
                            out));
  auto v = decode(out);
  ASSERT_TRUE(v);
  const Value& node = v->elems[0].elems[2];
  EXPECT_EQ(node.elems[0].str, kListenerHost);
  EXPECT_EQ(node.elems[1].integer, 41001);
  EXPECT_EQ(node.elems[2].str, "c6d2bbc324f400940ee1d6fa0b176ffd06141e70");
  EXPECT_EQ(node.elems[3].type, Type::Map);
  EXPECT_EQ(encode(node.elems[3]), "%1\r\n$2\r\nip\r\n$10\r\n192.0.2.10\r\n");
  // "?" (host name preferred, none set) stays "?": only the port changes.
  out.clear();
  ASSERT_TRUE(rewrite_reply(RewriteKind::ClusterSlots,
                            load("cluster_slots_hostname_missing.resp2"), m, out));
  EXPECT_NE(out.find("$1\r\n?\r\n:41002\r\n"), std::string::npos) << out;
  // unknown-endpoint: a null endpoint stays null (RESP2 $-1, RESP3 _).
  out.clear();
  ASSERT_TRUE(
      rewrite_reply(RewriteKind::ClusterSlots, load("cluster_slots_unknown.resp3"), m, out));
  EXPECT_NE(out.find("*4\r\n_\r\n:41001\r\n"), std::string::npos) << out;
  out.clear();
  ASSERT_TRUE(
      rewrite_reply(RewriteKind::ClusterSlots, load("cluster_slots_unknown.resp2"), m, out));
  EXPECT_NE(out.find("*4\r\n$-1\r\n:41001\r\n"), std::string::npos) << out;
}

TEST(Rewrite, ClusterNodesLines) {
  TestMap m;
  std::string out;
  ASSERT_TRUE(rewrite_reply(RewriteKind::ClusterNodes, load("cluster_nodes_ip_hostname.resp3"),
                            m, out));
  auto v = decode(out);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type, Type::Verbatim);
  EXPECT_EQ(v->format, "txt");
  // Address and host name to the listener; the bus port as it was.
  EXPECT_NE(v->str.find(" 192.0.2.10:41003@17303,192.0.2.10 master "), std::string::npos)
      << v->str;
  // Synthetic: IPv6 as Redis writes it, a 7.2 aux field, no host name.
  class V6 : public AddressMap {
  public:
    std::optional<HostPort> listener_for(std::string_view h, uint16_t p) const override {
      if (h == "::1" && p == 7001) return HostPort{"::1", 42001};
      return std::nullopt;
    }
  } v6;
  const std::string line = "abc ::1:7001@17001,,shard-id=x master - 0 0 1 connected 0-5460\n";
  const std::string text = "$" + std::to_string(line.size()) + "\r\n" + line + "\r\n";
  out.clear();
  ASSERT_TRUE(rewrite_reply(RewriteKind::ClusterNodes, text, v6, out));
  EXPECT_NE(out.find("abc ::1:42001@17001,,shard-id=x master"), std::string::npos) << out;
}

TEST(Rewrite, ClusterShardsDropsTlsPort) {
  TestMap m;
  const std::string in = "*1\r\n%2\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n%4\r\n"
                         "$2\r\nid\r\n$1\r\nx\r\n$4\r\nport\r\n:7301\r\n$8\r\ntls-port\r\n"
                         ":17401\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n";
  std::string out;
  ASSERT_TRUE(rewrite_reply(RewriteKind::ClusterShards, in, m, out));
  EXPECT_EQ(out, "*1\r\n%2\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n%3\r\n"
                 "$2\r\nid\r\n$1\r\nx\r\n$4\r\nport\r\n:41001\r\n"
                 "$2\r\nip\r\n$10\r\n192.0.2.10\r\n");
}

TEST(Rewrite, SentinelAndRoleFields) {
  TestMap m;
  std::string out;
  ASSERT_TRUE(rewrite_reply(RewriteKind::SentinelMasterAddr,
                            load("sentinel_get_master_addr.resp2"), m, out));
  EXPECT_EQ(out, "*2\r\n$10\r\n192.0.2.10\r\n$5\r\n41011\r\n");
  out.clear();
  // A replica's name is its address; its master's address changes too.
  ASSERT_TRUE(rewrite_reply(RewriteKind::SentinelReplicas, load("sentinel_replicas.resp3"), m,
                            out));
  auto v = decode(out);
  ASSERT_TRUE(v);
  const Value& r = v->elems[0];
  EXPECT_EQ(r.type, Type::Map);
  EXPECT_EQ(r.elems[1].str, "192.0.2.10:41012");
  EXPECT_NE(
      out.find("$11\r\nmaster-host\r\n$10\r\n192.0.2.10\r\n$11\r\nmaster-port\r\n$5\r\n41011"),
      std::string::npos)
      << out;
  // ROLE: a master's replicas' ports are strings, a replica's master port an integer.
  out.clear();
  ASSERT_TRUE(rewrite_reply(RewriteKind::Role, load("role_master.resp2"), m, out));
  EXPECT_NE(out.find("*3\r\n$10\r\n192.0.2.10\r\n$5\r\n41012\r\n$4\r\n1234\r\n"),
            std::string::npos)
      << out;
  out.clear();
  ASSERT_TRUE(rewrite_reply(RewriteKind::Role, load("role_replica.resp3"), m, out));
  EXPECT_EQ(out, "*5\r\n$5\r\nslave\r\n$10\r\n192.0.2.10\r\n:41011\r\n$9\r\nconnected\r\n"
                 ":1367\r\n");
}

TEST(Rewrite, InfoLines) {
  TestMap m;
  std::string out;
  ASSERT_TRUE(
      rewrite_reply(RewriteKind::Info, load("info_replication_cluster_replica.resp3"), m, out));
  auto v = decode(out);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->type, Type::Verbatim);
  EXPECT_NE(v->str.find("\r\nmaster_host:192.0.2.10\r\nmaster_port:41001\r\n"),
            std::string::npos);
  out.clear();
  ASSERT_TRUE(rewrite_reply(RewriteKind::Info, load("info_replication_master.resp2"), m, out));
  EXPECT_NE(out.find("\r\nslave1:ip=192.0.2.10,port=41013,state=online,"), std::string::npos)
      << out;
  out.clear();
  ASSERT_TRUE(rewrite_reply(RewriteKind::Info, load("info_sentinel_section.resp2"), m, out));
  EXPECT_NE(out.find(",address=192.0.2.10:41011,"), std::string::npos) << out;
  out.clear();
  ASSERT_TRUE(rewrite_reply(RewriteKind::Info, load("info_all_cluster_master.resp3"), m, out));
  EXPECT_NE(out.find("\r\ntcp_port:41001\r\n"), std::string::npos);
}

TEST(Rewrite, NothingToRewrite) {
  TestMap m;
  std::string out = "untouched";
  // No address in them (HELLO has none either, so it needs no kind).
  EXPECT_EQ(real_address_in(load("hello_sentinel.resp2")), "");
  EXPECT_FALSE(rewrite_reply(RewriteKind::Role, load("role_sentinel.resp2"), m, out));
  EXPECT_FALSE(rewrite_reply(RewriteKind::SentinelMasterAddr,
                             load("sentinel_get_master_addr_unknown.resp2"), m, out));
  EXPECT_FALSE(rewrite_reply(RewriteKind::SentinelMasterAddr,
                             load("sentinel_get_master_addr_unknown.resp3"), m, out));
  // Not the shape the kind expects.
  EXPECT_FALSE(rewrite_reply(RewriteKind::ClusterSlots, "-ERR This instance has cluster "
                                                        "support disabled\r\n", m, out));
  EXPECT_FALSE(rewrite_reply(RewriteKind::ClusterSlots, load("cluster_nodes_ip.resp2"), m, out));
  EXPECT_FALSE(rewrite_reply(RewriteKind::Info, ":1\r\n", m, out));
  EXPECT_FALSE(rewrite_reply(RewriteKind::None, load("cluster_slots_ip.resp2"), m, out));
  // Not one whole frame.
  const std::string slots = load("cluster_slots_ip.resp2");
  EXPECT_FALSE(rewrite_reply(RewriteKind::ClusterSlots, slots + "+OK\r\n", m, out));
  EXPECT_FALSE(rewrite_reply(RewriteKind::ClusterSlots, slots.substr(0, slots.size() - 1), m,
                             out));
  // A map that maps nothing.
  EmptyMap none;
  for (const Case& c : kReplies)
    EXPECT_FALSE(rewrite_reply(c.kind, load(std::string(c.file) + ".resp2"), none, out))
        << c.file;
  EXPECT_EQ(out, "untouched");
}

// An address the map does not know stays; the others still change.
TEST(Rewrite, UnmappedAddressesStay) {
  TestMap m;
  m.only = 7302;
  std::string out;
  ASSERT_TRUE(rewrite_reply(RewriteKind::ClusterSlots, load("cluster_slots_ip.resp3"), m, out));
  EXPECT_NE(out.find("$9\r\n127.0.0.1\r\n:7301\r\n"), std::string::npos);
  EXPECT_NE(out.find("$10\r\n192.0.2.10\r\n:41002\r\n"), std::string::npos);
  EXPECT_EQ(out.find(":7302\r\n"), std::string::npos);
}

TEST(Rewrite, Redirects) {
  TestMap m;
  const std::pair<const char*, const char*> cases[] = {
      {"moved_ip", "-MOVED 12182 192.0.2.10:41003\r\n"},
      {"moved_ip_hostname_c", "-MOVED 3300 192.0.2.10:41001\r\n"},
      {"moved_hostname", "-MOVED 12182 192.0.2.10:41003\r\n"},
      {"moved_hostname_c", "-MOVED 3300 192.0.2.10:41001\r\n"},
      {"moved_hostname_missing", "-MOVED 7365 ?:41002\r\n"},
      {"moved_unknown", "-MOVED 12182 :41003\r\n"},
      {"moved_unknown_c", "-MOVED 3300 :41001\r\n"},
      {"ask_ip", "-ASK 12182 192.0.2.10:41002\r\n"},
      {"ask_hostname", "-ASK 12182 192.0.2.10:41002\r\n"},
      {"ask_unknown", "-ASK 12182 :41002\r\n"},
  };
  for (const auto& [file, want] : cases) {
    std::string out;
    ASSERT_TRUE(rewrite_redirect(load(std::string(file) + ".resp2"), m, out)) << file;
    EXPECT_EQ(out, want) << file;
  }
  // IPv6, as Redis writes it and in brackets; a blob error.
  class V6 : public AddressMap {
  public:
    std::optional<HostPort> listener_for(std::string_view h, uint16_t p) const override {
      if (h == "::1" && p == 7002) return HostPort{"::1", 42002};
      if (h == "127.0.0.1" && p == 7002) return HostPort{"127.0.0.1", 42002};
      return std::nullopt;
    }
  } v6;
  std::string out;
  ASSERT_TRUE(rewrite_redirect("-MOVED 3999 ::1:7002\r\n", v6, out));
  EXPECT_EQ(out, "-MOVED 3999 ::1:42002\r\n");
  out.clear();
  ASSERT_TRUE(rewrite_redirect("-ASK 3999 [::1]:7002\r\n", v6, out));
  EXPECT_EQ(out, "-ASK 3999 [::1]:42002\r\n");
  out.clear();
  ASSERT_TRUE(rewrite_redirect("!25\r\nMOVED 3999 127.0.0.1:7002\r\n", v6, out));
  EXPECT_EQ(out, "!26\r\nMOVED 3999 127.0.0.1:42002\r\n");
  // Not redirects, or to nowhere the map knows: untouched.
  out = "untouched";
  for (const char* s : {"-ERR unknown command\r\n", "-MOVED\r\n", "-MOVED 3999\r\n",
                        "-MOVED 3999 127.0.0.1\r\n", "-MOVED 3999 127.0.0.1:99999\r\n",
                        "-MOVED 3999 10.0.0.1:7002\r\n", "+MOVED 3999 127.0.0.1:7002\r\n",
                        "-MOVED 3999 127.0.0.1:7002\r\n+OK\r\n", "-LOADING 127.0.0.1:7002\r\n"})
    EXPECT_FALSE(rewrite_redirect(s, v6, out)) << s;
  EXPECT_EQ(out, "untouched");
}

// Every message of the captured streams: the ones with addresses name only listeners.
TEST(Rewrite, SentinelEventStreams) {
  TestMap m;
  for (const char* file : {"sentinel_events_psub2.resp2", "sentinel_events_psub3.resp3",
                           "sentinel_events_sub2.resp2", "sentinel_events_sub3.resp3"}) {
    const std::string s = load(file);
    std::map<std::string, int> rewritten;
    size_t at = 0;
    while (at < s.size()) {
      size_t used = 0;
      auto v = decode(std::string_view(s).substr(at), &used);
      ASSERT_TRUE(v) << file << " at " << at;
      const std::string frame = s.substr(at, used);
      at += used;
      std::string out;
      const bool changed = rewrite_sentinel_event(frame, m, out);
      const std::string& kind = *v->elems[0].text();
      if (real_address_in(frame).empty()) {
        EXPECT_FALSE(changed) << file << ": " << frame;
        continue;
      }
      ASSERT_TRUE(changed) << file << ": " << frame;
      expect_good_rewrite(frame, out, file);
      EXPECT_EQ(decode(out)->type, v->type);  // a push stays a push
      ++rewritten[*v->elems[kind == "pmessage" ? 2 : 1].text()];
    }
    EXPECT_EQ(rewritten["+switch-master"], 1) << file;
    EXPECT_GE(rewritten["+slave"], 2) << file;
    EXPECT_GE(rewritten["+sdown"], 1) << file;
    if (std::string(file).find("psub") != std::string::npos) {
      EXPECT_GE(rewritten["+promoted-slave"], 1) << file;
      EXPECT_GE(rewritten["+failover-end"], 1) << file;
      EXPECT_GE(rewritten["+reboot"], 1) << file;
    }
  }
}

std::string message(std::string_view channel, std::string_view payload) {
  auto bulk = [](std::string_view s) {
    return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
  };
  return "*3\r\n" + bulk("message") + bulk(channel) + bulk(payload);
}

TEST(Rewrite, SentinelEventPayloads) {
  TestMap m;
  const std::tuple<const char*, const char*, const char*> cases[] = {
      {"+switch-master", "mymaster 127.0.0.1 7311 127.0.0.1 7312",
       "mymaster 192.0.2.10 41011 192.0.2.10 41012"},
      {"+slave", "slave 127.0.0.1:7313 127.0.0.1 7313 @ mymaster 127.0.0.1 7312",
       "slave 192.0.2.10:41013 192.0.2.10 41013 @ mymaster 192.0.2.10 41012"},
      {"+odown", "master mymaster 127.0.0.1 7311 #quorum 2/2",
       "master mymaster 192.0.2.10 41011 #quorum 2/2"},
      {"+sentinel-address-switch", "master mymaster 127.0.0.1 7311 ip 127.0.0.1 port 27322 for "
                                   "b5e9014adffbd79f487b031def83aef2c8e20b4f",
       "master mymaster 192.0.2.10 41011 ip 192.0.2.10 port 41022 for "
       "b5e9014adffbd79f487b031def83aef2c8e20b4f"},
      {"-dup-sentinel", "master mymaster 127.0.0.1 7311 #duplicate of 127.0.0.1:27323 or abc",
       "master mymaster 192.0.2.10 41011 #duplicate of 192.0.2.10:41023 or abc"},
      {"+role-change", "slave 127.0.0.1:7312 127.0.0.1 7312 @ mymaster 127.0.0.1 7311 new "
                       "reported role is master",
       "slave 192.0.2.10:41012 192.0.2.10 41012 @ mymaster 192.0.2.10 41011 new reported role "
       "is master"},
      {"__sentinel__:hello", "127.0.0.1,27321,736ec2df,1,mymaster,127.0.0.1,7311,1",
       "192.0.2.10,41021,736ec2df,1,mymaster,192.0.2.10,41011,1"},
  };
  for (const auto& [channel, payload, want] : cases) {
    std::string out;
    ASSERT_TRUE(rewrite_sentinel_event(message(channel, payload), m, out)) << channel;
    EXPECT_EQ(out, message(channel, want)) << channel;
  }
  std::string out = "untouched";
  for (const std::string& s :
       {message("+new-epoch", "7311"), message("+tilt", "#tilt mode entered"),
        message("news", "slave 127.0.0.1:7313 127.0.0.1 7313"),
        message("+sdown", "master mymaster 10.1.1.1 7311"), std::string("+OK\r\n"),
        std::string("*3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:1\r\n")})
    EXPECT_FALSE(rewrite_sentinel_event(s, m, out)) << s;
  EXPECT_EQ(out, "untouched");
}

// Damaged replies (bytes changed, cut, cut into) are refused or rewritten into valid RESP, never
// read past their end (the ASan build checks that).
TEST(Rewrite, DamagedRepliesAreSafe) {
  TestMap m;
  uint64_t seed = 21;
  auto next = [&] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return uint32_t(seed >> 33);
  };
  const char* const files[] = {"cluster_slots_unknown.resp3", "cluster_shards_hostname.resp2",
                               "cluster_nodes_ip_hostname.resp3", "sentinel_replicas.resp3",
                               "info_replication_master.resp2", "role_master.resp2",
                               "moved_hostname.resp2"};
  const char* const chars = "0123456789:*$%=_-+@,?\r\n ";
  int rewritten = 0;
  for (const char* file : files) {
    const std::string orig = load(file);
    for (int i = 0; i < 300; ++i) {
      std::string in = orig;
      const size_t at = next() % in.size();
      switch (next() % 3) {
      case 0: in[at] = chars[next() % 24]; break;
      case 1: in.resize(at); break;
      default: in.erase(at, 1 + next() % 8); break;
      }
      // A heap copy of exactly the frame's size, so that a read past it is caught.
      const std::unique_ptr<char[]> buf(new char[in.size() + 1]);
      std::memcpy(buf.get(), in.data(), in.size());
      const std::string_view frame(buf.get(), in.size());
      bool any = false;
      for (int k = 0; k <= int(RewriteKind::Info); ++k) {
        std::string out;
        const bool changed = rewrite_reply(RewriteKind(k), frame, m, out);
        EXPECT_TRUE(!changed || decode(out)) << file << " #" << i;
        any |= changed;
      }
      std::string out;
      bool changed = rewrite_redirect(frame, m, out);
      EXPECT_TRUE(!changed || decode(out)) << file << " #" << i;
      out.clear();
      changed = rewrite_sentinel_event(frame, m, out);
      EXPECT_TRUE(!changed || decode(out)) << file << " #" << i;
      rewritten += any;
    }
  }
  EXPECT_GT(rewritten, 100);  // most damage leaves a reply that still decodes
}

TEST(Rewrite, KindOfRequest) {
  EXPECT_EQ(rewrite_kind("cluster", "slots", ""), RewriteKind::ClusterSlots);
  EXPECT_EQ(rewrite_kind("CLUSTER", "Shards", ""), RewriteKind::ClusterShards);
  EXPECT_EQ(rewrite_kind("cluster", "NODES", ""), RewriteKind::ClusterNodes);
  EXPECT_EQ(rewrite_kind("cluster", "replicas", "abc"), RewriteKind::ClusterReplicas);
  EXPECT_EQ(rewrite_kind("Cluster", "SLAVES", "abc"), RewriteKind::ClusterReplicas);
  EXPECT_EQ(rewrite_kind("cluster", "info", ""), RewriteKind::None);
  EXPECT_EQ(rewrite_kind("cluster", "", ""), RewriteKind::None);
  EXPECT_EQ(rewrite_kind("sentinel", "get-master-addr-by-name", "mymaster"),
            RewriteKind::SentinelMasterAddr);
  EXPECT_EQ(rewrite_kind("SENTINEL", "MASTER", "mymaster"), RewriteKind::SentinelMaster);
  EXPECT_EQ(rewrite_kind("sentinel", "masters", ""), RewriteKind::SentinelMasters);
  EXPECT_EQ(rewrite_kind("sentinel", "replicas", "m"), RewriteKind::SentinelReplicas);
  EXPECT_EQ(rewrite_kind("sentinel", "slaves", "m"), RewriteKind::SentinelReplicas);
  EXPECT_EQ(rewrite_kind("sentinel", "sentinels", "m"), RewriteKind::SentinelSentinels);
  EXPECT_EQ(rewrite_kind("sentinel", "ckquorum", "m"), RewriteKind::None);
  EXPECT_EQ(rewrite_kind("role", "", ""), RewriteKind::Role);
  EXPECT_EQ(rewrite_kind("ROLE", "", ""), RewriteKind::Role);
  EXPECT_EQ(rewrite_kind("info", "", ""), RewriteKind::Info);
  EXPECT_EQ(rewrite_kind("info", "replication", ""), RewriteKind::Info);
  EXPECT_EQ(rewrite_kind("INFO", "all", ""), RewriteKind::Info);
  EXPECT_EQ(rewrite_kind("info", "server", "replication"), RewriteKind::Info);
  EXPECT_EQ(rewrite_kind("hello", "3", ""), RewriteKind::None);
  EXPECT_EQ(rewrite_kind("client", "list", ""), RewriteKind::None);
  EXPECT_EQ(rewrite_kind("get", "cluster", ""), RewriteKind::None);
  EXPECT_EQ(rewrite_kind("clusterx", "slots", ""), RewriteKind::None);
  EXPECT_STREQ(rewrite_kind_name(RewriteKind::ClusterSlots), "cluster-slots");
}

} // namespace
} // namespace faultline::resp
