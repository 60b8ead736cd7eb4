// Profile actions on the real deployment (see actions.h).

#include "topology/actions.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "resp/value.h"
#include "topology/front.h"
#include "topology/redis_call.h"
#include "topology/sentinel.h"
#include "uv/address.h"

namespace faultline::topology {

namespace {

constexpr uint64_t kPollMs = 100;
constexpr uint64_t kClusterFailoverWaitMs = 15000;
constexpr uint64_t kSentinelFailoverWaitMs = 60000;

// Runs f once after ms, from the loop (the handle frees itself).
void after(uv_loop_t* loop, uint64_t ms, std::function<void()> f) {
  struct T {
    uv_timer_t h;
    std::function<void()> f;
  };
  auto* t = new T{};
  t->f = std::move(f);
  uv_timer_init(loop, &t->h);
  t->h.data = t;
  uv_timer_start(&t->h, [](uv_timer_t* h) {
    auto* tt = static_cast<T*>(h->data);
    auto fn = std::move(tt->f);
    uv_close(reinterpret_cast<uv_handle_t*>(h),
             [](uv_handle_t* hh) { delete static_cast<T*>(hh->data); });
    fn();
  }, ms, 0);
}

bool parse_slot(std::string_view s, int& slot) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), slot);
  return ec == std::errc() && p == s.data() + s.size() && slot >= 0 && slot <= 16383;
}

bool is_node_id(std::string_view s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c));
         });
}

// "what failed: the error", from a call's outcome.
std::string failure(const CallResult& r) {
  return r.ok() ? r.redis_error_text() : r.error;
}

// ROLE's first element ("master", "slave", "sentinel"), empty if unreadable.
std::string role_of(const CallResult& r) {
  if (!r.ok() || r.redis_error()) return {};
  auto v = resp::decode(r.reply);
  if (!v || !v->is_aggregate() || v->elems.empty()) return {};
  const std::string* t = v->elems[0].text();
  return t ? *t : std::string();
}

// Every action starts so: a handle to cancel it by, and `fail`, which reports the action's
// failure from the loop (never from inside the call that started it, so the caller has its
// handle first). When the deployment is not of the action's mode (`mode_ok` false) it has
// already failed with `wrong_mode`.
struct Start {
  std::shared_ptr<ActionHandle> handle;
  std::function<void(std::string)> fail;
};

Start start_action(const Deployment& d, const ActionReport& report, bool mode_ok,
                   const char* wrong_mode) {
  auto h = std::make_shared<ActionHandle>();
  auto fail = [loop = d.loop, cancelled = h->token(), report](std::string text) {
    after(loop, 0, [cancelled, report, text = std::move(text)] {
      if (!*cancelled) report(true, false, text);
    });
  };
  if (!mode_ok) fail(wrong_mode);
  return {std::move(h), std::move(fail)};
}

} // namespace

std::string check_master_spec(std::string_view spec) {
  if (spec.starts_with("slot ")) {
    int slot = 0;
    if (!parse_slot(spec.substr(5), slot))
      return fmt::format("\"{}\": a slot is a number from 0 to 16383", spec);
    return {};
  }
  if (is_node_id(spec) || spec.starts_with("node-")) return {};
  std::string err;
  if (uv::parse_endpoint(spec, err)) return {};
  return fmt::format("\"{}\" names no master: give \"slot N\" (the master serving slot N), a "
                     "node's \"IP:PORT\", its node id, or its proxy's name (\"node-IP-PORT\")",
                     spec);
}

const ClusterNode* find_master(const std::vector<ClusterNode>& nodes, std::string_view spec,
                               std::string& err) {
  const ClusterNode* found = nullptr;
  if (spec.starts_with("slot ")) {
    int slot = 0;
    if (!parse_slot(spec.substr(5), slot)) {
      err = check_master_spec(spec);
      return nullptr;
    }
    for (const auto& n : nodes)
      if (n.is_master())
        for (auto [a, b] : n.slots)
          if (slot >= a && slot <= b) found = &n;
    if (!found) err = fmt::format("no master serves slot {}", slot);
    return found;
  }
  for (const auto& n : nodes)
    if (n.id == spec || n.address == spec || proxy_name("node", n.address) == spec) found = &n;
  if (!found) {
    err = fmt::format("no node of the cluster is \"{}\"", spec);
    return nullptr;
  }
  if (!found->is_master()) {
    err = spec == found->address
              ? fmt::format("{} is not a master", spec)
              : fmt::format("\"{}\" ({}) is not a master", spec, found->address);
    return nullptr;
  }
  return found;
}

