#include "observe/clients.h"

#include <algorithm>
#include <cctype>
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

// Commands a client sends to set a connection up, and so replays on every new connection: the
// handshake recorded per connection.
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

std::string_view strip_port(std::string_view addr) {
  // "127.0.0.1:5000" -> "127.0.0.1", "[::1]:5000" -> "::1": reconnects keep the client's identity.
  auto colon = addr.rfind(':');
  if (colon != std::string_view::npos) addr = addr.substr(0, colon);
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']')
    addr = addr.substr(1, addr.size() - 2);
  return addr;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) != b[i]) return false;
  return true;
}

// The name a request gives its connection: CLIENT SETNAME name, HELLO ... SETNAME name.
std::optional<std::string_view> name_set_by(const resp::RequestFrame& f) {
  if (f.name == "CLIENT" && f.sub == "SETNAME" && f.args.size() >= 3 && !f.args[2].data.empty() &&
      !f.args[2].truncated())
    return f.args[2].data;
  if (f.name == "HELLO")
    for (size_t i = 1; i + 1 < f.args.size(); ++i)
      if (iequals(f.args[i].data, "SETNAME") && !f.args[i + 1].data.empty() &&
          !f.args[i + 1].truncated())
        return f.args[i + 1].data;
  return std::nullopt;
}

bool proxy_faulted(const proxy::Proxy& p) {
  return !p.enabled() || p.accept_mode() != proxy::AcceptMode::Normal || !p.toxics().empty();
}

} // namespace

uint64_t args_hash(const resp::RequestFrame& f) {
  uint64_t h = 1469598103934665603ull;
  auto mix_u64 = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xFF)) * 1099511628211ull;
  };
  // The frame's size stands in for the arguments the parser did not record (it records 3 by
  // default: the name and two more).
  mix_u64(f.argc);
  mix_u64(f.size());
  for (const resp::Arg& a : f.args) {
    mix_u64(a.len);
    for (unsigned char c : a.data) h = (h ^ c) * 1099511628211ull;
  }
  return h == 0 ? 1 : h;
}

bool is_connection_setup(std::string_view name, std::string_view sub,
                         const resp::CommandInfo* cmd) {
  if (is_handshake(name, sub)) return true;
  if (name == "READONLY" || name == "READWRITE" || name == "RESET" || name == "PING" ||
      name == "ECHO")
    return true;
  // What the table (Redis's command docs) files under @connection, but not the commands that act
  // on other connections or the server (CLIENT KILL, CLIENT PAUSE: @admin / @dangerous) nor
  // WAIT, which waits for the application's writes.
  if (cmd && cmd->in(resp::AclCategory::Connection) && !cmd->is_admin() &&
      !cmd->in(resp::AclCategory::Dangerous) && cmd->name != "WAIT" &&
      (cmd->sub == sub || sub.empty()))
    return true;
  return false;
}

std::string_view classify_retries(const std::vector<std::vector<double>>& seqs) {
  std::string_view shape = "unknown";
  for (const auto& s : seqs) {
    std::string_view c = classify_backoff(s);
    if (c == "unknown") continue;
    if (shape == "unknown") shape = c;
    else if (shape != c) return "irregular";
  }
  return shape;
}

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
  // A retry: a connect after a failed connection, before any good reply since, made while the
  // fault that failed it is still in effect (or Redis itself failed it: no fault was set). An
  // ordinary connect after recovery (a pool opening one more connection, the application's
  // next call once the fault is lifted) is not one.
  std::optional<double> interval;
  if (last_failed_ && retrying_ && (faulted_ || !last_failure_faulted_))
    interval = to_ms(now_us - last_failure_us_);
  if (interval) {
    push_bounded(intervals_, *interval, lim_.recent_intervals);
    if (!retries_.empty() && retries_.back().intervals_ms.size() < lim_.recent_intervals)
      retries_.back().intervals_ms.push_back(*interval);
  }
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
  if (!retrying_) {
    retrying_ = true;
    RetrySequence seq;
    seq.start_us = now_us;
    push_bounded(retries_, std::move(seq), lim_.retry_sequences);
  }
  last_failed_ = true;
  last_failure_us_ = now_us;
  last_failure_faulted_ = faulted_;
  if (Window* w = current()) ++w->failed_connections;
}

