#include "observe/clients.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "proxy/proxy.h"
#include "proxy/session.h"

namespace faultline::observe {

using nlohmann::json;

namespace {

constexpr uint64_t kSecondUs = 1'000'000;

double to_ms(uint64_t us) { return std::round(static_cast<double>(us) / 100.0) / 10.0; }
double rel_ms(uint64_t t_us, uint64_t epoch_us) { return to_ms(t_us >= epoch_us ? t_us - epoch_us : 0); }

template <class T> void push_bounded(std::deque<T>& d, T v, size_t cap) {
  d.push_back(std::move(v));
  while (d.size() > cap) d.pop_front();
}

// Peak rate over a sliding second: `last` holds the connects of the last second.
uint64_t slide(std::deque<uint64_t>& last, uint64_t now_us) {
  last.push_back(now_us);
  while (!last.empty() && last.front() + kSecondUs <= now_us) last.pop_front();
  return last.size();
}

uint64_t fnv1a(std::string_view a, std::string_view b) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  };
  mix(a);
  mix("|");
  mix(b);
  return h;
}

// Commands a client sends to set a connection up, and so replays on every new connection.
bool is_handshake(std::string_view name, std::string_view sub) {
  if (name == "HELLO" || name == "AUTH" || name == "SELECT" || name == "READONLY" ||
      name == "READWRITE" || name == "SUBSCRIBE" || name == "PSUBSCRIBE" || name == "SSUBSCRIBE")
    return true;
  if (name == "CLIENT")
    return sub == "SETNAME" || sub == "SETINFO" || sub == "TRACKING" || sub == "NO-EVICT" ||
           sub == "NO-TOUCH";
  return false;
}
// Commands that may come before or inside a handshake without ending it (readiness checks).
bool is_neutral(std::string_view name) {
  return name == "PING" || name == "INFO" || name == "COMMAND" || name == "ECHO";
}

// Errors that say "not now" rather than "wrong command": a client is expected to retry them.
bool is_unavailable(std::string_view prefix) {
  return prefix == "LOADING" || prefix == "READONLY" || prefix == "MASTERDOWN" ||
         prefix == "BUSY" || prefix == "TRYAGAIN" || prefix == "CLUSTERDOWN" ||
         prefix == "NOREPLICAS" || prefix == "OOM";
}

std::string_view error_word(std::string_view payload) {
  // "-LOADING Redis is loading...\r\n" → "LOADING"
  if (!payload.empty() && (payload[0] == '-' || payload[0] == '!')) payload.remove_prefix(1);
  if (!payload.empty() && payload[0] >= '0' && payload[0] <= '9') {
    // blob error: !<len>\r\n<text>
    auto nl = payload.find('\n');
    payload = nl == std::string_view::npos ? std::string_view{} : payload.substr(nl + 1);
  }
  auto end = payload.find_first_of(" \r\n");
  return payload.substr(0, end);
}

bool failed_close(proxy::CloseReason r) {
  using R = proxy::CloseReason;
  switch (r) {
  case R::ClientClosed:
  case R::UpstreamClosed:
  case R::ClientReset:
  case R::Shutdown: return false;
  default: return true;
  }
}

// Failures that happen without a fault set on the proxy: they make a window of their own.
bool point_fault_reason(proxy::CloseReason r) {
  using R = proxy::CloseReason;
  return r == R::ConnectFailed || r == R::ConnectTimeout || r == R::UpstreamReset ||
         r == R::Dropped;
}

std::string handshake_label(const resp::RequestFrame& f) {
  std::string s(f.name);
  if (!f.sub.empty()) {
    s += ' ';
    s += f.sub;
  }
  // The database and protocol are part of what must be replayed; secrets (AUTH) never are.
  if ((f.name == "SELECT" || f.name == "HELLO") && f.args.size() > 1 && f.args[1].data.size() <= 8) {
    s += ' ';
    s += f.args[1].data;
  }
  return s;
}

} // namespace

