// The proxies in front of a deployment (see front.h).

#include "topology/front.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "proxy/proxy.h"
#include "resp/parser.h"
#include "uv/address.h"

namespace faultline::topology {

std::string proxy_name(std::string_view prefix, std::string_view address) {
  std::string n(prefix);
  n += '-';
  for (char c : address) {
    if (c == '[' || c == ']') continue;
    n += c == ':' ? '-' : c;
  }
  return n;
}

class Front::Book final : public resp::AddressMap {
public:
  explicit Book(Front& f) : f_(f) {}
  std::optional<resp::HostPort> listener_for(std::string_view host, uint16_t port) const override {
    return f_.map(host, port);
  }

private:
  Front& f_;
};

// Every address of the master's group (the master and its replicas) as one master: what a
// sentinel that has not seen a failover answers when asked for the master.
class Front::StaleBook final : public resp::AddressMap {
public:
  StaleBook(Front& f, const std::string& master) : f_(f), master_(master) {}
  std::optional<resp::HostPort> listener_for(std::string_view host, uint16_t port) const override {
    if (f_.group_.count(uv::Endpoint{std::string(host), port}.str())) return f_.listener(master_);
    return f_.map(host, port);
  }

private:
  Front& f_;
  const std::string& master_;
};

class Front::View final : public proxy::ReplyRewriter {
public:
  View(Front& f, std::string address, bool sentinel)
      : f_(f), address_(std::move(address)), sentinel_(sentinel) {}

  uint8_t kind(const resp::RequestFrame& fr) const override { return f_.kind(fr); }
  bool may_rewrite(const resp::CommandInfo* c) const override { return f_.may_rewrite(c); }
  bool rewrite(uint8_t kind, std::string_view frame, std::string& out) override {
    if (!stale_.empty() && asks_for_master(kind)) {
      if (const std::string* m = stale_master()) return f_.rewrite_stale(kind, frame, *m, out);
    }
    return f_.rewrite(kind, frame, out);
  }
  void too_large(uint8_t kind, size_t bytes) override { f_.too_large(kind, bytes); }
  std::string address_for_slot(unsigned slot) const override { return f_.address_for_slot(slot); }

  std::string refuses_toxic(const toxics::Toxic& t) const override {
    if (t.type != "sentinel_stale") return ReplyRewriter::refuses_toxic(t);
    if (!sentinel_)
      return fmt::format("toxic type 'sentinel_stale' acts on a sentinel's proxy, and '{}' "
                         "fronts a data node",
                         f_.proxy_name_for(address_));
    if (f_.master_.empty())
      return "toxic type 'sentinel_stale': no master is known yet to keep naming";
    return {};
  }
  void toxic_added(const toxics::Toxic& t) override {
    if (t.type != "sentinel_stale") return;
    // Names of toxics since removed go; the master is the one named now.
    const proxy::Proxy* p = f_.proxy_for(address_);
    std::erase_if(stale_, [&](const auto& e) { return !p || !p->find_toxic(e.first); });
    stale_[t.name] = f_.master_;
    log::info("proxy {}: sentinel_stale {}: this sentinel names {} as the master from now on",
              f_.proxy_name_for(address_), t.name, f_.master_);
  }

private:
  static bool asks_for_master(uint8_t kind) {
    using K = resp::RewriteKind;
    if (kind < 3) return false;
    const auto k = static_cast<K>(kind - 2);
    return k == K::SentinelMasterAddr || k == K::SentinelMaster || k == K::SentinelMasters;
  }
  // The master the newest sentinel_stale toxic on this proxy noted; nullptr when there is none.
  const std::string* stale_master() const {
    const proxy::Proxy* p = f_.proxy_for(address_);
    if (!p) return nullptr;
    const auto& ts = p->toxics();
    for (auto it = ts.rbegin(); it != ts.rend(); ++it) {
      if (it->type != "sentinel_stale") continue;
      if (auto s = stale_.find(it->name); s != stale_.end()) return &s->second;
    }
    return nullptr;
  }