bool ClientRecord::on_request(uint64_t now_us, const CommandIdent& c, uint64_t session) {
  ++commands_seen_;
  if (candidates_.empty() || c.setup) return false;
  while (!candidates_.empty() && candidates_.front().at_us + lim_.resend_window_us < now_us)
    candidates_.pop_front();
  for (auto it = candidates_.begin(); it != candidates_.end(); ++it) {
    if (it->cmd_hash != c.cmd_hash || it->key_hash != c.key_hash) continue;
    // The same arguments; a failed request whose arguments were not hashed (sent before any
    // fault, cut off by one the data path met: Redis reset it) is compared on command and key.
    if (it->args_hash && c.args_hash && it->args_hash != c.args_hash) continue;
    if (it->cut_off) {
      ++resends_;
      ++resent_by_command_[std::string(c.name)];
      if (Window* w = current()) ++w->resends;
    } else {
      ++error_retries_;
    }
    push_bounded(recent_resends_,
                 Resend{now_us, std::string(c.name), it->reason, to_ms(now_us - it->at_us),
                        it->session == session, it->cut_off},
                 lim_.recent_resends);
    candidates_.erase(it);
    return true;
  }
  return false;
}

void ClientRecord::on_command_failed(uint64_t now_us, const CommandIdent& c, uint64_t session,
                                     std::string_view reason, bool cut_off) {
  if (c.setup) return;
  push_bounded(candidates_,
               Candidate{now_us, c.cmd_hash, c.key_hash, c.args_hash, session, std::string(reason),
                         cut_off},
               lim_.candidates);
}

void ClientRecord::moved_on(uint64_t sent_us) {
  while (!candidates_.empty() && candidates_.front().at_us <= sent_us) candidates_.pop_front();
}