// ---- cluster_failover ----

std::shared_ptr<ActionHandle> cluster_failover(const Deployment& d, const std::string& master,
                                               const std::string& mode, ActionReport report) {
  auto [h, fail] = start_action(d, report, d.cluster != nullptr, "not in cluster mode");
  if (!d.cluster) return h;
  auto cancelled = h->token();
  uv_loop_t* loop = d.loop;
  std::string err;
  const auto nodes = d.cluster->nodes();
  const ClusterNode* m = find_master(nodes, master, err);
  if (!m) {
    fail(err);
    return h;
  }
  // The first replica (by address) that is connected and not failing.
  std::vector<const ClusterNode*> replicas;
  for (const auto& n : nodes)
    if (n.master_id == m->id && !n.has("fail") && !n.has("fail?") && !n.has("noaddr") &&
        !n.has("handshake"))
      replicas.push_back(&n);
  if (replicas.empty()) {
    fail(fmt::format("master {} has no healthy replica to take over", m->address));
    return h;
  }
  std::sort(replicas.begin(), replicas.end(),
            [](const ClusterNode* a, const ClusterNode* b) { return a->address < b->address; });
  const std::string replica = replicas.front()->address;
  const std::string old = m->address;
  std::vector<std::string> args{"CLUSTER", "FAILOVER"};
  if (mode == "force") args.push_back("FORCE");
  if (mode == "takeover") args.push_back("TAKEOVER");
  Cluster* cluster = d.cluster;
  const uint32_t timeout = d.timeout_ms;
  report(false, true, fmt::format("CLUSTER FAILOVER{} sent to replica {} of {}",
                                  mode.empty() ? "" : " " + mode, replica, old));
  call(loop, replica, args, timeout, [=](CallResult r) {
    if (*cancelled) return;
    if (!r.ok() || r.redis_error()) {
      report(true, false, fmt::format("CLUSTER FAILOVER on {}: {}", replica, failure(r)));
      return;
    }
    // Accepted: the failover itself happens between the nodes. Wait until the replica says
    // it is a master, then make the topology look again.
    uint64_t start = uv_now(loop);
    auto poll = std::make_shared<std::function<void()>>();
    *poll = [=] {
      call(loop, replica, {"ROLE"}, timeout, [=](CallResult rr) {
        if (*cancelled) {
          *poll = nullptr;
          return;
        }
        if (role_of(rr) == "master") {
          cluster->refresh_soon();
          report(true, true, fmt::format("replica {} took over from {} ({} ms)", replica, old,
                                         uv_now(loop) - start));
          *poll = nullptr;
          return;
        }
        if (uv_now(loop) - start > kClusterFailoverWaitMs) {
          cluster->refresh_soon();
          report(true, false, fmt::format("CLUSTER FAILOVER accepted by {} but it is still not "
                                          "a master after {} ms",
                                          replica, kClusterFailoverWaitMs));
          *poll = nullptr;
          return;
        }
        after(loop, kPollMs, [poll] {
          if (*poll) (*poll)();
        });
      });
    };
    (*poll)();
  });
  return h;
}

// ---- migrate_slots ----

namespace {

struct Migration : std::enable_shared_from_this<Migration> {
  uv_loop_t* loop = nullptr;
  Cluster* cluster = nullptr;
  uint32_t timeout_ms = 0;
  std::shared_ptr<bool> cancelled;
  ActionReport report;
  int first = 0, last = 0, slot = 0;
  uint32_t batch = 10;
  uint64_t pace_ms = 0;
  std::string src, src_id, dst, dst_id;
  std::vector<std::string> others;  // the other masters, told the new owner too
  uint64_t keys = 0, slots_done = 0;