std::string_view classify_backoff(const std::vector<double>& v) {
  if (v.size() < 3) return "unknown";
  auto [mn, mx] = std::minmax_element(v.begin(), v.end());
  if (*mx < 1.5 * std::max(*mn, 1.0)) return "constant";
  size_t up = 0, down = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    // A tolerance of 10% (and 5 ms) absorbs scheduling noise and jitter-free capping.
    double tol = std::max(0.1 * v[i - 1], 5.0);
    if (v[i] > v[i - 1] + tol) ++up;
    else if (v[i] < v[i - 1] - tol) ++down;
  }
  size_t steps = v.size() - 1;
  if (down == 0 && up > 0 && v.back() >= 1.5 * v.front()) return "growing";
  if (up == 0 && down > 0 && v.front() >= 1.5 * v.back()) return "shrinking";
  if (up >= 2 * down && v.back() >= 1.5 * v.front() && down * 4 <= steps) return "growing";
  return "irregular";
}

std::optional<double> ClientRecord::Window::time_to_recover_ms() const {
  if (!end_us || !recovered_us) return std::nullopt;
  return to_ms(*recovered_us - *end_us);
}

ClientRecord::Window* ClientRecord::current() {
  if (windows_.empty()) return nullptr;
  Window& w = windows_.back();
  if (w.end_us && w.recovered_us) return nullptr;
  return &w;
}

void ClientRecord::open_window(uint64_t now_us) {
  Window w;
  w.start_us = now_us;
  push_bounded(windows_, std::move(w), lim_.windows);
}

void ClientRecord::add_fault_labels(Window& w, const std::vector<std::string>& faults) {
  for (const auto& f : faults)
    if (std::find(w.faults.begin(), w.faults.end(), f) == w.faults.end()) w.faults.push_back(f);
}

void ClientRecord::on_connect(uint64_t now_us) {
  ++connects_;
  push_bounded(recent_connects_, now_us, lim_.recent_connects);
  uint64_t cps = slide(last_second_, now_us);
  if (cps > peak_cps_) {
    peak_cps_ = cps;
    peak_at_us_ = now_us;
  }
  uint64_t sec = now_us / kSecondUs;
  if (!per_second_.empty() && per_second_.back().first == sec) ++per_second_.back().second;
  else push_bounded(per_second_, {sec, uint64_t{1}}, lim_.timeline_seconds);

  Window* w = current();
  std::optional<double> interval;
  if (last_failed_) interval = to_ms(now_us - last_failure_us_);
  if (interval) push_bounded(intervals_, *interval, lim_.recent_intervals);
  if (w) {
    ++w->connects;
    w->peak_connects_per_second = std::max<uint64_t>(w->peak_connects_per_second,
                                                     slide(w->last_second, now_us));
    if (interval && w->reconnect_intervals_ms.size() < lim_.recent_intervals)
      w->reconnect_intervals_ms.push_back(*interval);
  }
  last_failed_ = false;
}

void ClientRecord::on_connection_end(uint64_t now_us, bool failed) {
  if (!failed) return;
  ++failed_connections_;
  last_failed_ = true;
  last_failure_us_ = now_us;
  if (Window* w = current()) ++w->failed_connections;
}

bool ClientRecord::on_request(uint64_t now_us, const CommandIdent& c, uint64_t session) {
  ++commands_seen_;
  if (candidates_.empty()) return false;
  while (!candidates_.empty() && candidates_.front().at_us + lim_.resend_window_us < now_us)
    candidates_.pop_front();
  for (auto it = candidates_.begin(); it != candidates_.end(); ++it) {
    if (it->cmd_hash != c.cmd_hash || it->key_hash != c.key_hash) continue;
    ++resends_;
    ++resent_by_command_[std::string(c.name)];
    push_bounded(recent_resends_,
                 Resend{now_us, std::string(c.name), it->reason, to_ms(now_us - it->at_us),
                        it->session == session},
                 lim_.recent_resends);
    if (Window* w = current()) ++w->resends;
    candidates_.erase(it);
    return true;
  }
  return false;
}

void ClientRecord::on_command_failed(uint64_t now_us, const CommandIdent& c, uint64_t session,
                                     std::string_view reason) {
  push_bounded(candidates_, Candidate{now_us, c.cmd_hash, c.key_hash, session, std::string(reason)},
               lim_.candidates);
}

void ClientRecord::on_success(uint64_t now_us) {
  ++successes_;
  if (windows_.empty()) return;
  Window& w = windows_.back();
  if (w.end_us && !w.recovered_us && now_us >= *w.end_us) w.recovered_us = now_us;
}