  Front& f_;
  std::string address_;
  bool sentinel_;
  std::map<std::string, std::string, std::less<>> stale_;  // toxic name -> master it noted
};

Front::Front(proxy::Registry& reg, FrontOptions opts) : reg_(reg), opts_(std::move(opts)) {
  std::string err;
  if (auto ep = uv::parse_endpoint(opts_.listen, err)) {
    listen_host_ = ep->host;
    base_port_ = ep->port;
  }
  announce_ = opts_.announce_host;
  if (announce_.empty()) {
    announce_ = listen_host_;
    if (announce_.empty() || announce_ == "0.0.0.0" || announce_ == "::") announce_ = "127.0.0.1";
  }
}

Front::~Front() = default;

uint16_t Front::next_port() {
  if (base_port_ == 0) return 0;
  const uint32_t p = uint32_t(base_port_) + port_cursor_++;
  return p > 65535 ? 0 : static_cast<uint16_t>(p);
}

proxy::Proxy* Front::ensure(const std::string& address, std::string_view prefix,
                            std::string& err) {
  // Discovery saw the node: no longer fronted on a reply's word only.
  if (auto it = reply_nodes_.find(address); it != reply_nodes_.end()) {
    reply_nodes_.erase(it);
    warned_reply_nodes_ = false;
  }
  return make(address, prefix, err);
}

proxy::Proxy* Front::make(const std::string& address, std::string_view prefix,
                          std::string& err) {
  if (auto it = names_.find(address); it != names_.end()) {
    if (proxy::Proxy* p = reg_.find(it->second)) return p;
  }
  const std::string name = proxy_name(prefix, address);
  if (proxy::Proxy* p = reg_.find(name)) {
    // Made before (and kept when the node left the topology for a while).
    names_[address] = name;
    return p;
  }
  // Ports in use (by another program, or a proxy the API made) are skipped.
  for (int tries = 0; tries < 64; ++tries) {
    uv::Endpoint ep{listen_host_, next_port()};
    proxy::ProxyConfig pc{name, ep.str(), address, true};
    std::string e;
    if (proxy::Proxy* p = reg_.create(pc, e)) {
      // A sentinel's events (pub/sub) name nodes too.
      auto& v = views_[address];
      if (!v) v = std::make_unique<View>(*this, address, prefix == "sentinel");
      // The proxies hold their view without owning it (an aliasing pointer): the Front
      // outlives them.
      p->set_rewriter(std::shared_ptr<View>(std::shared_ptr<View>(), v.get()),
                      prefix == "sentinel", opts_.redirects);
      names_[address] = name;
      return p;
    }
    err = e;
    if (ep.port == 0) break;  // not a port conflict
  }
  return nullptr;
}

proxy::Proxy* Front::proxy_for(const std::string& address) const {
  auto it = names_.find(address);
  return it == names_.end() ? nullptr : reg_.find(it->second);
}

std::string Front::proxy_name_for(const std::string& address) const {
  auto it = names_.find(address);
  return it == names_.end() ? std::string() : it->second;
}

std::optional<resp::HostPort> Front::listener(const std::string& address) const {
  proxy::Proxy* p = proxy_for(address);
  if (!p) return std::nullopt;
  std::string err;
  auto ep = uv::parse_endpoint(p->listen_address(), err);
  if (!ep) return std::nullopt;
  return resp::HostPort{announce_, ep->port};
}

std::optional<resp::HostPort> Front::map(std::string_view host, uint16_t port) {
  if (port == 0) return std::nullopt;
  if (host.empty() || host == "?") {
    // "The host you are connected to": every node this front knows on that port; with several
    // hosts, the port alone cannot tell them apart.
    std::optional<resp::HostPort> found;
    int n = 0;
    for (const auto& [addr, name] : names_) {
      std::string err;
      auto ep = uv::parse_endpoint(addr, err);
      if (ep && ep->port == port) {
        found = listener(addr);
        ++n;
      }
    }
    return n == 1 ? found : std::nullopt;
  }
  const std::string address = uv::Endpoint{std::string(host), port}.str();
  if (auto l = listener(address)) return l;
  // A node not seen before (or named by a host name): fronted now, before the reply goes on.
  sockaddr_storage ss{};
  if (!uv::literal_address(uv::Endpoint{std::string(host), port}, ss)) return std::nullopt;
  if (reply_nodes_.size() >= opts_.max_reply_nodes) {
    ++reply_nodes_refused_;
    if (!warned_reply_nodes_) {
      warned_reply_nodes_ = true;
      log::warn("node {} named in a reply is not fronted: {} nodes seen only in replies already "
                "have proxies (the limit); the reply names the real node (said once until "
                "discovery confirms one of them)",
                address, reply_nodes_.size());
    }
    return std::nullopt;
  }
  std::string err;
  if (!make(address, "node", err)) {
    log::warn("cannot front node {} named in a reply: {}", address, err);
    return std::nullopt;
  }
  reply_nodes_.insert(address);
  log::info("node {} first seen in a reply: fronted by proxy {}", address, proxy_name_for(address));
  if (on_new_node_) on_new_node_(address);
  return listener(address);
}

bool Front::may_rewrite(const resp::CommandInfo* c) const {
  // A subcommand's entry has its container's name.
  return !c || resp::may_rewrite(c->name);
}

uint8_t Front::kind(const resp::RequestFrame& f) const {
  if (f.name.empty()) return kNone;
  auto arg = [&](size_t i) {
    return i < f.args.size() ? f.args[i].data : std::string_view();
  };
  if (const resp::RewriteKind k = resp::rewrite_kind(f.name, arg(1), arg(2));
      k != resp::RewriteKind::None)
    return static_cast<uint8_t>(2 + static_cast<uint8_t>(k));
  // MOVED and ASK are not asked for per request: the proxy offers every error reply
  // (set_rewriter's `redirects`), so keyed commands stay on the fast path.
  return kNone;
}

bool Front::rewrite(uint8_t kind, std::string_view frame, std::string& out) {
  Book book(*this);
  if (kind == kRedirectOnly) {
    const bool moved = frame.size() > 6 && (frame.substr(1, 5) == "MOVED");
    if (!resp::rewrite_redirect(frame, book, out)) return false;
    ++redirects_;
    if (moved && on_redirect_) on_redirect_();
    return true;
  }
  if (kind == kMessage) {
    if (!resp::rewrite_sentinel_event(frame, book, out)) return false;
    ++rewrites_;
    return true;
  }
  if (kind < 3) return false;
  if (!resp::rewrite_reply(static_cast<resp::RewriteKind>(kind - 2), frame, book, out))
    return false;
  ++rewrites_;
  return true;
}

void Front::set_master_group(std::string master, std::vector<std::string> data_nodes) {
  master_ = std::move(master);
  group_.clear();
  group_.insert(data_nodes.begin(), data_nodes.end());
}

bool Front::rewrite_stale(uint8_t kind, std::string_view frame, const std::string& master,
                          std::string& out) {
  StaleBook book(*this, master);
  if (!resp::rewrite_reply(static_cast<resp::RewriteKind>(kind - 2), frame, book, out))
    return false;
  ++rewrites_;
  return true;
}

nlohmann::json Front::reply_nodes_json() const {
  return {{"fronted", reply_nodes_.size()},
          {"limit", opts_.max_reply_nodes},
          {"refused", reply_nodes_refused_}};
}

std::string Front::address_for_slot(unsigned slot) const {
  if (!slot_owner_) return {};
  const std::string owner = slot_owner_(slot);
  if (owner.empty()) return {};
  auto l = listener(owner);
  return l ? uv::Endpoint{l->host, l->port}.str() : std::string();
}

void Front::too_large(uint8_t kind, size_t bytes) {
  if (warned_large_) return;
  warned_large_ = true;
  log::warn("a reply to rewrite ({}) went on as it came: {} bytes is more than half the "
            "high watermark; it may name real nodes (this is said once)",
            kind == kRedirectOnly ? "a redirection"
            : kind == kMessage    ? "a sentinel event"
                                  : resp::rewrite_kind_name(static_cast<resp::RewriteKind>(kind - 2)),
            bytes);
}

} // namespace faultline::topology