void ClientRecord::on_success(uint64_t now_us) {
  ++successes_;
  if (retrying_) {
    retrying_ = false;
    if (!retries_.empty()) retries_.back().recovered_us = now_us;
  }
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

std::optional<double> ClientRecord::worst_time_to_recover_ms() const {
  std::optional<double> worst;
  for (const auto& w : windows_)
    if (auto t = w.time_to_recover_ms()) worst = std::max(worst.value_or(0.0), *t);
  return worst;
}

size_t ClientRecord::unrecovered_windows() const {
  return static_cast<size_t>(std::count_if(windows_.begin(), windows_.end(), [](const Window& w) {
    return w.end_us && !w.recovered_us;
  }));
}

std::optional<double> ClientRecord::longest_unrecovered_ms(uint64_t now_us) const {
  std::optional<double> longest;
  for (const auto& w : windows_)
    if (w.end_us && !w.recovered_us)
      longest = std::max(longest.value_or(0.0), to_ms(now_us > *w.end_us ? now_us - *w.end_us : 0));
  return longest;
}

void ClientRecord::drop_windows_before(uint64_t since_us) {
  while (!windows_.empty() && windows_.front().end_us && *windows_.front().end_us < since_us)
    windows_.pop_front();
}

std::string_view ClientRecord::backoff() const {
  std::vector<std::vector<double>> seqs;
  for (const auto& r : retries_) seqs.push_back(r.intervals_ms);
  return classify_retries(seqs);
}

std::vector<double> ClientRecord::backoff_intervals_ms() const {
  for (auto it = retries_.rbegin(); it != retries_.rend(); ++it)
    if (it->intervals_ms.size() >= 3) return it->intervals_ms;
  for (auto it = retries_.rbegin(); it != retries_.rend(); ++it)
    if (!it->intervals_ms.empty()) return it->intervals_ms;
  return {};
}

json ClientRecord::to_json(uint64_t now_us, uint64_t epoch_us) const {
  json recent = json::array();
  for (uint64_t t : recent_connects_) recent.push_back(rel_ms(t, epoch_us));
  json per_second = json::array();
  uint64_t epoch_sec = epoch_us / kSecondUs;
  for (const auto& [sec, n] : per_second_)
    per_second.push_back(json::array({sec >= epoch_sec ? sec - epoch_sec : 0, n}));
  json retries = json::array();
  for (const auto& r : retries_)
    retries.push_back({{"start_ms", rel_ms(r.start_us, epoch_us)},
                       {"recovered_ms",
                        r.recovered_us ? json(rel_ms(*r.recovered_us, epoch_us)) : json(nullptr)},
                       {"intervals_ms", r.intervals_ms},
                       {"backoff", classify_backoff(r.intervals_ms)}});

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
                           {"same_connection", r.same_connection},
                           {"cut_off", r.cut_off}});
  json hs = json::array();
  for (const auto& h : handshakes_)
    hs.push_back({{"at_ms", rel_ms(h.at_us, epoch_us)},
                  {"connection", h.session},
                  {"commands", h.commands}});
  auto worst = worst_time_to_recover_ms();
  auto waiting = longest_unrecovered_ms(now_us);
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
      {"reconnect_intervals_ms", backoff_intervals_ms()},
      {"backoff", backoff()},
      {"retries", std::move(retries)},
      {"recovery",
       {{"last_time_to_recover_ms", last ? json(*last) : json(nullptr)},
        {"worst_time_to_recover_ms", worst ? json(*worst) : json(nullptr)},
        {"unrecovered_windows", unrecovered_windows()},
        {"longest_unrecovered_ms", waiting ? json(*waiting) : json(nullptr)}}},
      {"resends",
       {{"total", resends_},
        {"by_command", resent_by_command_},
        {"after_errors", error_retries_},
        {"recent", std::move(resend_list)}}},
      {"handshake",
       {{"connections", handshake_connections_},
        {"commands", handshake_counts_},
        {"recent", std::move(hs)}}},
      {"windows", std::move(windows)},
  };
}

// ---- the log a per-client view is replayed from ----

// The log's bound is documented in bytes (docs/testing-clients.md).
static_assert(sizeof(void*) != 8 || sizeof(VerdictLog::Event) == 48);

const std::vector<std::string>& VerdictLog::Strings::none() {
  static const std::vector<std::string> empty;
  return empty;
}

void VerdictLog::add(Event e) {
  const size_t cap = lim_.events;
  if (cap == 0) {
    dropped_ = true;
    return;
  }
  size_t p;
  if (size_ < cap) {
    p = (head_ + size_) % cap;
    ++size_;
  } else {
    p = head_;  // the oldest goes
    head_ = (head_ + 1) % cap;
    dropped_ = true;
  }
  size_t b = p / kBlock;
  if (b >= blocks_.size()) blocks_.resize(b + 1);
  if (!blocks_[b]) blocks_[b] = std::make_unique<Event[]>(std::min(kBlock, cap - b * kBlock));
  blocks_[b][p % kBlock] = std::move(e);
}

void VerdictLog::unref(Ident* who) {
  if (who && --who->second == 0) idents_.erase(idents_.find(who->first));
}