void ClientRecord::set_faults(uint64_t now_us, bool faulted, const std::vector<std::string>& f) {
  if (faulted && !faulted_) {
    Window* w = windows_.empty() ? nullptr : &windows_.back();
    // A point fault just before (a dropped connection the poll had not seen as a state yet)
    // belongs to this window; so does a window that closed a moment ago without recovering.
    if (w && w->end_us && !w->recovered_us && now_us - *w->end_us < 50'000) w->end_us.reset();
    else open_window(now_us);
  } else if (!faulted && faulted_) {
    if (!windows_.empty() && !windows_.back().end_us) windows_.back().end_us = now_us;
  }
  faulted_ = faulted;
  faults_ = f;
  if (faulted && !windows_.empty()) add_fault_labels(windows_.back(), f);
}

void ClientRecord::point_fault(uint64_t now_us, std::string_view label) {
  if (faulted_) {
    add_fault_labels(windows_.back(), {std::string(label)});
    return;
  }
  Window* w = current();
  if (!w) {
    open_window(now_us);
    w = &windows_.back();
  }
  w->end_us = std::max(now_us, w->end_us.value_or(0));
  add_fault_labels(*w, {std::string(label)});
}

void ClientRecord::on_handshake(uint64_t now_us, uint64_t session,
                                const std::vector<std::string>& commands) {
  ++handshake_connections_;
  for (const auto& c : commands) ++handshake_counts_[c];
  push_bounded(handshakes_, Handshake{now_us, session, commands}, lim_.recent_handshakes);
}

void ClientRecord::clear() {
  // A fault still in effect starts a fresh window at the next sync.
  *this = ClientRecord(lim_);
}

std::optional<double> ClientRecord::worst_time_to_recover_ms(uint64_t now_us) const {
  std::optional<double> worst;
  for (const auto& w : windows_) {
    if (!w.end_us) continue;
    double t = w.recovered_us ? to_ms(*w.recovered_us - *w.end_us) : to_ms(now_us - *w.end_us);
    worst = std::max(worst.value_or(0.0), t);
  }
  return worst;
}

json ClientRecord::to_json(uint64_t now_us, uint64_t epoch_us) const {
  json recent = json::array();
  for (uint64_t t : recent_connects_) recent.push_back(rel_ms(t, epoch_us));
  json per_second = json::array();
  uint64_t epoch_sec = epoch_us / kSecondUs;
  for (const auto& [sec, n] : per_second_)
    per_second.push_back(json::array({sec >= epoch_sec ? sec - epoch_sec : 0, n}));
  std::vector<double> intervals(intervals_.begin(), intervals_.end());

  json windows = json::array();
  for (const auto& w : windows_) {
    auto ttr = w.time_to_recover_ms();
    windows.push_back({
        {"start_ms", rel_ms(w.start_us, epoch_us)},
        {"end_ms", w.end_us ? json(rel_ms(*w.end_us, epoch_us)) : json(nullptr)},
        {"faults", w.faults},
        {"connects", w.connects},
        {"failed_connections", w.failed_connections},
        {"peak_connects_per_second", w.peak_connects_per_second},
        {"reconnect_intervals_ms", w.reconnect_intervals_ms},
        {"backoff", classify_backoff(w.reconnect_intervals_ms)},
        {"resends", w.resends},
        {"recovered_ms", w.recovered_us ? json(rel_ms(*w.recovered_us, epoch_us)) : json(nullptr)},
        {"time_to_recover_ms", ttr ? json(*ttr) : json(nullptr)},
    });
  }
  json resend_list = json::array();
  for (const auto& r : recent_resends_)
    resend_list.push_back({{"at_ms", rel_ms(r.at_us, epoch_us)},
                           {"command", r.command},
                           {"reason", r.reason},
                           {"after_ms", r.after_ms},
                           {"same_connection", r.same_connection}});
  json hs = json::array();
  for (const auto& h : handshakes_)
    hs.push_back({{"at_ms", rel_ms(h.at_us, epoch_us)},
                  {"connection", h.session},
                  {"commands", h.commands}});
  auto worst = worst_time_to_recover_ms(now_us);
  std::optional<double> last;
  for (auto it = windows_.rbegin(); it != windows_.rend(); ++it)
    if (auto t = it->time_to_recover_ms()) {
      last = t;
      break;
    }
  return {
      {"now_ms", rel_ms(now_us, epoch_us)},
      {"faulted", faulted_},
      {"faults", faults_},
      {"commands", commands_seen_},
      {"successful_replies", successes_},
      {"connects",
       {{"total", connects_},
        {"failed", failed_connections_},
        {"peak_per_second", peak_cps_},
        {"peak_at_ms", peak_cps_ ? json(rel_ms(peak_at_us_, epoch_us)) : json(nullptr)},
        {"recent_ms", std::move(recent)},
        {"per_second", std::move(per_second)}}},
      {"reconnect_intervals_ms", intervals},
      {"backoff", classify_backoff(intervals)},
      {"recovery",
       {{"last_time_to_recover_ms", last ? json(*last) : json(nullptr)},
        {"worst_time_to_recover_ms", worst ? json(*worst) : json(nullptr)}}},
      {"resends",
       {{"total", resends_}, {"by_command", resent_by_command_}, {"recent", std::move(resend_list)}}},
      {"handshake",
       {{"connections", handshake_connections_},
        {"commands", handshake_counts_},
        {"recent", std::move(hs)}}},
      {"windows", std::move(windows)},
  };
}

// ---- the observer ----

ClientVerdicts::ClientVerdicts(proxy::Registry& registry, VerdictLimits limits, Clock clock)
    : registry_(registry), lim_(limits), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return uv_hrtime() / 1000; };
  epoch_us_ = clock_();
}

