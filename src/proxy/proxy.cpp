#include "proxy/proxy.h"

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "proxy/observer.h"
#include "toxics/resp_rule.h"
#include "uv/platform.h"

namespace faultline::proxy {

namespace {
// How long a looked-up upstream address is used before the name is looked up again (so a moved
// Redis is found).
constexpr uint64_t kUpstreamRefreshMs = 5000;

uint64_t mix_seed(uint64_t seed, std::string_view name) {
  uint64_t h = seed ^ 0x9e3779b97f4a7c15ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}
} // namespace

void Runtime::add_observer(SessionObserver* o) {
  observers_.push_back(o);
  note_observers();
}

void Runtime::remove_observer(SessionObserver* o) {
  std::erase(observers_, o);
  note_observers();
}

void Runtime::note_observers() {
  request_observers_.clear();
  delivery_observers_.clear();
  plain_replies_ = !observers_.empty();
  for (auto* o : observers_) {
    if (o->wants_requests()) request_observers_.push_back(o);
    if (o->wants_delivery()) delivery_observers_.push_back(o);
    if (!o->takes_plain_replies()) plain_replies_ = false;
  }
  plain_requests_ = !request_observers_.empty();
  for (auto* o : request_observers_)
    if (!o->takes_plain_requests()) plain_requests_ = false;
}

Proxy::Proxy(Runtime& rt, ProxyConfig cfg, uint64_t seed)
    : rt_(rt), cfg_(std::move(cfg)), rng_(mix_seed(seed, cfg_.name)),
      seed_(mix_seed(seed, cfg_.name)) {}

// The request is heap-allocated and outlives the proxy if need be: the proxy clears `proxy`
// when it no longer wants the answer (destroyed, shut down, upstream changed), and the callback,
// which libuv always runs, frees the request.
struct Proxy::Lookup {
  uv_getaddrinfo_t req;
  Proxy* proxy;
  Runtime* rt;
};

Proxy::~Proxy() {
  forget_lookup();
  close_pause_timer();
}

void Proxy::close_pause_timer() {
  if (!pause_timer_) return;
  accept_paused_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(pause_timer_),
           [](uv_handle_t* x) { delete reinterpret_cast<uv_timer_t*>(x); });
  pause_timer_ = nullptr;
}

void Proxy::reseed(uint64_t seed) {
  seed_ = mix_seed(seed, cfg_.name);
  rng_.seed(seed_);
  reseed_id_ = next_session_id_;
}