void VerdictLog::identify(uint64_t session, std::string client) {
  if (!clients_.contains(client)) {
    if (clients_.size() >= lim_.clients) {
      // Forget the client seen first: the list is for asking about recent ones.
      auto oldest = std::min_element(clients_.begin(), clients_.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
      clients_.erase(oldest);
    }
    clients_.emplace(client, next_client_++);
  }
  auto [ident, _] = idents_.try_emplace(std::move(client), 0);
  Ident* who = &*ident;
  ++who->second;
  // Connections are mostly identified in the order they opened, at the end.
  auto it = std::lower_bound(identity_.begin(), identity_.end(), session,
                             [](const auto& e, uint64_t s) { return e.first < s; });
  if (it != identity_.end() && it->first == session) {
    std::swap(it->second, who);
    unref(who);
    return;
  }
  identity_.insert(it, {session, who});
  while (identity_.size() > lim_.identities) {
    unref(identity_.front().second);
    identity_.pop_front();
  }
}

const std::string* VerdictLog::identity(uint64_t session) const {
  auto it = std::lower_bound(identity_.begin(), identity_.end(), session,
                             [](const auto& e, uint64_t s) { return e.first < s; });
  return it == identity_.end() || it->first != session ? nullptr : &it->second->first;
}

std::vector<std::string> VerdictLog::clients() const {
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [name, n] : clients_) order.emplace_back(n, name);
  std::sort(order.begin(), order.end());
  std::vector<std::string> out;
  for (auto& [n, name] : order) out.push_back(std::move(name));
  return out;
}

std::optional<uint64_t> VerdictLog::complete_since_us() const {
  if (!dropped_ || size_ == 0) return std::nullopt;
  return at(0).at_us;
}

void VerdictLog::clear() { *this = VerdictLog(lim_); }