ClientVerdicts::~ClientVerdicts() = default;

void ClientVerdicts::start(uv_loop_t* loop, uint32_t poll_ms) {
  if (timer_) return;
  timer_ = new uv_timer_t;
  uv_timer_init(loop, timer_);
  timer_->data = this;
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<ClientVerdicts*>(t->data)->poll(); },
                 poll_ms, poll_ms);
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
}

void ClientVerdicts::close(std::function<void()> done) {
  if (!timer_) {
    if (done) done();
    return;
  }
  uv_timer_stop(timer_);
  auto* h = reinterpret_cast<uv_handle_t*>(timer_);
  h->data = new std::function<void()>(std::move(done));
  timer_ = nullptr;
  uv_close(h, [](uv_handle_t* h) {
    auto* cb = static_cast<std::function<void()>*>(h->data);
    delete reinterpret_cast<uv_timer_t*>(h);
    if (*cb) (*cb)();
    delete cb;
  });
}

ClientRecord& ClientVerdicts::record_named(const std::string& name) {
  auto it = records_.find(name);
  if (it == records_.end())
    it = records_.emplace(name, std::make_unique<ClientRecord>(lim_)).first;
  return *it->second;
}

void ClientVerdicts::sync(const proxy::Proxy& p, ClientRecord& rec, uint64_t now) {
  bool faulted = !p.enabled() || p.accept_mode() != proxy::AcceptMode::Normal ||
                 !p.toxics().empty();
  if (!faulted && !rec.faulted()) return;
  std::vector<std::string> faults;
  if (!p.enabled()) faults.emplace_back("disabled");
  if (p.accept_mode() == proxy::AcceptMode::Reset) faults.emplace_back("accept=reset");
  if (p.accept_mode() == proxy::AcceptMode::Hang) faults.emplace_back("accept=hang");
  for (const auto& t : p.toxics()) faults.push_back(t.name);
  rec.set_faults(now, faulted, faults);
}

void ClientVerdicts::poll() {
  uint64_t now = clock_();
  for (const auto& [name, p] : registry_.proxies()) sync(*p, record_named(name), now);
}

ClientRecord& ClientVerdicts::record(const proxy::Proxy& p) {
  ClientRecord& rec = record_named(p.name());
  sync(p, rec, clock_());
  return rec;
}

json ClientVerdicts::json_for(const proxy::Proxy& p) {
  ClientRecord& rec = record(p);
  json j = rec.to_json(clock_(), epoch_us_);
  j["proxy"] = p.name();
  return j;
}

void ClientVerdicts::clear(std::string_view proxy) {
  auto it = records_.find(proxy);
  if (it == records_.end()) return;
  it->second->clear();
  if (auto* p = registry_.find(proxy)) sync(*p, *it->second, clock_());
}

