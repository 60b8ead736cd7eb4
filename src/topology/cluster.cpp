// Cluster mode (see cluster.h).

#include "topology/cluster.h"

#include <algorithm>
#include <charconv>
#include <memory>

#include "base/log.h"
#include "proxy/proxy.h"
#include "topology/redis_call.h"
#include "uv/address.h"

namespace faultline::topology {

bool ClusterNode::has(std::string_view flag) const {
  return std::find(flags.begin(), flags.end(), flag) != flags.end();
}

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(sep, i);
    if (j == std::string_view::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool to_int(std::string_view s, int& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

} // namespace

std::vector<ClusterNode> parse_cluster_nodes(std::string_view text) {
  std::vector<ClusterNode> out;
  for (std::string_view line : split(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto f = split(line, ' ');
    if (f.size() < 8) continue;
    ClusterNode n;
    n.id = f[0];
    // ip:port@cport[,hostname]
    std::string_view addr = f[1];
    if (size_t c = addr.find(','); c != std::string_view::npos) {
      n.hostname = addr.substr(c + 1);
      addr = addr.substr(0, c);
    }
    if (size_t a = addr.find('@'); a != std::string_view::npos) addr = addr.substr(0, a);
    n.address = addr;
    for (auto fl : split(f[2], ',')) n.flags.emplace_back(fl == "slave" ? "replica" : fl);
    if (f[3] != "-") n.master_id = f[3];
    for (size_t i = 8; i < f.size(); ++i) {
      std::string_view s = f[i];
      if (s.empty() || s[0] == '[') continue;  // a slot being migrated or imported
      int a = 0, b = 0;
      if (size_t d = s.find('-'); d != std::string_view::npos) {
        if (to_int(s.substr(0, d), a) && to_int(s.substr(d + 1), b)) n.slots.emplace_back(a, b);
      } else if (to_int(s, a)) {
        n.slots.emplace_back(a, a);
      }
    }
    out.push_back(std::move(n));
  }
  return out;
}

Cluster::Cluster(uv_loop_t* loop, Front& front, ClusterOptions opts)
    : loop_(loop), front_(front), opts_(std::move(opts)), timer_(new uv_timer_t),
      alive_(std::make_shared<bool>(true)) {
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  front_.on_redirect([this] { refresh_soon(); });
  front_.on_new_node([this](const std::string&) { refresh_soon(); });
  front_.slot_owner([this](unsigned slot) { return owner_of(slot); });
}

Cluster::~Cluster() {
  *alive_ = false;
  if (!closed_) {
    // close() was not called (start-up failed): the timer goes without a callback.
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

void Cluster::start(std::function<void(std::string)> done) {
  first_ = std::move(done);
  look();
}

void Cluster::close(std::function<void()> done) {
  if (closed_) {
    if (done) done();
    return;
  }
  closed_ = true;
  *alive_ = false;
  auto* cb = new std::function<void()>(std::move(done));
  timer_->data = cb;
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) {
    auto* f = static_cast<std::function<void()>*>(h->data);
    delete reinterpret_cast<uv_timer_t*>(h);
    if (*f) (*f)();
    delete f;
  });
}

void Cluster::refresh_soon() {
  if (closed_) return;
  if (looking_) {
    again_ = true;
    return;
  }
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<Cluster*>(t->data)->look(); }, 0, 0);
}

std::vector<std::string> Cluster::candidates() const {
  std::vector<std::string> c;
  auto add = [&](const std::string& a) {
    if (!a.empty() && std::find(c.begin(), c.end(), a) == c.end()) c.push_back(a);
  };
  add(last_good_);
  for (const auto& n : nodes_)
    if (n.is_master() && !n.has("fail")) add(n.address);
  for (const auto& n : nodes_)
    if (!n.has("fail")) add(n.address);
  for (const auto& s : opts_.seeds) add(s);
  return c;
}

namespace {

// One look: CLUSTER NODES to each candidate in turn until one answers.
struct Look : std::enable_shared_from_this<Look> {
  uv_loop_t* loop = nullptr;
  uint32_t timeout_ms = 0;
  std::vector<std::string> list;
  std::string errors;
  std::function<void(std::string, std::vector<ClusterNode>, const std::string&)> done;

