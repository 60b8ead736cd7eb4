#pragma once
// The proxies in front of a whole deployment (a Redis Cluster, or a Sentinel set-up): one per
// real node, named after it ("node-127.0.0.1-7000", "sentinel-127.0.0.1-26379"), and the map from
// each node's real address to the listener that fronts it. The Front is also every one of those
// proxies' ReplyRewriter (proxy/rewriter.h): the replies that name nodes (resp/rewrite.h) are
// rewritten to name listeners, so a client that follows them stays behind faultline.
//
// Listeners: the first node's proxy listens on the configured address (--listen), the next ones
// on the following ports (a port in use is skipped); port 0 gives each a free port. Clients are
// told the listen host, or 127.0.0.1 when it is a wildcard (0.0.0.0, ::), unless an announce
// host is given.
//
// A node first seen in a reply (a MOVED to a node added since the last look at the topology) gets
// its proxy there and then, before the reply goes on: no reply ever names a node without one,
// up to FrontOptions::max_reply_nodes such nodes that discovery has not confirmed.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "proxy/rewriter.h"
#include "resp/rewrite.h"

namespace faultline::proxy {
class Proxy;
class Registry;
} // namespace faultline::proxy

namespace faultline::topology {

struct FrontOptions {
  std::string listen = "127.0.0.1:6381";  // the first proxy's; the next ones count up from it
  std::string announce_host;              // what clients are told; empty: from `listen`
  bool redirects = true;                  // a cluster: error replies to keyed commands may be
                                          // MOVED or ASK, and are collected to be rewritten
  // Nodes a reply may name that discovery has not (yet) confirmed, each given a proxy and a
  // listener on the reply's word: at most this many at once. Past it, such an address goes on
  // as Redis wrote it (logged once per episode, counted in GET /topology), so a misbehaving
  // server or a storm of redirections to many addresses cannot open listeners without bound.
  size_t max_reply_nodes = 16;
};

class Front final : public proxy::ReplyRewriter {
public:
  Front(proxy::Registry& reg, FrontOptions opts);
  ~Front() override;
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;

  // The proxy fronting the node at `address` ("ip:port", as Redis reports it), started if new;
  // `prefix` names it ("node", "sentinel"). nullptr with err set when it cannot listen.
  proxy::Proxy* ensure(const std::string& address, std::string_view prefix, std::string& err);
  // The proxy that fronts `address`, if any.
  proxy::Proxy* proxy_for(const std::string& address) const;
  std::string proxy_name_for(const std::string& address) const;
  // The listener clients are told for `address` (nullopt: none fronts it).
  std::optional<resp::HostPort> listener(const std::string& address) const;
  const std::string& announce_host() const { return announce_; }
  // Every real address fronted, by address.
  const std::map<std::string, std::string, std::less<>>& fronted() const { return names_; }

  // A MOVED went through (the topology changed): the deployment looks again.
  void on_redirect(std::function<void()> f) { on_redirect_ = std::move(f); }
  // A reply named a node not fronted yet: its proxy was made (the deployment looks again).
  void on_new_node(std::function<void(const std::string&)> f) { on_new_node_ = std::move(f); }

  // proxy::ReplyRewriter
  uint8_t kind(const resp::RequestFrame& f) const override;
  bool may_rewrite(const resp::CommandInfo* c) const override;
  bool rewrite(uint8_t kind, std::string_view frame, std::string& out) override;
  void too_large(uint8_t kind, size_t bytes) override;
  std::string address_for_slot(unsigned slot) const override;
  // Who serves a slot (its real address), for address_for_slot (cluster.h sets it).
  void slot_owner(std::function<std::string(unsigned)> f) { slot_owner_ = std::move(f); }

  // Sentinel mode: the master and its data nodes (master and replicas) as the last look saw
  // them, for the sentinel_stale toxic (a sentinel that keeps naming the master it named when
  // the toxic was added).
  void set_master_group(std::string master, std::vector<std::string> data_nodes);

  uint64_t rewrites() const { return rewrites_; }
  uint64_t redirects() const { return redirects_; }
  // Nodes fronted on a reply's word and not confirmed by discovery since; addresses left as
  // Redis wrote them because that number was at its limit.
  size_t reply_nodes() const { return reply_nodes_.size(); }
  size_t max_reply_nodes() const { return opts_.max_reply_nodes; }
  uint64_t reply_nodes_refused() const { return reply_nodes_refused_; }
  // {"fronted", "limit", "refused"} of the above, for GET /topology.
  nlohmann::json reply_nodes_json() const;

private:
  class Book;       // resp::AddressMap over this Front
  class StaleBook;  // the same, naming one master for every data node of the group
  class View;       // one proxy's rewriter: this Front's, and what that proxy's toxics ask
  bool rewrite_stale(uint8_t kind, std::string_view frame, const std::string& master,
                     std::string& out);
  std::optional<resp::HostPort> map(std::string_view host, uint16_t port);
  proxy::Proxy* make(const std::string& address, std::string_view prefix, std::string& err);
  uint16_t next_port();

  proxy::Registry& reg_;
  FrontOptions opts_;
  std::string listen_host_;
  uint16_t base_port_ = 0;        // 0: every proxy picks a free port
  uint16_t port_cursor_ = 0;
  std::string announce_;
  std::map<std::string, std::string, std::less<>> names_;  // real address -> proxy name
  std::map<std::string, std::unique_ptr<View>, std::less<>> views_;  // by real address
  std::string master_;                                   // sentinel mode (set_master_group)
  std::set<std::string, std::less<>> group_;
  std::function<void()> on_redirect_;
  std::function<void(const std::string&)> on_new_node_;
  std::function<std::string(unsigned)> slot_owner_;
  uint64_t rewrites_ = 0, redirects_ = 0;
  std::set<std::string, std::less<>> reply_nodes_;  // fronted on a reply's word only
  uint64_t reply_nodes_refused_ = 0;
  bool warned_large_ = false;
  bool warned_reply_nodes_ = false;  // this episode at the limit was logged
};

// "node-127.0.0.1-7000" for ("node", "127.0.0.1:7000"); IPv6 brackets and colons become '-'.
std::string proxy_name(std::string_view prefix, std::string_view address);

} // namespace faultline::topology