inline ClientVerdicts::SessionState* ClientVerdicts::state(const proxy::Session& s) {
  StateSlot& slot = state_slot(&s);
  if (slot.session == &s) [[likely]]
    return slot.state;
  auto it = sessions_.find(&s);
  if (it == sessions_.end()) return nullptr;
  slot = {&s, &it->second};
  return slot.state;
}

CommandIdent ClientVerdicts::ident_of(const Pending& p, std::string& display) {
  std::string_view name, sub;
  if (p.cmd) {
    name = p.cmd->name;
    sub = p.cmd->sub;
    display.assign(name);
    if (!sub.empty()) {
      display += ' ';
      display += sub;
    }
  } else {
    display = p.name;
    name = std::string_view(display).substr(0, p.split);
    if (p.split < display.size()) sub = std::string_view(display).substr(p.split + 1);
  }
  return CommandIdent{fnv1a(name, sub), p.key_hash, display};
}

void ClientVerdicts::on_session_open(proxy::Session& s) {
  uint64_t now = clock_();
  ClientRecord& rec = record_named(s.proxy().name());
  sync(s.proxy(), rec, now);
  rec.on_connect(now);
  SessionState& st = sessions_[&s];
  st.record = &rec;
  st.id = s.id();
  state_slot(&s) = {};
}

void ClientVerdicts::finish_handshake(SessionState& st, uint64_t now) {
  if (st.handshake_done) return;
  st.handshake_done = true;
  if (!st.handshake.empty()) st.record->on_handshake(now, st.id, st.handshake);
}

void ClientVerdicts::on_session_close(proxy::Session& s) {
  state_slot(&s) = {};
  auto it = sessions_.find(&s);
  if (it == sessions_.end()) return;
  uint64_t now = clock_();
  SessionState& st = it->second;
  ClientRecord& rec = *st.record;
  sync(s.proxy(), rec, now);
  finish_handshake(st, now);
  proxy::CloseReason why = s.close_reason();
  bool failed = failed_close(why);
  if (failed) {
    if (point_fault_reason(why)) rec.point_fault(now, proxy::to_string(why));
    // At risk: the request whose reply a fault acted on last, then those still pending.
    std::vector<Pending> at_risk;
    if (const proxy::Pairing* pairing = s.pairing()) {
      size_t skip = pairing->pending() > kMaxAtRisk ? pairing->pending() - kMaxAtRisk : 0;
      pairing->each_pending([&](const proxy::PendingInfo& info) {
        if (skip) --skip;
        else at_risk.push_back(at_risk_of(st, info));
      });
    }
    if (st.faulted && (at_risk.empty() || st.faulted_req.id < at_risk.front().id))
      at_risk.insert(at_risk.begin(), std::move(st.faulted_req));
    std::string display;
    for (const Pending& p : at_risk)
      rec.on_command_failed(now, ident_of(p, display), st.id, proxy::to_string(why));
  }
  rec.on_connection_end(now, failed);
  sessions_.erase(it);
}

ClientVerdicts::Pending ClientVerdicts::at_risk_of(SessionState& st,
                                                   const proxy::PendingInfo& info) const {
  for (const Pending& n : st.names)
    if (n.id == info.id) return n;
  return Pending{info.id, info.cmd, info.key_hash, {}, 0};
}