  bool stopped() const { return *cancelled; }
  void fail(const std::string& what, const CallResult& r) {
    cluster->refresh_soon();
    report(true, false, fmt::format("slot {}: {}: {} ({} slots, {} keys moved before)", slot,
                                    what, failure(r), slots_done, keys));
  }
  // One command; on success `next`, on any failure the migration stops.
  void step(const std::string& node, std::vector<std::string> args, std::string what,
            std::function<void(const CallResult&)> next) {
    auto self = shared_from_this();
    call(loop, node, std::move(args), timeout_ms, [self, what, next](CallResult r) {
      if (self->stopped()) return;
      if (!r.ok() || r.redis_error()) return self->fail(what, r);
      next(r);
    });
  }
  void start_slot() {
    if (slot > last) {
      cluster->refresh_soon();
      report(true, true, fmt::format("slots {}-{} moved from {} to {} ({} keys)", first, last,
                                     src, dst, keys));
      return;
    }
    auto self = shared_from_this();
    const std::string s = std::to_string(slot);
    step(dst, {"CLUSTER", "SETSLOT", s, "IMPORTING", src_id}, "SETSLOT IMPORTING on " + dst,
         [self, s](const CallResult&) {
           self->step(self->src, {"CLUSTER", "SETSLOT", s, "MIGRATING", self->dst_id},
                      "SETSLOT MIGRATING on " + self->src,
                      [self](const CallResult&) { self->move_keys(); });
         });
  }
  void move_keys() {
    auto self = shared_from_this();
    step(src, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), std::to_string(batch)},
         "GETKEYSINSLOT on " + src, [self](const CallResult& r) {
           auto v = resp::decode(r.reply);
           std::vector<std::string> keys;
           if (v && v->is_aggregate())
             for (const auto& e : v->elems)
               if (const std::string* k = e.text()) keys.push_back(*k);
           if (keys.empty()) return self->hand_over();
           std::string perr;
           auto ep = uv::parse_endpoint(self->dst, perr);
           std::vector<std::string> args{"MIGRATE", ep ? ep->host : self->dst,
                                         ep ? std::to_string(ep->port) : "0", "", "0",
                                         std::to_string(self->timeout_ms), "KEYS"};
           const size_t n = keys.size();
           for (auto& k : keys) args.push_back(std::move(k));
           self->step(self->src, std::move(args), "MIGRATE from " + self->src,
                      [self, n](const CallResult&) {
                        self->keys += n;
                        self->progress();
                        after(self->loop, self->pace_ms, [self] {
                          if (!self->stopped()) self->move_keys();
                        });
                      });
         });
  }
  void hand_over() {
    auto self = shared_from_this();
    const std::string s = std::to_string(slot);
    std::vector<std::string> node{"CLUSTER", "SETSLOT", s, "NODE", dst_id};
    step(dst, node, "SETSLOT NODE on " + dst, [self, node](const CallResult&) {
      self->step(self->src, node, "SETSLOT NODE on " + self->src,
                 [self, node](const CallResult&) {
                   // The other masters learn it from the bus anyway: told at once, not waited on.
                   for (const auto& o : self->others)
                     call(self->loop, o, node, self->timeout_ms, [](CallResult) {});
                   ++self->slots_done;
                   ++self->slot;
                   self->progress();
                   after(self->loop, self->pace_ms, [self] {
                     if (!self->stopped()) self->start_slot();
                   });
                 });
    });
  }
  void progress() {
    report(false, true, fmt::format("moving slots {}-{} from {} to {}: {} slots, {} keys moved",
                                    first, last, src, dst, slots_done, keys));
  }
};

} // namespace

std::shared_ptr<ActionHandle> migrate_slots(const Deployment& d, int first, int last,
                                            const std::string& to, uint32_t batch,
                                            uint64_t pace_ms, ActionReport report) {
  auto [h, fail] = start_action(d, report, d.cluster != nullptr, "not in cluster mode");
  if (!d.cluster) return h;
  auto cancelled = h->token();
  uv_loop_t* loop = d.loop;
  const auto nodes = d.cluster->nodes();
  std::string err;
  const ClusterNode* dst = find_master(nodes, to, err);
  if (!dst) {
    fail(err);
    return h;
  }
  // Every slot of the range must be served by one master, the source.
  const ClusterNode* src = nullptr;
  for (int s = first; s <= last; ++s) {
    const ClusterNode* owner = nullptr;
    for (const auto& n : nodes)
      if (n.is_master())
        for (auto [a, b] : n.slots)
          if (s >= a && s <= b) owner = &n;
    if (!owner) {
      fail(fmt::format("no master serves slot {}", s));
      return h;
    }
    if (src && owner != src) {
      fail(fmt::format("slots {}-{} are served by more than one master ({} and {}): move one "
                       "master's range at a time",
                       first, last, src->address, owner->address));
      return h;
    }
    src = owner;
  }
  if (src == dst) {
    fail(fmt::format("slots {}-{} are already served by {}", first, last, dst->address));
    return h;
  }
  auto m = std::make_shared<Migration>();
  m->loop = loop;
  m->cluster = d.cluster;
  m->timeout_ms = d.timeout_ms;
  m->cancelled = cancelled;
  m->report = std::move(report);
  m->first = first;
  m->last = last;
  m->slot = first;
  m->batch = batch;
  m->pace_ms = pace_ms;
  m->src = src->address;
  m->src_id = src->id;
  m->dst = dst->address;
  m->dst_id = dst->id;
  for (const auto& n : nodes)
    if (n.is_master() && n.id != src->id && n.id != dst->id && !n.has("fail"))
      m->others.push_back(n.address);
  m->progress();
  after(loop, 0, [m] {
    if (!m->stopped()) m->start_slot();
  });
  return h;
}