uint64_t Proxy::session_seed(uint64_t session_id) const {
  // splitmix64 of (seed, sequence number since the last reseed): the n-th connection after a
  // profile starts draws the same numbers in every run with that seed, whatever other
  // connections do meanwhile.
  uint64_t z = seed_ + (session_id - reseed_id_ + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool Proxy::start(std::string& err) {
  auto l = uv::parse_endpoint(cfg_.listen, err);
  if (!l) return false;
  listen_ep_ = *l;
  if (!set_upstream(cfg_.upstream, err)) return false;
  if (cfg_.enabled) return listen_now(err);
  sockaddr_storage ss;
  if (!uv::resolve(listen_ep_, ss, err, true)) return false;
  return true;
}

bool Proxy::set_upstream(const std::string& upstream, std::string& err) {
  auto u = uv::parse_endpoint(upstream, err);
  if (!u) return false;
  if (u->host.empty()) u->host = "127.0.0.1";
  if (u->port == 0) {
    err = fmt::format("upstream '{}' needs a port", upstream);
    return false;
  }
  // A host name is not looked up here: like Toxiproxy, a proxy whose upstream does not resolve
  // yet is accepted, and the name is looked up when a client connects.
  forget_lookup();
  upstream_ep_ = *u;
  upstream_literal_ = uv::literal_address(*u, upstream_addr_);
  upstream_cached_ = upstream_literal_;
  resolve_failed_logged_ = false;
  cfg_.upstream = upstream;
  // Sessions waiting for the old name's address take the new upstream's.
  if (!waiting_.empty()) {
    if (upstream_cached_) connect_waiting();
    else start_lookup();
  }
  return true;
}

const sockaddr* Proxy::upstream_sockaddr(Session& s) {
  const auto* addr = reinterpret_cast<const sockaddr*>(&upstream_addr_);
  if (upstream_literal_) return addr;
  if (upstream_cached_) {
    // A stale address still serves this session at once; the lookup serves the next ones.
    if (uv_now(rt_.loop()) - upstream_resolved_ms_ > kUpstreamRefreshMs) start_lookup();
    return addr;
  }
  waiting_.push_back(s.id());
  start_lookup(); // joins the lookup in flight; may fail at once and close s
  return nullptr;
}

void Proxy::start_lookup() {
  if (lookup_) return;
  auto* l = new Lookup{{}, this, &rt_};
  l->req.data = l;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  lookup_ = l;
  int rc = uv_getaddrinfo(
      rt_.loop(), &l->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* lk = static_cast<Lookup*>(req->data);
        lk->rt->lookup_done();
        if (lk->proxy) lk->proxy->on_resolved(status, res);
        uv_freeaddrinfo(res);
        delete lk;
      },
      upstream_ep_.host.c_str(), nullptr, &hints);
  if (rc < 0) {
    delete l;
    lookup_ = nullptr;
    on_resolved(rc, nullptr);
    return;
  }
  rt_.lookup_started();
}

void Proxy::forget_lookup() {
  if (!lookup_) return;
  lookup_->proxy = nullptr;
  // Not yet picked up by the thread pool: its callback runs soon with UV_EAI_CANCELED.
  uv_cancel(reinterpret_cast<uv_req_t*>(&lookup_->req));
  lookup_ = nullptr;
}

void Proxy::on_resolved(int status, const addrinfo* res) {
  lookup_ = nullptr;
  sockaddr_storage ss;
  if (status == 0 && !uv::first_address(res, upstream_ep_.port, ss)) status = UV_EAI_NODATA;
  if (status < 0) {
    ++stats_.resolve_failures;
    if (!resolve_failed_logged_) {
      log::warn("proxy {}: cannot resolve upstream '{}': {}{}", cfg_.name, upstream_ep_.host,
                uv_strerror(status), upstream_cached_ ? " (still using the last address)" : "");
      resolve_failed_logged_ = true;
    }
    // A cached address is kept and asked again after the refresh time; without one, the next
    // connection asks again.
    upstream_resolved_ms_ = uv_now(rt_.loop());
    std::vector<uint64_t> ids;
    ids.swap(waiting_);
    for (uint64_t id : ids) {
      auto it = sessions_.find(id);
      if (it == sessions_.end() || it->second->closing()) continue;
      ++stats_.connect_failures;
      it->second->close(CloseReason::ConnectFailed);
    }
    return;
  }
  if (resolve_failed_logged_) {
    log::info("proxy {}: upstream '{}' resolves again", cfg_.name, upstream_ep_.host);
    resolve_failed_logged_ = false;
  }
  upstream_addr_ = ss;
  upstream_cached_ = true;
  upstream_resolved_ms_ = uv_now(rt_.loop());
  log::debug("proxy {}: upstream {} is {}", cfg_.name, upstream_ep_.str(),
             uv::format_address(reinterpret_cast<const sockaddr*>(&upstream_addr_)));
  connect_waiting();
}

void Proxy::connect_waiting() {
  // connect_to() may close a session, which stays in sessions_ until its handles are closed.
  std::vector<uint64_t> ids;
  ids.swap(waiting_);
  for (uint64_t id : ids) {
    auto it = sessions_.find(id);
    if (it != sessions_.end() && !it->second->closing())
      it->second->connect_to(reinterpret_cast<const sockaddr*>(&upstream_addr_));
  }
}

void Proxy::set_accept_mode(AcceptMode m) {
  if (accept_mode_ == AcceptMode::Hang && m != AcceptMode::Hang)
    for (auto& [id, sp] : sessions_)
      if (sp->hung()) sp->close(CloseReason::Dropped);
  accept_mode_ = m;
}

bool Proxy::set_listen(const std::string& listen, std::string& err) {
  auto l = uv::parse_endpoint(listen, err);
  if (!l) return false;
  if (listen == cfg_.listen || (l->host == listen_ep_.host && l->port == listen_ep_.port &&
                                l->port != 0))
    return true;
  // Toxiproxy 2.12 compares the address resolved: a host name for the address bound is no
  // change either (no restart, connections kept).
  if (listening() && l->port != 0 && same_listen_address(listen)) return true;
  uv::Endpoint old_ep = listen_ep_;
  std::string old = cfg_.listen;
  bool was_listening = listening();
  close_listener();
  listen_ep_ = *l;
  cfg_.listen = listen;
  if (cfg_.enabled && !listen_now(err)) {
    listen_ep_ = old_ep;
    cfg_.listen = old;
    std::string ignored;
    if (was_listening) listen_now(ignored);
    return false;
  }
  // Toxiproxy restarts a proxy whose listen address changes; its connections go with it.
  drop_connections(false);
  return true;
}

bool Proxy::set_enabled(bool enabled, std::string& err) {
  if (enabled == cfg_.enabled && enabled == listening()) return true;
  if (enabled) {
    if (!listen_now(err)) return false;
    cfg_.enabled = true;
    return true;
  }
  cfg_.enabled = false;
  close_listener();
  std::vector<Session*> all;
  for (auto& [id, s] : sessions_) all.push_back(s.get());
  for (Session* s : all) s->close(CloseReason::ProxyDisabled);
  log::info("proxy {}: disabled (connects to {} are refused)", cfg_.name, cfg_.listen);
  return true;
}

namespace {
// An errno as Go words it (its syscall table is glibc's strerror, lower-cased), where libuv's
// own text differs: Toxiproxy's clients compare the listen errors it forwards from Go.
const char* go_errno_text(int rc) {
  switch (rc) {
  case UV_EADDRNOTAVAIL:
    return "cannot assign requested address";
  case UV_EAFNOSUPPORT:
    return "address family not supported by protocol";
  default:
    return uv_strerror(rc);
  }
}
} // namespace

bool Proxy::listen_now(std::string& err, bool resuming) {
  if (listener_) return true;
  sockaddr_storage ss;
  if (!uv::resolve(listen_ep_, ss, err, true)) return false;
  auto* h = new uv_tcp_t;
  uv_tcp_init(rt_.loop(), h);
  h->data = this;
  auto fail = [&](int rc, const char* what) {
    // Go's net.OpError, as Toxiproxy forwards it: "listen tcp 127.0.0.1:3310: bind: address
    // already in use", the address as resolved.
    err = fmt::format("listen tcp {}: {}: {}", uv::format_address(reinterpret_cast<sockaddr*>(&ss)),
                      what, go_errno_text(rc));
    uv_close(reinterpret_cast<uv_handle_t*>(h),
             [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
    return false;
  };
  int rc = uv_tcp_bind(h, reinterpret_cast<sockaddr*>(&ss), 0);
  if (rc < 0) return fail(rc, "bind");
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(h), rt_.options().backlog,
                 [](uv_stream_t* server, int status) {
                   static_cast<Proxy*>(server->data)->on_connection(status);
                 });
  // libuv reports a bind's EADDRINUSE from uv_listen (it defers the bind's error); Go, from bind.
  if (rc < 0) return fail(rc, rc == UV_EADDRINUSE ? "bind" : "listen");
  listener_ = h;
  // Report the address bound, as Toxiproxy does (localhost:3310 reads back as 127.0.0.1:3310,
  // port 0 as the port picked), and keep it, so that re-enabling binds the same one.
  sockaddr_storage bound{};
  int len = sizeof bound;
  if (uv_tcp_getsockname(h, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    std::string ignored;
    if (auto ep = uv::parse_endpoint(uv::format_address(reinterpret_cast<sockaddr*>(&bound)),
                                     ignored))
      listen_ep_ = *ep;
  }
  if (resuming)
    log::debug("proxy {}: accepting again on {}", cfg_.name, listen_address());
  else
    log::info("proxy {}: listening on {}, upstream {}", cfg_.name, listen_address(),
              cfg_.upstream);
  return true;
}

bool Proxy::same_listen_address(const std::string& listen) const {
  std::string ignored;
  auto ep = uv::parse_endpoint(listen, ignored);
  if (!ep || ep->port == 0) return false; // port 0 asks for a new port
  sockaddr_storage ss;
  if (!uv::resolve(*ep, ss, ignored, true)) return false;
  return uv::format_address(reinterpret_cast<sockaddr*>(&ss)) == listen_address();
}

std::string Proxy::listen_address() const {
  uv::Endpoint ep = listen_ep_;
  if (ep.host.empty()) ep.host = "0.0.0.0";
  return ep.str();
}

void Proxy::close_listener() {
  if (accept_paused_) {
    accept_paused_ = false;
    uv_timer_stop(pause_timer_);
  }
  if (!listener_) return;
  listener_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(listener_),
           [](uv_handle_t* x) { delete reinterpret_cast<uv_tcp_t*>(x); });
  listener_ = nullptr;
}

void Proxy::on_connection(int status) {
  if (status == UV_EMFILE || status == UV_ENFILE) {
    // libuv could not shed the waiting connections itself (its spare descriptor is gone) and
    // would call again at once, for ever: closing the listener ends its accept loop.
    note_fd_exhausted(status);
    return;
  }
  if (status < 0) {
    log::warn("proxy {}: accept failed: {}", cfg_.name, uv_strerror(status));
    return;
  }
  if (!listener_ || shutting_down_) return;
  uint64_t id = next_session_id_++;
  auto s = std::make_unique<Session>(*this, id);
  Session* sp = s.get();
  sessions_.emplace(id, std::move(s));
  rt_.session_opened();
  if (sp->accept(reinterpret_cast<uv_stream_t*>(listener_)) != 0) {
    sp->close(CloseReason::Error);
    return;
  }
  // Near the limit, a client that would take the last descriptors is closed at once and
  // accepting pauses: the API and the clients already served keep some (libuv alone would
  // accept until none is left, then shed every new connection, the API's too).
  const uint64_t limit = rt_.fd_limit();
  if (limit && 2 * rt_.sessions() + kFdCheckMargin >= limit &&
      !uv::platform::descriptors_free(1 + kFdHeadroom)) {
    sp->close(CloseReason::ConnectFailed);
    note_fd_exhausted(UV_EMFILE);
    return;
  }
  ++stats_.connections_total;
  if (accept_mode_ == AcceptMode::Reset) ++stats_.connections_refused;
  log::debug("proxy {}: session {} opened from {}", cfg_.name, id, sp->client_address());
  sp->start(accept_mode_);
  if (!(trim_timer_ && trim_timer_->active())) {
    if (!trim_timer_) trim_timer_ = std::make_unique<uv::Timer>(rt_.loop());
    trim_timer_->start(kTrimIntervalMs, [this] { trim_sessions(); }, kTrimIntervalMs);
    trim_timer_->unref();  // never what keeps the loop running
  }
}

void Proxy::watch_connect(Session& s) {
  const uint64_t now = uv_now(rt_.loop());
  connecting_.push_back({now + rt_.options().connect_timeout_ms, s.id()});
  if (connect_timer_ && connect_timer_->active()) return;
  if (!connect_timer_) connect_timer_ = std::make_unique<uv::Timer>(rt_.loop());
  connect_timer_->start(connecting_.front().due_ms - now, [this] { on_connect_deadlines(); });
  connect_timer_->unref();  // the connecting sessions' sockets keep the loop running
}

void Proxy::on_connect_deadlines() {
  const uint64_t now = uv_now(rt_.loop());
  while (!connecting_.empty() && connecting_.front().due_ms <= now) {
    const uint64_t id = connecting_.front().id;
    connecting_.pop_front();
    // Closing a session only begins here: it leaves sessions_ from its close callback.
    if (auto it = sessions_.find(id); it != sessions_.end()) it->second->connect_timed_out();
  }
  if (!connecting_.empty())
    connect_timer_->start(connecting_.front().due_ms - now, [this] { on_connect_deadlines(); });
}

void Proxy::trim_sessions() {
  // The RESP state and pack blocks of sessions that closed or went quiet since the last sweep:
  // their pages go back to the system (those a new session took meanwhile were reused while
  // resident).
  rt_.trim_pages();
  if (sessions_.empty()) {
    trim_timer_->stop();
    return;
  }
  size_t resp = 0, buffers = 0;
  for (auto& [id, s] : sessions_) {
    const Session::Trimmed t = s->trim_if_idle();
    resp += t.resp;
    buffers += t.buffers;
  }
  if (resp > 0) {
    log::debug("proxy {}: {} idle sessions freed their RESP state", cfg_.name, resp);
    rt_.trim_pages();
  }
  if (buffers > 0) log::debug("proxy {}: {} idle sessions freed buffers", cfg_.name, buffers);
  const size_t trimmed = std::max(resp, buffers);
  if (trimmed == 0) return;
  // The rest of what they freed came from the heap (queue room, arrays grown past their first
  // size): among the sessions' other memory, its pages stay in the heap unless
  // handed back (worth a walk of the heap's free lists once a few dozen sessions add up).
  trimmed_since_release_ += trimmed;
  if (trimmed_since_release_ >= kTrimsPerRelease) {
    trimmed_since_release_ = 0;
    uv::platform::release_free_memory();
  }
}

void Proxy::note_connect_failure(int err) {
  ++stats_.connect_failures;
  if (!upstream_down_logged_) {
    log::warn("proxy {}: upstream {} unreachable: {}", cfg_.name, cfg_.upstream,
              err == UV_ETIMEDOUT ? "connect timed out" : uv_strerror(err));
    upstream_down_logged_ = true;
  }
}

void Proxy::note_fd_exhausted(int err) {
  ++stats_.fd_exhausted;
  if (!fd_episode_) {
    fd_episode_ = true;
    fd_episode_start_ms_ = uv_now(rt_.loop());
    fd_episode_base_ = stats_.fd_exhausted - 1;
    log::warn("proxy {}: out of file descriptors ({}): new clients are refused for {} ms at a "
              "time until connections close",
              cfg_.name, uv_strerror(err), kFdBackoffMs);
  }
  pause_accepting();
}

void Proxy::pause_accepting() {
  if (accept_paused_ || !listener_ || shutting_down_) return;
  close_listener();
  if (!pause_timer_) {
    pause_timer_ = new uv_timer_t;
    uv_timer_init(rt_.loop(), pause_timer_);
    pause_timer_->data = this;
  }
  accept_paused_ = true;
  ++stats_.accept_pauses;
  uv_timer_start(
      pause_timer_, [](uv_timer_t* t) { static_cast<Proxy*>(t->data)->on_pause_over(); },
      kFdBackoffMs, 0);
}

void Proxy::on_pause_over() {
  if (!accept_paused_) return;
  accept_paused_ = false;
  std::string err;
  if (listen_now(err, true)) {
    relisten_failed_logged_ = false;
    return;
  }
  // Still no descriptor for the listening socket (or, rarely, the port was taken meanwhile):
  // try again after another back-off.
  if (!relisten_failed_logged_) {
    log::warn("proxy {}: cannot listen again yet: {}", cfg_.name, err);
    relisten_failed_logged_ = true;
  }
  accept_paused_ = true;
  uv_timer_start(
      pause_timer_, [](uv_timer_t* t) { static_cast<Proxy*>(t->data)->on_pause_over(); },
      kFdBackoffMs, 0);
}

void Proxy::note_connect_ok() {
  if (fd_episode_) {
    fd_episode_ = false;
    log::info("proxy {}: file descriptors free again after {} ms ({} connections shed)",
              cfg_.name, uv_now(rt_.loop()) - fd_episode_start_ms_,
              stats_.fd_exhausted - fd_episode_base_);
  }
  if (upstream_down_logged_) {
    log::info("proxy {}: upstream {} reachable again", cfg_.name, cfg_.upstream);
    upstream_down_logged_ = false;
  }
}

void Proxy::session_closed(Session& s) {
  stats_.bytes_from_client += s.bytes_from_client();
  stats_.bytes_from_upstream += s.bytes_from_upstream();
  log::debug("proxy {}: session {} closed ({}), {} bytes from client, {} from upstream",
             cfg_.name, s.id(), to_string(s.close_reason()), s.bytes_from_client(),
             s.bytes_from_upstream());
  std::erase(waiting_, s.id());
  if (sessions_.erase(s.id())) rt_.session_gone();
  maybe_finish_shutdown();
}

void Proxy::drop_connections(bool rst) {
  std::vector<Session*> all;
  for (auto& [id, s] : sessions_) all.push_back(s.get());
  for (Session* s : all) {
    if (rst) s->reset(CloseReason::Dropped);
    else s->close(CloseReason::Dropped);
  }
}

void Proxy::shutdown(std::function<void()> on_done) {
  shutting_down_ = true;
  on_shutdown_ = std::move(on_done);
  forget_lookup();
  close_listener();
  close_pause_timer();
  drop_connections(false);
  maybe_finish_shutdown();
}

void Proxy::maybe_finish_shutdown() {
  if (!shutting_down_ || !sessions_.empty() || !on_shutdown_) return;
  auto cb = std::move(on_shutdown_);
  on_shutdown_ = nullptr;
  cb(); // may destroy this proxy: nothing after this line
}

const toxics::Toxic* Proxy::find_toxic(std::string_view name) const {
  for (const auto& t : toxics_)
    if (t.name == name) return &t;
  return nullptr;
}

std::string ReplyRewriter::refuses_toxic(const toxics::Toxic& t) const {
  return fmt::format("toxic type '{}' does not act on this proxy", t.type);
}

std::string Proxy::refuses_toxic(const toxics::Toxic& t) const {
  if (!t.impl || !t.impl->needs_deployment()) return {};
  if (!rewriter_)
    return fmt::format("toxic type '{}' acts on the proxies of a deployment (faultline "
                       "--sentinel), and proxy '{}' fronts a single Redis",
                       t.type, cfg_.name);
  return rewriter_->refuses_toxic(t);
}

void Proxy::add_toxic(toxics::Toxic t) {
  toxics_.push_back(t);
  for (auto& [id, s] : sessions_) s->add_toxic(toxics_.back());
  if (rewriter_ && t.impl && t.impl->needs_deployment()) rewriter_->toxic_added(t);
  log::info("proxy {}: toxic {} ({}, {}) added", cfg_.name, t.name, t.type,
            toxics::to_string(t.stream));
}

void Proxy::update_toxic(toxics::Toxic t) {
  for (auto& cur : toxics_) {
    if (cur.name != t.name) continue;
    cur = std::move(t);
    for (auto& [id, s] : sessions_) s->replace_toxic(cur);
    if (rewriter_ && cur.impl && cur.impl->needs_deployment()) rewriter_->toxic_added(cur);
    return;
  }
}

bool Proxy::remove_toxic(std::string_view name) {
  auto it = std::find_if(toxics_.begin(), toxics_.end(),
                         [&](const toxics::Toxic& t) { return t.name == name; });
  if (it == toxics_.end()) return false;
  toxics::Toxic t = std::move(*it);
  toxics_.erase(it);
  for (auto& [id, s] : sessions_) s->remove_toxic(t.name, t.stream);
  log::info("proxy {}: toxic {} removed", cfg_.name, t.name);
  warn_if_never_matched(t);
  return true;
}

// A RESP toxic whose filter selected no command in its whole life most likely names a command
// or key the clients never send (a typo, the wrong case of a glob): say so once, as it goes.
void Proxy::warn_if_never_matched(const toxics::Toxic& t) const {
  const toxics::RespRule* rule = t.impl ? t.impl->resp_rule() : nullptr;
  if (!rule || rule->matched() != 0) return;
  nlohmann::json f = nlohmann::json::object();
  rule->filter().to_json(f);
  std::string filter;
  for (const char* k : {"commands", "keys"}) {
    auto it = f.find(k);
    if (it == f.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty()))
      continue;
    filter += fmt::format("{}{}={}", filter.empty() ? "" : " ", k, it->dump());
  }
  log::warn("proxy {}: toxic {} ({}) removed having matched no command{}", cfg_.name, t.name,
            t.type, filter.empty() ? "" : " (" + filter + ")");
}

void Proxy::remove_all_toxics() {
  while (!toxics_.empty()) remove_toxic(std::string(toxics_.back().name));
}

// ---- Registry ----

Proxy* Registry::create(ProxyConfig cfg, std::string& err) {
  if (proxies_.count(cfg.name)) {
    err = fmt::format("proxy already exists");
    return nullptr;
  }
  auto p = std::make_unique<Proxy>(rt_, cfg, seed_);
  if (!p->start(err)) return nullptr;
  Proxy* raw = p.get();
  proxies_.emplace(cfg.name, std::move(p));
  return raw;
}

Proxy* Registry::replace(ProxyConfig cfg, std::string& err) {
  auto it = proxies_.find(cfg.name);
  if (it == proxies_.end()) return create(std::move(cfg), err);
  std::string ignored;
  it->second->set_enabled(false, ignored); // frees its port at once for the new one
  auto p = std::make_unique<Proxy>(rt_, cfg, seed_);
  if (!p->start(err)) return nullptr;
  remove(cfg.name);
  Proxy* raw = p.get();
  proxies_.emplace(cfg.name, std::move(p));
  return raw;
}

Proxy* Registry::find(std::string_view name) {
  auto it = proxies_.find(name);
  return it == proxies_.end() ? nullptr : it->second.get();
}

bool Registry::remove(std::string_view name) {
  auto it = proxies_.find(name);
  if (it == proxies_.end()) return false;
  std::unique_ptr<Proxy> p = std::move(it->second);
  proxies_.erase(it);
  Proxy* raw = p.get();
  closing_.push_back(std::move(p));
  ++closing_left_;
  raw->shutdown([this, raw] {
    auto it2 = std::find_if(closing_.begin(), closing_.end(),
                            [raw](const auto& q) { return q.get() == raw; });
    // Destroying the proxy from inside its own callback is safe: it does nothing after it.
    std::unique_ptr<Proxy> dead;
    if (it2 != closing_.end()) {
      dead = std::move(*it2);
      closing_.erase(it2);
    }
    --closing_left_;
    dead.reset();
    reap();
  });
  return true;
}

void Registry::shutdown(std::function<void()> on_done) {
  on_done_ = std::move(on_done);
  std::vector<std::string> names;
  for (auto& [name, p] : proxies_) names.push_back(name);
  for (auto& n : names) remove(n);
  reap();
}

void Registry::reap() {
  if (on_done_ && closing_left_ == 0 && proxies_.empty()) {
    auto cb = std::move(on_done_);
    on_done_ = nullptr;
    cb();
  }
}

} // namespace faultline::proxy
