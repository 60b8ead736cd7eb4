#pragma once
// Address rewriting for deployments (Redis Cluster, Sentinel): Redis tells clients where its
// nodes are, and faultline fronts each node with a listener of its own, so every address a client
// reads must name that listener, or the client would leave faultline after its first redirect.
//
// Pure code over whole reply frames (the session collects the frame and calls in): decode the
// frame (resp/value.h), change the addresses an AddressMap maps, encode it again. What is not an
// address is written back byte for byte, and the reply keeps its protocol (a RESP3 map stays a
// map, a verbatim string stays verbatim). A reply of an unexpected shape, or one that names no
// mapped address, is left alone: the functions return false and the caller forwards the
// original bytes.
//
// Redis's host forms are kept: an empty endpoint ("", or null in CLUSTER SLOTS: "the host you
// are connected to") and "?" (no host name known) stay as they are and only their port changes,
// which is right as long as a deployment's listeners share one host (faultline binds one). A host
// name or IP becomes the listener's host; host-name fields (cluster-announce-hostname, Sentinel's
// announce-hostnames) get the listener's host too, so that no real host is left.
//
// What each kind covers (shapes checked against Redis 7.0 replies, tests/unit/resp/data/):
//   ClusterSlots     [[start, end, [endpoint, port, id, {ip, hostname}?], ...], ...]
//   ClusterShards    [{slots, nodes: [{id, port, tls-port?, ip, endpoint, hostname?, ...}]}]
//                    tls-port is dropped (faultline does not proxy TLS)
//   ClusterNodes     text, a line per node: "<id> <ip:port@cport[,hostname]> ..."; CLUSTER
//                    REPLICAS / SLAVES: an array of such lines. @cport stays as it is.
//   SentinelMasterAddr  [ip, port] or null
//   SentinelMaster   {name, ip, port, ...} (RESP2: flat field/value array); SentinelMasters,
//   SentinelReplicas, SentinelSentinels: arrays of those. ip/port, master-host/master-port, and
//                    a replica's name ("ip:port")
//   Role             ["master", offset, [[ip, port, offset], ...]], ["slave", ip, port, ...]
//   Info             master_host/master_port, slaveN:ip=,port=, Sentinel's masterN:...address=,
//                    and tcp_port (the node's own port, looked up with an empty host)

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace faultline::resp {

struct HostPort {
  std::string host;
  uint16_t port = 0;
  bool operator==(const HostPort&) const = default;
};

// Maps a real node's address, as Redis reports it, to the faultline listener that fronts it.
// `host` is as found in the reply: an IP, a host name, "" (Redis's empty endpoint: the host the
// client is connected to) or "?" (Redis knows no endpoint for the node); nullopt = leave the
// address as it is. A listener host holding a space, comma, '@' or line break is ignored (it
// would break the text forms it is written into).
class AddressMap {
public:
  virtual ~AddressMap() = default;
  virtual std::optional<HostPort> listener_for(std::string_view host, uint16_t port) const = 0;
};

enum class RewriteKind : uint8_t {
  None,
  ClusterSlots,
  ClusterShards,
  ClusterNodes,
  ClusterReplicas,     // also CLUSTER SLAVES
  SentinelMasterAddr,  // SENTINEL GET-MASTER-ADDR-BY-NAME
  SentinelMaster,
  SentinelMasters,
  SentinelReplicas,    // also SENTINEL SLAVES
  SentinelSentinels,
  Role,
  Info,                // any INFO: the lines it changes appear only where they should
};

const char* rewrite_kind_name(RewriteKind k);

// Which rewrite the reply to a request needs, from its command name and first two arguments
// (any case): ("cluster", "slots", ""), ("sentinel", "get-master-addr-by-name", "mymaster"),
// ("role", "", ""), ("info", "replication", "")... None for everything else (HELLO and CLIENT
// LIST name no node a client would connect to: CLIENT LIST's laddr is the address the client's
// own connection reached).
RewriteKind rewrite_kind(std::string_view cmd, std::string_view arg1, std::string_view arg2);
// Whether rewrite_kind() can be other than None for a command of this name (any case): the
// one list of the commands whose replies name nodes.
bool may_rewrite(std::string_view cmd);

// Rewrites one whole reply frame (exactly one: trailing bytes make it not of the expected shape)
// and appends the result to out. False, out untouched, when it changes nothing: it names no
// address the map maps, or it is not of the shape k expects.
bool rewrite_reply(RewriteKind k, std::string_view frame, const AddressMap& m, std::string& out);

// A top-level error frame, simple (-) or blob (!): "MOVED <slot> <addr>" / "ASK <slot> <addr>",
// addr one of ip:port, host-name:port, :port (empty endpoint), ?:port, an IPv6 address written as
// Redis does (::1:7002, the last colon before the port) or in brackets ([::1]:7002, kept so).
bool rewrite_redirect(std::string_view frame, const AddressMap& m, std::string& out);

// A pub/sub message from a Sentinel: ["message", channel, payload] or ["pmessage", pattern,
// channel, payload], as a RESP2 array or a RESP3 push. Rewrites the payloads of Sentinel's events
// (channels starting with + or -): "<type> <name> <ip> <port> [@ <master> <ip> <port>] ..."
// (a replica's name is "ip:port" and changes too), with "ip <ip> port <port>"
// (+sentinel-address-switch) and "#duplicate of <ip>:<port>" (-dup-sentinel) in the tail;
// "+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>"; and "__sentinel__:hello"
// ("<ip>,<port>,<runid>,<epoch>,<master>,<master-ip>,<master-port>,<master-epoch>").
bool rewrite_sentinel_event(std::string_view frame, const AddressMap& m, std::string& out);

} // namespace faultline::resp