// Per request: a counter. What a failed request was (command, key hash) is read from the
// pairing FIFO when it fails; the clock is read, and the command named, only while a failed
// command is watched for a resend or the handshake is open.
void ClientVerdicts::on_request(proxy::Session& s, const resp::RequestFrame& f, proxy::PendingId id,
                                std::string_view) {
  SessionState* stp = state(s);
  if (stp == nullptr || f.argc == 0) return;
  SessionState& st = *stp;
  const bool named = f.cmd && (!f.cmd->sub.empty() || f.sub.empty());
  ClientRecord& rec = *st.record;
  if (named && !rec.watching_resends() && st.handshake_done) [[likely]] {
    rec.count_request();
    return;
  }
  [&]() __attribute__((noinline)) {
    Pending p{id, named ? f.cmd : nullptr, f.has_key ? proxy::key_hash(f.key.data) : 0u, {}, 0};
    if (!named) {
      // Unknown, or a container with a subcommand the table does not know: keep the text.
      std::string_view name = f.cmd ? f.cmd->name : f.name;
      p.name.assign(name);
      p.split = name.size();
      if (!f.sub.empty()) {
        p.name += ' ';
        p.name += f.sub;
      }
      if (st.names.size() >= kMaxAtRisk) st.names.erase(st.names.begin());
      st.names.push_back(p);
    }
    if (rec.watching_resends()) {
      std::string display;
      rec.on_request(clock_(), ident_of(p, display), st.id);
    } else {
      rec.count_request();
    }
    if (!st.handshake_done) {
      if (is_handshake(f.name, f.sub)) {
        if (st.handshake.size() < 16) st.handshake.push_back(handshake_label(f));
      } else if (!is_neutral(f.name)) {
        finish_handshake(st, clock_());
      }
    }
  }();
}

bool ClientVerdicts::plain_requests_now(proxy::Session& s) {
  SessionState* st = state(s);
  return st != nullptr && st->handshake_done && !st->record->watching_resends();
}

void ClientVerdicts::on_plain_requests(proxy::Session& s, uint64_t n) {
  if (SessionState* st = state(s)) st->record->count_requests(n);
}

// Good replies the client got, in a run: successes, and an end to a recovery.
void ClientVerdicts::on_plain_replies(proxy::Session& s,
                                      std::span<const proxy::PlainReplies> groups) {
  SessionState* stp = state(s);
  if (stp == nullptr) return;
  SessionState& st = *stp;
  st.faulted = false;
  if (!st.names.empty()) [[unlikely]] {
    const proxy::PendingId last = groups.back().last_id;
    size_t answered = 0;
    while (answered < st.names.size() && st.names[answered].id <= last) ++answered;
    st.names.erase(st.names.begin(), st.names.begin() + ptrdiff_t(answered));
  }
  uint64_t n = 0;
  for (const proxy::PlainReplies& g : groups) n += g.count;
  if (st.record->recovery_pending()) {
    st.record->on_success(clock_());
    --n;
  }
  st.record->count_successes(n);
}

void ClientVerdicts::on_reply(proxy::Session& s, const proxy::ReplyResult& r,
                              const resp::ReplyFrame* frame, std::string_view injected,
                              std::string_view fault) {
  if (r.kind != proxy::ReplyKind::Paired) return;
  SessionState* stp = state(s);
  if (stp == nullptr) return;
  SessionState& st = *stp;
  // Replies come in order: whatever is older than this one was answered, including a reply a
  // fault acted on (delayed), since the connection carried on after it.
  st.faulted = false;
  if (frame && !frame->is_error() && fault.empty() && st.names.empty()) [[likely]] {
    // A good reply the client got: the common case, without the failure bookkeeping below.
    if (st.record->recovery_pending()) st.record->on_success(clock_());
    else st.record->count_success();
    return;
  }
  [&]() __attribute__((noinline)) {
    const proxy::PendingId id = r.request.id;
    auto& names = st.names;
    size_t older = 0;
    while (older < names.size() && names[older].id < id) ++older;
    names.erase(names.begin(), names.begin() + ptrdiff_t(older));
    Pending p = at_risk_of(st, r.request);
    if (r.final && !names.empty() && names.front().id == id) names.erase(names.begin());

    bool failed = false;
    std::string reason;
    if (!frame) {
      failed = !injected.empty() && (injected[0] == '-' || injected[0] == '!');
      if (failed) reason = "injected " + std::string(error_word(injected));
    } else if (frame->is_error() && is_unavailable(frame->error_prefix())) {
      failed = true;
      reason = std::string(frame->error_prefix());
    }
    if (failed) {
      std::string display;
      st.record->on_command_failed(clock_(), ident_of(p, display), st.id, reason);
    } else if (frame && fault.empty()) {
      if (st.record->recovery_pending()) st.record->on_success(clock_());
      else st.record->count_success();
    } else if (frame) {
      // A fault acted on this reply (delayed, truncated, or the connection is reset once Redis
      // answered): if the connection breaks now, the client never had it. It stays at risk.
      st.faulted = true;
      st.faulted_req = std::move(p);
    }
  }();
}

} // namespace faultline::observe
