#pragma once
// A named proxy: one listener, one upstream, its sessions and its toxics. The registry holds every
// proxy of one loop by name; the command line defines the first one ("redis"), the control API
// and profiles add more at run time.
//
// An upstream host name is looked up on connect, never on the loop's thread: one uv_getaddrinfo
// per proxy at most, its answer cached for 5 s. Sessions that need an address before the first
// answer wait (by id) in waiting_; once an address is cached, a stale one is used at once while
// a new lookup runs in the background. A literal IP address is never looked up.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <uv.h>

#include "proxy/rewriter.h"
#include "proxy/runtime.h"
#include "proxy/session.h"
#include "toxics/toxic.h"
#include "uv/address.h"
#include "uv/timer.h"

namespace faultline::proxy {

struct ProxyConfig {
  std::string name;
  std::string listen;   // host:port as given (port 0 = pick a free one)
  std::string upstream; // host:port
  bool enabled = true;
};

struct ProxyStats {
  uint64_t connections_total = 0;
  uint64_t connections_refused = 0; // accepted while the accept mode resets or upstream failed
  uint64_t connect_failures = 0;    // includes sessions closed because the upstream's name failed
  uint64_t resolve_failures = 0;    // lookups of the upstream's host name that failed
  uint64_t fd_exhausted = 0;        // accepts or upstream sockets that found no descriptor free
  uint64_t accept_pauses = 0;       // times the listener stopped for kFdBackoffMs because of them
  uint64_t bytes_from_client = 0;   // of closed sessions; add live sessions for the total
  uint64_t bytes_from_upstream = 0;
};

class Proxy {
public:
  // How long accepting stops when no descriptor is free (see note_fd_exhausted).
  static constexpr uint64_t kFdBackoffMs = 100;
  // Descriptors a new client must leave free, beside the one toward Redis: for the control API,
  // log files and name lookups. Checked only when the sessions of the loop come within
  // kFdCheckMargin descriptors of the limit.
  static constexpr int kFdHeadroom = 4;
  static constexpr uint64_t kFdCheckMargin = 64;

  Proxy(Runtime& rt, ProxyConfig cfg, uint64_t seed);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Validates addresses and, when enabled, starts listening. False with err set (one line).
  bool start(std::string& err);
  // enabled=false closes the listener (connects are refused) and closes every session.
  bool set_enabled(bool enabled, std::string& err);
  bool set_listen(const std::string& listen, std::string& err);
  bool set_upstream(const std::string& upstream, std::string& err);
  // Leaving accept=hang closes the connections it hung (they were never forwarded).
  void set_accept_mode(AcceptMode m);
  AcceptMode accept_mode() const { return accept_mode_; }
  // A deployment's proxy rewrites the replies that name its nodes (proxy/rewriter.h); sessions
  // that start afterwards use it. `messages`: pub/sub messages too (a sentinel's events);
  // `redirects`: error replies may be MOVED/ASK (a cluster node's).
  void set_rewriter(std::shared_ptr<ReplyRewriter> r, bool messages = false,
                    bool redirects = false) {
    rewriter_ = std::move(r);
    rewrite_messages_ = messages && rewriter_;
    rewrite_redirects_ = redirects && rewriter_;
  }
  ReplyRewriter* rewriter() const { return rewriter_.get(); }
  bool rewrites_messages() const { return rewrite_messages_; }
  bool rewrites_redirects() const { return rewrite_redirects_; }
  // Close every session; the listener keeps accepting.
  void drop_connections(bool rst);
  // Close listener and sessions; on_done runs once every handle is closed.
  void shutdown(std::function<void()> on_done);

  // Toxics, in the order they were added. Names are unique per proxy.
  const std::vector<toxics::Toxic>& toxics() const { return toxics_; }
  const toxics::Toxic* find_toxic(std::string_view name) const;
  // Why this proxy cannot take `t` (empty: it can): a toxic that acts through a deployment's
  // rewriter (sentinel_stale) needs a proxy whose rewriter takes it.
  std::string refuses_toxic(const toxics::Toxic& t) const;
  void add_toxic(toxics::Toxic t);
  void update_toxic(toxics::Toxic t); // same name
  bool remove_toxic(std::string_view name);
  void remove_all_toxics();

  const std::string& name() const { return cfg_.name; }
  const ProxyConfig& config() const { return cfg_; }
  // The address bound (host resolved, port 0 replaced), once listening; before, as given.
  std::string listen_address() const;
  // Whether `listen` names the address listen_address() reports (its host resolved, as
  // Toxiproxy's Differs does): then setting it again changes nothing.
  bool same_listen_address(const std::string& listen) const;
  const std::string& upstream_address() const { return cfg_.upstream; }
  bool enabled() const { return cfg_.enabled; }
  // Also while accepting is paused for want of descriptors (it resumes by itself).
  bool listening() const { return listener_ != nullptr || accept_paused_; }
  bool accept_paused() const { return accept_paused_; }
  const ProxyStats& stats() const { return stats_; }
  const std::unordered_map<uint64_t, std::unique_ptr<Session>>& sessions() const {
    return sessions_;
  }