  void ask(size_t i) {
    if (i >= list.size()) {
      done(errors.empty() ? "no node to ask" : errors, {}, {});
      return;
    }
    call(loop, list[i], {"CLUSTER", "NODES"}, timeout_ms,
         [self = shared_from_this(), i](CallResult r) {
           std::string text, why;
           if (!r.ok()) why = r.error;
           else if (r.redis_error()) why = r.redis_error_text();
           else if (!bulk_payload(r.reply, text)) why = "CLUSTER NODES gave no text";
           if (why.empty()) {
             auto nodes = parse_cluster_nodes(text);
             if (!nodes.empty()) return self->done({}, std::move(nodes), self->list[i]);
             why = "CLUSTER NODES listed no node";
           }
           if (!self->errors.empty()) self->errors += "; ";
           self->errors += self->list[i] + ": " + why;
           self->ask(i + 1);
         });
  }
};

} // namespace

void Cluster::look() {
  if (closed_ || looking_) return;
  looking_ = true;
  again_ = false;
  ++looks_;
  auto l = std::make_shared<Look>();
  l->loop = loop_;
  l->timeout_ms = opts_.timeout_ms;
  l->list = candidates();
  l->done = [this, alive = alive_](std::string err, std::vector<ClusterNode> nodes,
                                   const std::string& from) {
    if (*alive) looked(std::move(err), std::move(nodes), from);
  };
  l->ask(0);
}

void Cluster::looked(std::string err, std::vector<ClusterNode> nodes, const std::string& from) {
  looking_ = false;
  looked_ms_ = uv_now(loop_);
  if (!err.empty()) {
    ++failures_;
    if (err != last_error_) log::warn("cluster: cannot read the topology: {}", err);
    last_error_ = err;
    if (first_) {
      auto f = std::move(first_);
      first_ = nullptr;
      f(err);
      return;
    }
  } else {
    last_error_.clear();
    last_good_ = from;
    // The node that answered may list itself without an address (":0" before it met others,
    // or ":port" when it does not know its own IP): it is the one asked.
    for (auto& n : nodes)
      if (n.has("myself")) {
        std::string e;
        auto ep = uv::parse_endpoint(n.address, e);
        if (!ep || ep->host.empty()) n.address = from;
      }
    // Proxies are made in a stable order: the master of slot 0 first (it gets --listen's port),
    // then the other masters by their first slot, then each master's replicas.
    auto first_slot = [](const ClusterNode& n) { return n.slots.empty() ? 1 << 20 : n.slots[0].first; };
    auto rank = [&](const ClusterNode& n) {
      if (n.is_master()) return std::pair(first_slot(n), 0);
      for (const auto& m : nodes)
        if (m.id == n.master_id) return std::pair(first_slot(m), 1);
      return std::pair(1 << 21, 1);
    };
    std::stable_sort(nodes.begin(), nodes.end(),
                     [&](const ClusterNode& a, const ClusterNode& b) { return rank(a) < rank(b); });
    std::string first_error;
    for (const auto& n : nodes) {
      if (n.has("noaddr") || n.has("handshake")) continue;
      std::string e;
      auto ep = uv::parse_endpoint(n.address, e);
      if (!ep || ep->port == 0) continue;
      const bool known = front_.proxy_for(n.address) != nullptr;
      if (!front_.ensure(n.address, "node", e)) {
        if (first_error.empty()) first_error = n.address + ": " + e;
        log::warn("cluster: cannot front node {}: {}", n.address, e);
      } else if (!known && !first_) {
        log::info("cluster: node {} joined: fronted by proxy {}", n.address,
                  front_.proxy_name_for(n.address));
      }
    }
    // Roles that changed (a failover) are worth a line.
    for (const auto& n : nodes)
      for (const auto& o : nodes_)
        if (o.id == n.id && o.is_master() != n.is_master())
          log::info("cluster: node {} is now a {}", n.address, n.is_master() ? "master" : "replica");
    nodes_ = std::move(nodes);
    if (first_) {
      auto f = std::move(first_);
      first_ = nullptr;
      f(first_error);
      if (!first_error.empty()) return;
    }
  }
  if (closed_) return;
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<Cluster*>(t->data)->look(); },
                 again_ ? 0 : opts_.refresh_ms, 0);
}

std::string Cluster::owner_of(unsigned slot) const {
  for (const auto& n : nodes_) {
    if (!n.is_master() || n.has("fail")) continue;
    for (auto [a, b] : n.slots)
      if (int(slot) >= a && int(slot) <= b) return n.address;
  }
  return {};
}

nlohmann::json Cluster::json() const {
  nlohmann::json out;
  out["mode"] = "cluster";
  out["seeds"] = opts_.seeds;
  out["refresh_ms"] = opts_.refresh_ms;
  out["looks"] = looks_;
  out["failed_looks"] = failures_;
  out["last_error"] = last_error_.empty() ? nlohmann::json(nullptr) : nlohmann::json(last_error_);
  out["reply_nodes"] = front_.reply_nodes_json();
  auto& arr = out["nodes"] = nlohmann::json::array();
  for (const auto& n : nodes_) {
    nlohmann::json j;
    j["address"] = n.address;
    j["id"] = n.id;
    j["role"] = n.is_master() ? "master" : n.has("replica") ? "replica" : "unknown";
    // "myself" is the node that was asked, not a property of the node.
    auto& fl = j["flags"] = nlohmann::json::array();
    for (const auto& f : n.flags)
      if (f != "myself") fl.push_back(f);
    std::string master;
    for (const auto& m : nodes_)
      if (!n.master_id.empty() && m.id == n.master_id) master = m.address;
    j["master"] = master.empty() ? nlohmann::json(nullptr) : nlohmann::json(master);
    auto& sl = j["slots"] = nlohmann::json::array();
    for (auto [a, b] : n.slots) sl.push_back({a, b});
    if (!n.hostname.empty()) j["hostname"] = n.hostname;
    const std::string name = front_.proxy_name_for(n.address);
    j["proxy"] = name.empty() ? nlohmann::json(nullptr) : nlohmann::json(name);
    if (auto l = front_.listener(n.address)) j["listen"] = uv::Endpoint{l->host, l->port}.str();
    else j["listen"] = nullptr;
    arr.push_back(std::move(j));
  }
  return out;
}

} // namespace faultline::topology