// ---- sentinel_failover ----

std::shared_ptr<ActionHandle> sentinel_failover(const Deployment& d, ActionReport report) {
  auto [h, fail] = start_action(d, report, d.sentinel != nullptr, "not in sentinel mode");
  if (!d.sentinel) return h;
  auto cancelled = h->token();
  uv_loop_t* loop = d.loop;
  std::vector<std::string> sentinels;
  std::string old;
  for (const auto& n : d.sentinel->nodes()) {
    if (n.role == "sentinel") sentinels.push_back(n.address);
    if (n.role == "master") old = n.address;
  }
  Sentinel* sentinel = d.sentinel;
  const std::string name = d.master_name;
  const uint32_t timeout = d.timeout_ms;
  report(false, true, fmt::format("SENTINEL FAILOVER {} (master {})", name, old));
  // Read the master the sentinel names until it is no longer `old`.
  auto wait_new = [=](const std::string& via, uint64_t start) {
    auto poll = std::make_shared<std::function<void()>>();
    *poll = [=] {
      call(loop, via, {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", name}, timeout,
           [=](CallResult r) {
             if (*cancelled) {
               *poll = nullptr;
               return;
             }
             std::string now;
             if (auto v = resp::decode(r.ok() ? r.reply : std::string());
                 v && v->is_aggregate() && v->elems.size() == 2 && v->elems[0].text() &&
                 v->elems[1].text()) {
               int port = 0;
               const std::string& p = *v->elems[1].text();
               std::from_chars(p.data(), p.data() + p.size(), port);
               if (port > 0 && port <= 65535)
                 now = uv::Endpoint{*v->elems[0].text(), uint16_t(port)}.str();
             }
             if (!now.empty() && now != old) {
               sentinel->refresh_soon();
               report(true, true, fmt::format("sentinel {} promoted {} (was {}) in {} ms", via,
                                              now, old, uv_now(loop) - start));
               *poll = nullptr;
               return;
             }
             if (uv_now(loop) - start > kSentinelFailoverWaitMs) {
               sentinel->refresh_soon();
               report(true, false, fmt::format("SENTINEL FAILOVER accepted by {} but the master "
                                               "is still {} after {} ms",
                                               via, old, kSentinelFailoverWaitMs));
               *poll = nullptr;
               return;
             }
             after(loop, kPollMs, [poll] {
               if (*poll) (*poll)();
             });
           });
    };
    (*poll)();
  };
  // Each sentinel in turn until one can be asked; a Redis error (INPROG, NOGOODSLAVE) is final.
  // It holds itself only weakly; each call in flight holds it, so it goes with the last one.
  using Ask = std::function<void(size_t, std::string)>;
  auto ask = std::make_shared<Ask>();
  *ask = [=, self = std::weak_ptr<Ask>(ask)](size_t i, std::string errors) {
    if (i >= sentinels.size()) {
      report(true, false, fmt::format("SENTINEL FAILOVER {}: no sentinel could be asked{}", name,
                                      errors.empty() ? "" : ": " + errors));
      return;
    }
    const std::string via = sentinels[i];
    call(loop, via, {"SENTINEL", "FAILOVER", name}, timeout,
         [=, next = self.lock()](CallResult r) {
           if (*cancelled) return;
           if (!r.ok()) {
             (*next)(i + 1, errors + (errors.empty() ? "" : "; ") + via + ": " + r.error);
             return;
           }
           if (r.redis_error()) {
             report(true, false, fmt::format("SENTINEL FAILOVER {} on {}: {}", name, via,
                                             r.redis_error_text()));
             return;
           }
           wait_new(via, uv_now(loop));
         });
  };
  after(loop, 0, [ask, cancelled] {
    if (!*cancelled) (*ask)(0, {});
  });
  return h;
}

} // namespace faultline::topology