void VerdictLog::replay(const Filter& f, ClientRecord& out) const {
  using K = Event::Kind;
  bool in_range = false;
  for (size_t i = 0; i < size_; ++i) {
    const Event& e = at(i);
    if (e.at_us >= f.until_us) break;
    if (!in_range && e.at_us >= f.since_us) {
      // Faults before the range set the state it starts in; what they ended is not in it.
      in_range = true;
      out.drop_windows_before(f.since_us);
    }
    if (e.kind == K::Faults) {
      out.set_faults(e.at_us, e.flag, e.list);
      continue;
    }
    if (e.kind == K::PointFault) {
      out.point_fault(e.at_us, e.name());
      continue;
    }
    if (e.at_us < f.since_us) continue;
    if (f.client) {
      const std::string* who = identity(e.session);
      if (!who || *who != *f.client) continue;
    }
    if (Event::carries_counts(e.kind)) {
      out.count_requests(e.n1);
      out.count_successes(e.n2);
    }
    switch (e.kind) {
    case K::Connect: out.on_connect(e.at_us); break;
    case K::End: out.on_connection_end(e.at_us, e.flag); break;
    case K::Request: out.on_request(e.at_us, e.ident(), e.session); break;
    case K::Failed:
      out.on_command_failed(e.at_us, e.ident(), e.session, e.reason(), e.flag);
      break;
    case K::MovedOn: out.moved_on(e.n1); break;
    case K::Success: out.on_success(e.at_us); break;
    case K::Handshake: out.on_handshake(e.at_us, e.session, e.list); break;
    default: break;  // Counts: counted above
    }
  }
  out.drop_windows_before(f.since_us);
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
  polls_per_sweep_ = std::max<uint32_t>(1, 1000 / std::max<uint32_t>(poll_ms, 1));
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

ClientVerdicts::Tracked& ClientVerdicts::tracked_named(const std::string& name) {
  auto it = records_.find(name);
  if (it == records_.end()) it = records_.emplace(name, std::make_unique<Tracked>(lim_)).first;
  return *it->second;
}

void ClientVerdicts::sync(const proxy::Proxy& p, Tracked& t, uint64_t now) {
  ClientRecord& rec = t.rec;
  bool faulted = proxy_faulted(p);
  if (!faulted && !rec.faulted()) return;
  std::vector<std::string> faults;
  if (!p.enabled()) faults.emplace_back("disabled");
  if (p.accept_mode() == proxy::AcceptMode::Reset) faults.emplace_back("accept=reset");
  if (p.accept_mode() == proxy::AcceptMode::Hang) faults.emplace_back("accept=hang");
  for (const auto& x : p.toxics()) faults.push_back(x.name);
  if (faulted == rec.faulted() && faults == rec.faults()) return;
  if (!faulted) ++t.ended;  // a window ends: each connection logs its next good reply
  VerdictLog::Event e;
  e.kind = VerdictLog::Event::Kind::Faults;
  e.at_us = now;
  e.flag = faulted;
  e.list = faults;
  t.log.add(std::move(e));
  rec.set_faults(now, faulted, faults);
}

void ClientVerdicts::poll() {
  uint64_t now = clock_();
  for (const auto& [name, p] : registry_.proxies()) sync(*p, tracked_named(name), now);
  if (++polls_ >= polls_per_sweep_) {
    polls_ = 0;
    sweep();
  }
}

void ClientVerdicts::sweep() {
  for (auto& [s, st] : sessions_)
    if (st.rare && !st.faulted && st.rare->idle()) st.rare.reset();
}

ClientRecord& ClientVerdicts::record(const proxy::Proxy& p) {
  Tracked& t = tracked_named(p.name());
  sync(p, t, clock_());
  return t.rec;
}

json ClientVerdicts::json_for(const proxy::Proxy& p, const Query& q) {
  Tracked& t = tracked_named(p.name());
  uint64_t now = clock_();
  sync(p, t, now);
  for (auto& [s, st] : sessions_)
    if (st.tracked == &t) flush_counts(st, now);
  json j;
  if (!q.client && !q.since_ms && !q.until_ms) {
    j = t.rec.to_json(now, epoch_us_);
  } else {
    auto at = [&](double ms) { return epoch_us_ + static_cast<uint64_t>(std::max(ms, 0.0) * 1000); };
    VerdictLog::Filter f;
    f.client = q.client;
    if (q.since_ms) f.since_us = at(*q.since_ms);
    if (q.until_ms) f.until_us = at(*q.until_ms);
    ClientRecord view(lim_);
    t.log.replay(f, view);
    j = view.to_json(std::min(now, f.until_us), epoch_us_);
    j["client"] = q.client ? json(*q.client) : json(nullptr);
    j["since_ms"] = q.since_ms ? json(*q.since_ms) : json(nullptr);
    j["until_ms"] = q.until_ms ? json(*q.until_ms) : json(nullptr);
    auto whole = t.log.complete_since_us();
    j["complete_since_ms"] = whole ? json(rel_ms(*whole, epoch_us_)) : json(nullptr);
  }
  j["proxy"] = p.name();
  j["clients"] = t.log.clients();
  return j;
}

void ClientVerdicts::clear(std::string_view proxy) {
  auto it = records_.find(proxy);
  if (it == records_.end()) return;
  Tracked& t = *it->second;
  // Connections still open keep their identity; their counts so far are forgotten.
  std::vector<std::pair<uint64_t, std::string>> open;
  for (auto& [s, st] : sessions_)
    if (st.tracked == &t) {
      st.requests = st.successes = 0;
      st.success_logged = ~uint64_t{0};
      const std::string* who = t.log.identity(st.id);
      open.emplace_back(st.id, who ? *who : std::string(strip_port(s->client_address())));
    }
  t.rec.clear();
  t.log.clear();
  // Oldest first, as they were identified (VerdictLog keeps identities by connection id).
  std::sort(open.begin(), open.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [id, who] : open) t.log.identify(id, std::move(who));
  if (auto* p = registry_.find(proxy)) sync(*p, t, clock_());
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
  return CommandIdent{fnv1a(name, sub), p.key_hash, p.args_hash,
                      is_connection_setup(name, sub, p.cmd), display};
}

void ClientVerdicts::flush_counts(SessionState& st, uint64_t now) {
  if (st.requests == 0 && st.successes == 0) return;
  VerdictLog::Event e;
  e.kind = VerdictLog::Event::Kind::Counts;
  e.at_us = now;
  e.session = st.id;
  e.n1 = st.requests;
  e.n2 = st.successes;
  st.requests = st.successes = 0;
  st.tracked->log.add(std::move(e));
}

void ClientVerdicts::log(SessionState& st, VerdictLog::Event e) {
  if (VerdictLog::Event::carries_counts(e.kind)) {
    // The counts go with the event itself (replayed just before it): one event, not two.
    e.n1 = st.requests;
    e.n2 = st.successes;
    st.requests = st.successes = 0;
  } else {
    flush_counts(st, e.at_us);
  }
  e.session = st.id;
  st.tracked->log.add(std::move(e));
}

void ClientVerdicts::on_session_open(proxy::Session& s) {
  uint64_t now = clock_();
  Tracked& t = tracked_named(s.proxy().name());
  sync(s.proxy(), t, now);
  t.rec.on_connect(now);
  SessionState& st = sessions_[&s];
  st.tracked = &t;
  st.id = s.id();
  state_slot(&s) = {};
  t.log.identify(st.id, std::string(strip_port(s.client_address())));
  VerdictLog::Event e;
  e.kind = VerdictLog::Event::Kind::Connect;
  e.at_us = now;
  log(st, std::move(e));
}

void ClientVerdicts::finish_handshake(SessionState& st, uint64_t now) {
  if (st.handshake_done) return;
  st.handshake_done = true;
  if (!st.rare || st.rare->handshake.empty()) return;
  std::vector<std::string> commands = std::move(st.rare->handshake);
  st.rare->handshake = {};  // recorded: the connection keeps no text of it
  if (!st.faulted && st.rare->idle()) st.rare.reset();
  st.rec().on_handshake(now, st.id, commands);
  VerdictLog::Event e;
  e.kind = VerdictLog::Event::Kind::Handshake;
  e.at_us = now;
  e.list = std::move(commands);
  log(st, std::move(e));
}

void ClientVerdicts::on_session_close(proxy::Session& s) {
  state_slot(&s) = {};
  auto it = sessions_.find(&s);
  if (it == sessions_.end()) return;
  uint64_t now = clock_();
  SessionState& st = it->second;
  Tracked& t = *st.tracked;
  ClientRecord& rec = t.rec;
  sync(s.proxy(), t, now);
  finish_handshake(st, now);
  proxy::CloseReason why = s.close_reason();
  bool failed = failed_close(why);
  using K = VerdictLog::Event::Kind;
  if (failed) {
    if (point_fault_reason(why)) {
      std::string label(proxy::to_string(why));
      if (!rec.faulted()) ++t.ended;  // a window of its own, ended at once
      rec.point_fault(now, label);
      VerdictLog::Event e;
      e.kind = K::PointFault;
      e.at_us = now;
      e.list = {std::move(label)};
      t.log.add(std::move(e));
    }
    // At risk: the request whose reply a fault acted on last, then those still pending.
    std::vector<Pending> at_risk;
    if (const proxy::Pairing* pairing = s.pairing()) {
      size_t skip = pairing->pending() > kMaxAtRisk ? pairing->pending() - kMaxAtRisk : 0;
      pairing->each_pending([&](const proxy::PendingInfo& info) {
        if (skip) --skip;
        else at_risk.push_back(at_risk_of(st, info));
      });
    }
    if (st.faulted && st.rare &&
        (at_risk.empty() || st.rare->faulted_req.id < at_risk.front().id))
      at_risk.insert(at_risk.begin(), std::move(st.rare->faulted_req));
    std::string display;
    for (const Pending& p : at_risk) {
      CommandIdent c = ident_of(p, display);
      if (c.setup) continue;
      rec.on_command_failed(now, c, st.id, proxy::to_string(why), true);
      VerdictLog::Event e;
      e.kind = K::Failed;
      e.at_us = now;
      e.flag = true;
      e.set_ident(c);
      e.setup = false;
      e.list = {display, std::string(proxy::to_string(why))};
      log(st, std::move(e));
    }
  }
  rec.on_connection_end(now, failed);
  VerdictLog::Event e;
  e.kind = K::End;
  e.at_us = now;
  e.flag = failed;
  log(st, std::move(e));
  sessions_.erase(it);
}

ClientVerdicts::Pending ClientVerdicts::at_risk_of(SessionState& st,
                                                   const proxy::PendingInfo& info) const {
  uint64_t h = 0;
  if (st.rare) {
    for (const auto& [id, hash] : st.rare->hashes)
      if (id == info.id) h = hash;
    for (const Pending& n : st.rare->names)
      if (n.id == info.id) {
        Pending p = n;
        p.args_hash = h;
        return p;
      }
  }
  return Pending{info.id, info.cmd, info.key_hash, h, {}, 0};
}

// Per request: a counter. What a failed request was (command, key hash) is read from the
// pairing FIFO when it fails; the clock is read, and the command named and its arguments
// hashed, only while a fault is in effect, a failed command is watched for a resend, or the
// handshake is open.
void ClientVerdicts::on_request(proxy::Session& s, const resp::RequestFrame& f, proxy::PendingId id,
                                std::string_view) {
  SessionState* stp = state(s);
  if (stp == nullptr || f.argc == 0) return;
  SessionState& st = *stp;
  const bool named = f.cmd && (!f.cmd->sub.empty() || f.sub.empty());
  ClientRecord& rec = st.rec();
  if (named && !rec.watching_resends() && st.handshake_done && !proxy_faulted(s.proxy()))
      [[likely]] {
    rec.count_request();
    ++st.requests;
    return;
  }
  [&]() __attribute__((noinline)) {
    Pending p{id, named ? f.cmd : nullptr, f.has_key ? proxy::key_hash(f.key.data) : 0u, 0, {}, 0};
    if (!named) {
      // Unknown, or a container with a subcommand the table does not know: keep the text.
      std::string_view name = f.cmd ? f.cmd->name : f.name;
      p.name.assign(name);
      p.split = name.size();
      if (!f.sub.empty()) {
        p.name += ' ';
        p.name += f.sub;
      }
      auto& names = st.more().names;
      if (names.size() >= kMaxAtRisk) names.erase(names.begin());
      names.push_back(p);
    }
    const bool setup = is_connection_setup(f.name, f.sub, f.cmd);
    if (!setup) {
      p.args_hash = args_hash(f);
      auto& hashes = st.more().hashes;
      if (hashes.size() >= kMaxAtRisk) hashes.pop_front();
      hashes.push_back({id, p.args_hash});
    }
    if (rec.watching_resends()) {
      uint64_t now = clock_();
      std::string display;
      CommandIdent c = ident_of(p, display);
      bool resend = rec.on_request(now, c, st.id);
      VerdictLog::Event e;
      e.kind = VerdictLog::Event::Kind::Request;
      e.at_us = now;
      e.set_ident(c);
      e.list = {display};
      log(st, std::move(e));
      // A readiness check (ioredis's INFO on a new connection, a health PING) is not the
      // application moving on: the write it re-sends next is still a resend.
      if (!resend && !setup && !is_neutral(f.name) && !(st.rare && st.rare->new_work)) {
        Rare& r = st.more();
        r.new_work = id;
        r.new_work_us = now;
      }
    } else {
      rec.count_request();
      ++st.requests;
    }
    if (!st.handshake_done) {
      if (is_handshake(f.name, f.sub)) {
        auto& handshake = st.more().handshake;
        if (handshake.size() < 16) handshake.push_back(handshake_label(f));
        if (auto name = name_set_by(f)) st.tracked->log.identify(st.id, std::string(*name));
      } else if (!is_neutral(f.name)) {
        finish_handshake(st, clock_());
      }
    }
  }();
}

bool ClientVerdicts::plain_requests_now(proxy::Session& s) {
  SessionState* st = state(s);
  return st != nullptr && st->handshake_done && !st->rec().watching_resends() &&
         !proxy_faulted(s.proxy());
}

void ClientVerdicts::on_plain_requests(proxy::Session& s, uint64_t n) {
  if (SessionState* st = state(s)) {
    st->rec().count_requests(n);
    st->requests += n;
  }
}

// A good reply reached the client: a recovery, the end of a retry sequence, the first good reply
// of this connection since a window ended (logged, for per-client views), or a count.
void ClientVerdicts::good_reply(SessionState& st) {
  Tracked& t = *st.tracked;
  const bool pending = t.rec.recovery_pending();
  if (!pending && st.success_logged == t.ended) {
    t.rec.count_success();
    ++st.successes;
    return;
  }
  uint64_t now = clock_();
  if (pending) t.rec.on_success(now);
  else t.rec.count_success();
  st.success_logged = t.ended;
  VerdictLog::Event e;
  e.kind = VerdictLog::Event::Kind::Success;
  e.at_us = now;
  log(st, std::move(e));
}

void ClientVerdicts::answered(SessionState& st, proxy::PendingId last, bool good) {
  if (!st.rare) return;
  Rare& r = *st.rare;
  auto& names = r.names;
  size_t n = 0;
  while (n < names.size() && names[n].id <= last) ++n;
  names.erase(names.begin(), names.begin() + ptrdiff_t(n));
  while (!r.hashes.empty() && r.hashes.front().first <= last) r.hashes.pop_front();
  if (good && r.new_work && r.new_work <= last) {
    // The client's new work got its answer: what failed before it and was not sent again was
    // given up.
    st.rec().moved_on(r.new_work_us);
    VerdictLog::Event e;
    e.kind = VerdictLog::Event::Kind::MovedOn;
    e.at_us = clock_();
    e.n1 = r.new_work_us;
    r.new_work = 0;
    log(st, std::move(e));
  }
}

// Good replies the client got, in a run: successes, and an end to a recovery.
void ClientVerdicts::on_plain_replies(proxy::Session& s,
                                      std::span<const proxy::PlainReplies> groups) {
  SessionState* stp = state(s);
  if (stp == nullptr) return;
  SessionState& st = *stp;
  st.faulted = false;
  uint64_t n = 0;
  for (const proxy::PlainReplies& g : groups) n += g.count;
  if (reply_watch(st)) [[unlikely]] {
    answered(st, groups.back().last_id, true);
    good_reply(st);
    --n;
  }
  st.rec().count_successes(n);
  st.successes += n;
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
  if (frame && !frame->is_error() && fault.empty() && !reply_watch(st)) [[likely]] {
    // A good reply the client got: the common case, without the failure bookkeeping below.
    st.rec().count_success();
    ++st.successes;
    return;
  }
  [&]() __attribute__((noinline)) {
    const proxy::PendingId id = r.request.id;
    // Older requests were answered; this one's entries stay until it is looked at.
    if (id > 0) answered(st, id - 1, false);
    Pending p = at_risk_of(st, r.request);
    if (r.final && st.rare) {
      auto& names = st.rare->names;
      auto& hashes = st.rare->hashes;
      if (!names.empty() && names.front().id == id) names.erase(names.begin());
      if (!hashes.empty() && hashes.front().first == id) hashes.pop_front();
    }

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
      CommandIdent c = ident_of(p, display);
      if (!c.setup) {
        uint64_t now = clock_();
        st.rec().on_command_failed(now, c, st.id, reason, false);
        VerdictLog::Event e;
        e.kind = VerdictLog::Event::Kind::Failed;
        e.at_us = now;
        e.flag = false;
        e.set_ident(c);
        e.setup = false;
        e.list = {display, reason};
        log(st, std::move(e));
      }
    } else if (frame && fault.empty()) {
      // Any reply Redis gave, an error such as WRONGTYPE included, shows the client through.
      if (r.final) answered(st, id, true);
      good_reply(st);
    } else if (frame) {
      // A fault acted on this reply (delayed, truncated, or the connection is reset once Redis
      // answered): if the connection breaks now, the client never had it. It stays at risk.
      st.faulted = true;
      st.more().faulted_req = std::move(p);
    }
  }();
}

} // namespace faultline::observe