  // Used by sessions.
  Runtime& runtime() { return rt_; }
  std::mt19937_64& rng() { return rng_; }
  // Restart the generator from a seed (mixed with the name, like the registry's): a profile's
  // seed makes its run's random choices repeatable.
  void reseed(uint64_t seed);
  // The seed of a session's own generator (Session::rng()).
  uint64_t session_seed(uint64_t session_id) const;
  // The address for s to connect to, or nullptr: s waits for the lookup of the upstream's host
  // name, and the proxy later calls s.connect_to() or closes s (ConnectFailed).
  const sockaddr* upstream_sockaddr(Session& s);
  void note_connect_failure(int err);
  void note_connect_ok();
  // A session starts connecting upstream (or looking its host name up): its connect deadline,
  // connect_timeout_ms from now, is kept here with every other session's (connect_timed_out()).
  void watch_connect(Session& s);
  // No descriptor was free (EMFILE, ENFILE) for an accept or for a session's upstream socket:
  // stop accepting for kFdBackoffMs (the listener is closed, so clients are refused meanwhile
  // and the descriptors that free up are left to the API and the sessions), then listen again.
  // Counted every time, logged once per episode (until a session connects again).
  void note_fd_exhausted(int err);
  void session_closed(Session& s);
  uint64_t session_count() const { return sessions_.size(); }

private:
  void warn_if_never_matched(const toxics::Toxic& t) const;
  struct Lookup; // a uv_getaddrinfo request in flight, freed by its callback
  void start_lookup();
  void forget_lookup(); // the answer of the lookup in flight, if any, is no longer wanted
  void on_resolved(int status, const addrinfo* res);
  void connect_waiting();
  bool listen_now(std::string& err, bool resuming = false);
  void close_listener(); // also ends a pause: the listener stays closed
  void pause_accepting();
  void on_pause_over();
  void close_pause_timer();
  void on_connection(int status);
  void maybe_finish_shutdown();
  // Idle sessions free their RESP state (Session::trim_if_idle): a session is trimmed after
  // one to two intervals without a byte. A sweep walks every session: a few instructions each.
  static constexpr uint64_t kTrimIntervalMs = 1000;
  static constexpr size_t kTrimsPerRelease = 16;
  void trim_sessions();
  // The connect deadlines of this proxy's sessions, in the order they started: one timer for
  // all, not one per connection (a timer is 152 bytes, made and freed per connection, and 2,000
  // clients connecting at once would leave that much in holes of the heap). They share one
  // timeout, so the queue is in deadline order; an entry whose session connected, or is gone,
  // is dropped when it comes due.
  struct Connecting {
    uint64_t due_ms;
    uint64_t id;
  };
  std::deque<Connecting> connecting_;
  std::unique_ptr<uv::Timer> connect_timer_;  // armed for the front's deadline (unreferenced)
  void on_connect_deadlines();

  Runtime& rt_;
  ProxyConfig cfg_;
  uv::Endpoint listen_ep_;
  uv::Endpoint upstream_ep_;
  sockaddr_storage upstream_addr_{};
  bool upstream_literal_ = true;
  bool upstream_cached_ = false; // upstream_addr_ holds an address (always for a literal)
  uint64_t upstream_resolved_ms_ = 0;
  Lookup* lookup_ = nullptr;      // the lookup in flight, at most one
  std::vector<uint64_t> waiting_; // ids of sessions waiting for the first address
  bool resolve_failed_logged_ = false;
  uv_tcp_t* listener_ = nullptr; // heap, freed by its close callback
  uv_timer_t* pause_timer_ = nullptr; // heap, made on the first pause, freed by its close callback
  bool accept_paused_ = false;
  bool fd_episode_ = false;       // descriptors ran out and no session has connected since
  uint64_t fd_episode_start_ms_ = 0;
  uint64_t fd_episode_base_ = 0;  // stats_.fd_exhausted when the episode began
  bool relisten_failed_logged_ = false;
  std::mt19937_64 rng_;
  uint64_t seed_;
  uint64_t reseed_id_ = 1; // the first session id after the last reseed
  AcceptMode accept_mode_ = AcceptMode::Normal;
  std::shared_ptr<ReplyRewriter> rewriter_;
  bool rewrite_messages_ = false;
  bool rewrite_redirects_ = false;
  std::vector<toxics::Toxic> toxics_;
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  std::unique_ptr<uv::Timer> trim_timer_;  // the sweep, while there are sessions (unreferenced)
  size_t trimmed_since_release_ = 0;       // RESP states freed since memory was last handed back
  uint64_t next_session_id_ = 1;
  ProxyStats stats_;
  bool upstream_down_logged_ = false;
  std::function<void()> on_shutdown_;
  bool shutting_down_ = false;
};

class Registry {
public:
  Registry(Runtime& rt, uint64_t seed) : rt_(rt), seed_(seed) {}
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Creates and starts a proxy. nullptr with err set if the name exists or start failed.
  Proxy* create(ProxyConfig cfg, std::string& err);
  // Toxiproxy's AddOrReplace for a proxy whose addresses changed: the proxy of that name is
  // stopped (disabled: listener closed, connections dropped), then a new one from cfg starts
  // and takes its name. If the new one cannot start, nullptr with err set, and the old one
  // stays, stopped, as in Toxiproxy. Without a proxy of that name, create().
  Proxy* replace(ProxyConfig cfg, std::string& err);
  Proxy* find(std::string_view name);
  // Stops and removes a proxy. Its handles close in the background; the name is free at once.
  bool remove(std::string_view name);
  const std::map<std::string, std::unique_ptr<Proxy>, std::less<>>& proxies() const {
    return proxies_;
  }
  // Close everything; on_done when every handle is closed.
  void shutdown(std::function<void()> on_done);
  Runtime& runtime() { return rt_; }
  uint64_t seed() const { return seed_; }

private:
  void reap();
  Runtime& rt_;
  uint64_t seed_;
  std::map<std::string, std::unique_ptr<Proxy>, std::less<>> proxies_;
  std::vector<std::unique_ptr<Proxy>> closing_;
  std::function<void()> on_done_;
  size_t closing_left_ = 0;
};

} // namespace faultline::proxy
